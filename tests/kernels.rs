//! wmx's own CUDA kernels (src/ops/, src/train/adamw.rs) compile with NVRTC exactly as wmx
//! compiles them on a GPU machine, checked here without a GPU by
//! `scripts/check_kernels.py` (NVRTC from PyPI: `pip install nvidia-cuda-nvrtc`).

use std::process::Command;

#[test]
fn every_cuda_kernel_compiles_with_nvrtc() {
    let out = Command::new("python3")
        .arg("scripts/check_kernels.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    // "N of M kernels compile": all of them, and every fused operation's kernels
    // (AdamW, RMSNorm's four, rotary, softmax's two, silu·up's two) were found.
    let last = text.lines().rfind(|l| l.ends_with("kernels compile")).expect("a summary line");
    let counts: Vec<usize> = last.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(counts.len(), 2, "{last}");
    assert_eq!(counts[0], counts[1], "{text}");
    assert!(counts[1] >= 10, "{text}");
}
