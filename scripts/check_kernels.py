#!/usr/bin/env python3
"""Compiles wmx's own CUDA kernels with NVRTC, without a GPU.

wmx compiles its kernels (src/ops/**/*.rs and src/train/adamw.rs: the `r#"…"#` sources that a
`Kernel::new(SOURCE, "entry")` names) with NVRTC at run time, on the GPU machine,
after src/ops/cuda/kernel.rs's PRELUDE and with its options. A kernel that does not
compile is found there only when a training step first launches it. This script
finds it here: it compiles every kernel source the same way through the NVRTC
library alone (no GPU or driver needed) and checks that each named entry is in
the PTX.

    python3 scripts/check_kernels.py          # from the repository root

NVRTC comes from PyPI (`pip install nvidia-cuda-nvrtc`, CUDA 13) or from a CUDA
installation; WMX_NVRTC may name the library file. Exit 0 when every kernel
compiles, 1 when one does not (its log is printed), 2 when NVRTC is missing.
"""

import ctypes
import ctypes.util
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# src/ops/cuda/kernel.rs's compile options.
OPTIONS = [b"--fmad=false", b"--gpu-architecture=compute_80"]


def nvrtc_library():
    candidates = [os.environ.get("WMX_NVRTC")]
    try:
        import nvidia

        for base in nvidia.__path__:
            candidates += sorted(glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so*")), reverse=True)
    except ImportError:
        pass
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"), reverse=True)
    candidates.append(ctypes.util.find_library("nvrtc"))
    for path in candidates:
        if not path or "builtins" in path or ".alt." in path:
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError:
            continue
    return None, None


def sources():
    """(file, constant) → source, and the kernels: (file, constant, entry)."""
    texts, kernels = {}, []
    paths = glob.glob(os.path.join(ROOT, "src", "ops", "**", "*.rs"), recursive=True)
    paths.append(os.path.join(ROOT, "src", "train", "adamw.rs"))
    for path in sorted(paths):
        text = open(path, encoding="utf-8").read()
        name = os.path.relpath(path, ROOT)
        for constant, body in re.findall(r'const (\w+): &str = r#"(.*?)"#;', text, re.S):
            texts[(name, constant)] = body
        for constant, entry in re.findall(r'Kernel::new\((?:\w+::)*(\w+),\s*"(\w+)"\)', text):
            kernels.append((name, constant, entry))
    return texts, kernels


def compile_ptx(nvrtc, source, name):
    program = ctypes.c_void_p()
    check = lambda status, what: status == 0 or sys.exit(f"{what} failed with NVRTC status {status}")
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None), "nvrtcCreateProgram")
    options = (ctypes.c_char_p * len(OPTIONS))(*OPTIONS)
    status = nvrtc.nvrtcCompileProgram(program, len(OPTIONS), options)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    ptx = b""
    if status == 0:
        nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetPTX(program, buffer)
        ptx = buffer.value
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return status == 0, log.value.decode(errors="replace"), ptx.decode(errors="replace")


def main():
    nvrtc, path = nvrtc_library()
    if nvrtc is None:
        print("no NVRTC library: `pip install nvidia-cuda-nvrtc`, or point WMX_NVRTC at libnvrtc.so", file=sys.stderr)
        return 2
    texts, kernels = sources()
    prelude = texts.get(("src/ops/cuda/kernel.rs", "PRELUDE"))
    if prelude is None or not kernels:
        print("no PRELUDE in src/ops/cuda/kernel.rs, or no Kernel::new(…) in src/ops or src/train/adamw.rs", file=sys.stderr)
        return 1
    print(f"NVRTC: {path}")
    failed = 0
    compiled = {}
    for name, constant, entry in kernels:
        source = texts.get((name, constant))
        if source is None:
            print(f"FAIL {name}: {entry} names {constant}, which is no r#\"…\"# source in that file")
            failed += 1
            continue
        if (name, constant) not in compiled:
            compiled[(name, constant)] = compile_ptx(nvrtc, prelude + source, f"{name}:{constant}")
        ok, log, ptx = compiled[(name, constant)]
        if ok and f".entry {entry}(" not in ptx:
            ok, log = False, f"the PTX has no entry {entry}"
        print(f"{'ok  ' if ok else 'FAIL'} {name} {constant} {entry}")
        if not ok:
            failed += 1
            print("     " + log.strip().replace("\n", "\n     "))
    print(f"{len(kernels) - failed} of {len(kernels)} kernels compile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
