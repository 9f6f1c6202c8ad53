//! CUDA kernels of wmx's own, as operations of burn's fusion stream.
//!
//! The host's cost per burn operation bounds a 0.6B training step on a GPU
//! (bench/RESULTS.md): an RMSNorm is nine tracked operations forward and about
//! twenty backward, an AdamW update twelve per tensor. Each of those is one
//! [`Kernel`] here: CUDA C compiled once by NVRTC on cubecl's device thread and
//! launched there through the vendored cubecl-cuda's `host_call`, in stream order
//! with cubecl's own kernels. [`custom`] makes such a launch one operation of
//! burn's fusion stream, so it takes its inputs when the stream runs.
//!
//! Conventions every kernel here follows, so one launcher serves them all:
//! - its parameters are its buffers (pointers) first, then its scalars, each 8
//!   bytes (`long long` or `double`);
//! - a float tensor of dtype code 0 is f32, of code 1 bf16 ([`code`]); kernels
//!   read and write both through [`PRELUDE`]'s `wmx_load` and `wmx_store`, which
//!   round to nearest even as burn's casts do, so no CUDA header is needed.
//!
//! `scripts/check_kernels.py` (run by `tests/kernels.rs`) compiles every kernel
//! source that a [`Kernel`] names, after [`PRELUDE`] and with these options, on
//! a machine without a GPU.

use std::cell::RefCell;
use std::sync::Mutex;

use burn::cubecl::cuda::CudaRuntime;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

use super::{Cube, Cuda, HostFunction};

/// Helpers every kernel's source is compiled with.
pub const PRELUDE: &str = r#"
__device__ float wmx_load(const void* p, long long code, long long i) {
    if (code == 1) return __uint_as_float(((unsigned int)((const unsigned short*)p)[i]) << 16);
    return ((const float*)p)[i];
}
__device__ unsigned short wmx_bf16_bits(float x) {
    unsigned int u = __float_as_uint(x);
    return (x != x) ? (unsigned short)0x7fc0 : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/* x rounded to the dtype of `code`, as an f32. */
__device__ float wmx_round(float x, long long code) {
    if (code == 1) return __uint_as_float(((unsigned int)wmx_bf16_bits(x)) << 16);
    return x;
}
__device__ void wmx_store(void* p, long long code, long long i, float x) {
    if (code == 1) ((unsigned short*)p)[i] = wmx_bf16_bits(x);
    else ((float*)p)[i] = x;
}
/* The sum over a warp's 32 lanes, in every lane. */
__device__ float wmx_warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
"#;

/// The dtype code of a float tensor in kernels' parameters: 0 f32, 1 bf16. Callers
/// check [`takes`] first.
pub fn code(dtype: DType) -> u64 {
    match dtype {
        DType::F32 => 0,
        DType::BF16 => 1,
        other => panic!("wmx's CUDA kernels take f32 or bf16 tensors, not {other:?}"),
    }
}

/// Whether wmx's kernels read and write tensors of this dtype.
pub fn takes(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

/// A scalar parameter's 8 bytes.
pub fn int(x: usize) -> u64 {
    x as u64
}

/// A `double` parameter's 8 bytes.
pub fn real(x: f64) -> u64 {
    x.to_bits()
}

/// One `extern "C" __global__` function of CUDA C source (compiled with
/// [`PRELUDE`] before it).
pub struct Kernel {
    pub source: &'static str,
    pub entry: &'static str,
    id: std::sync::OnceLock<usize>,
}

/// Every kernel launched so far, by id: what the device thread compiles from.
static KERNELS: Mutex<Vec<(&'static str, &'static str)>> = Mutex::new(Vec::new());

thread_local! {
    /// The kernels compiled in the context of this thread (cubecl's device
    /// thread), by id.
    static COMPILED: RefCell<Vec<Option<cudarc::driver::sys::CUfunction>>> = const { RefCell::new(Vec::new()) };
}

impl Kernel {
    pub const fn new(source: &'static str, entry: &'static str) -> Kernel {
        Kernel { source, entry, id: std::sync::OnceLock::new() }
    }

    fn id(&self) -> usize {
        *self.id.get_or_init(|| {
            let mut kernels = KERNELS.lock().expect("the kernel registry");
            kernels.push((self.source, self.entry));
            kernels.len() - 1
        })
    }

    /// [`launch`](Kernel::launch) with a thread per item, in blocks of
    /// [`THREADS`] (the kernel loops over what one launch does not cover).
    pub fn per_item(&self, on: &CubeTensor<CudaRuntime>, items: usize, buffers: &[&CubeTensor<CudaRuntime>], scalars: &[u64]) {
        self.launch(on, items.div_ceil(THREADS).min(MAX_BLOCKS), THREADS, buffers, scalars);
    }

    /// [`launch`](Kernel::launch) with a warp per row, [`THREADS`] / 32 rows a
    /// block (the kernel loops over what one launch does not cover).
    pub fn per_row(&self, on: &CubeTensor<CudaRuntime>, rows: usize, buffers: &[&CubeTensor<CudaRuntime>], scalars: &[u64]) {
        self.launch(on, rows.div_ceil(THREADS / 32).min(MAX_BLOCKS), THREADS, buffers, scalars);
    }

    /// Queues the kernel on `on`'s device after everything launched before it:
    /// `blocks` × `threads`, with `buffers` as its first parameters and `scalars`
    /// ([`int`], [`real`]) after them.
    pub fn launch(
        &self,
        on: &CubeTensor<CudaRuntime>,
        blocks: usize,
        threads: usize,
        buffers: &[&CubeTensor<CudaRuntime>],
        scalars: &[u64],
    ) {
        if blocks == 0 {
            return;
        }
        let mut params = vec![self.id() as u64, blocks as u64, threads as u64];
        params.extend_from_slice(scalars);
        let buffers = buffers.iter().map(|t| t.handle.clone().binding()).collect();
        static RUN: HostFunction = HostFunction::new(run);
        RUN.launch(on, &params, buffers);
    }
}

impl Kernel {
    /// Launches the kernel at once on `stream`, `blocks` × `threads`, with `args`
    /// (device addresses, then scalars, each 8 bytes): for host functions, which
    /// run on cubecl's device thread in stream order and may launch several
    /// kernels and library calls in one hand-off.
    pub fn launch_on_stream(&self, stream: *mut std::ffi::c_void, blocks: usize, threads: usize, args: &[u64]) -> Result<(), String> {
        if blocks == 0 {
            return Ok(());
        }
        let f = compiled(self.id())?;
        let mut values = args.to_vec();
        let mut pointers: Vec<*mut std::ffi::c_void> = values.iter_mut().map(|v| (v as *mut u64).cast()).collect();
        unsafe {
            cudarc::driver::result::launch_kernel(
                f,
                (blocks.min(MAX_BLOCKS) as u32, 1, 1),
                (threads as u32, 1, 1),
                0,
                stream as cudarc::driver::sys::CUstream,
                &mut pointers,
            )
        }
        .map_err(|e| format!("launching the CUDA kernel {}: {e}", self.entry))
    }
}

/// This thread's compiled kernel `id`, compiling it on first use.
fn compiled(id: usize) -> Result<cudarc::driver::sys::CUfunction, String> {
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(Some(f)) = c.get(id) {
            return Ok(*f);
        }
        let (source, entry) = *KERNELS
            .lock()
            .map_err(|e| e.to_string())?
            .get(id)
            .ok_or_else(|| format!("no kernel has id {id}"))?;
        let options = cudarc::nvrtc::CompileOptions {
            // PTX for a virtual architecture: the driver compiles it for the card.
            arch: Some("compute_80"),
            // Every product rounded on its own, as burn's operations round it.
            fmad: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(format!("{PRELUDE}{source}"), options)
            .map_err(|e| format!("compiling the CUDA kernel {entry}: {e:?}"))?;
        let ptx = std::ffi::CString::new(ptx.to_src()).map_err(|e| e.to_string())?;
        let name = std::ffi::CString::new(entry).map_err(|e| e.to_string())?;
        let f = unsafe {
            let module = cudarc::driver::result::module::load_data(ptx.as_ptr().cast())
                .map_err(|e| format!("loading the CUDA kernel {entry}: {e}"))?;
            cudarc::driver::result::module::get_function(module, name)
                .map_err(|e| format!("finding the CUDA kernel {entry}: {e}"))?
        };
        if c.len() <= id {
            c.resize(id + 1, None);
        }
        c[id] = Some(f);
        Ok(f)
    })
}

/// Launches a kernel on cubecl's device thread, on the stream cubecl would launch
/// its next kernel on. `params`: the kernel's id, blocks, threads, then its scalars.
fn run(params: &[u64], pointers: &[u64], stream: *mut std::ffi::c_void) -> Result<(), String> {
    let [id, blocks, threads, scalars @ ..] = params else {
        return Err(format!("a kernel launch takes at least 3 parameters, not {}", params.len()));
    };
    let f = compiled(*id as usize)?;
    let mut values: Vec<u64> = pointers.iter().chain(scalars).copied().collect();
    let mut args: Vec<*mut std::ffi::c_void> = values.iter_mut().map(|v| (v as *mut u64).cast()).collect();
    unsafe {
        cudarc::driver::result::launch_kernel(
            f,
            (*blocks as u32, 1, 1),
            (*threads as u32, 1, 1),
            0,
            stream as cudarc::driver::sys::CUstream,
            &mut args,
        )
    }
    .map_err(|e| format!("launching a CUDA kernel: {e}"))
}

/// Threads of a block in [`Kernel::per_item`] and [`Kernel::per_row`] launches.
pub const THREADS: usize = 256;
/// Blocks of a launch at most.
const MAX_BLOCKS: usize = 65_535;

/// A new contiguous tensor of `shape` and `dtype` on `like`'s device.
pub fn empty(like: &CubeTensor<CudaRuntime>, shape: &[usize], dtype: DType) -> CubeTensor<CudaRuntime> {
    burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape.to_vec()),
        dtype,
    )
}

/// A new contiguous tensor of `like`'s shape and dtype on its device.
pub fn empty_like(like: &CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    empty(like, like.meta.shape().as_slice(), like.dtype)
}

/// The rows of a tensor and the length of its last dimension.
pub fn rows(shape: &[usize]) -> (usize, usize) {
    let d = shape.last().copied().unwrap_or(1);
    (shape.iter().product::<usize>() / d.max(1), d)
}

type Run<const I: usize, const O: usize> =
    Box<dyn Fn([CubeTensor<CudaRuntime>; I]) -> [CubeTensor<CudaRuntime>; O] + Send + Sync>;

/// An operation of burn's fusion stream with `I` inputs and `O` outputs of the
/// given shapes and dtypes, computed by `run` when the stream executes it, from
/// contiguous copies of its inputs (the inputs themselves where they are).
pub fn custom<const I: usize, const O: usize>(
    name: &'static str,
    inputs: [FloatTensor<Cuda>; I],
    outputs: [(Shape, DType); O],
    run: impl Fn([CubeTensor<CudaRuntime>; I]) -> [CubeTensor<CudaRuntime>; O] + Send + Sync + 'static,
) -> [FloatTensor<Cuda>; O] {
    custom_views(name, inputs, outputs, move |inputs| run(inputs.map(burn_cubecl::kernel::into_contiguous)))
}

/// [`custom`] with `run` given its inputs as they lie, views included (a
/// transposed matrix stays a transposed view).
pub fn custom_views<const I: usize, const O: usize>(
    name: &'static str,
    inputs: [FloatTensor<Cuda>; I],
    outputs: [(Shape, DType); O],
    run: impl Fn([CubeTensor<CudaRuntime>; I]) -> [CubeTensor<CudaRuntime>; O] + Send + Sync + 'static,
) -> [FloatTensor<Cuda>; O] {
    struct Custom<const I: usize, const O: usize> {
        desc: CustomOpIr,
        run: Run<I, O>,
    }

    impl<const I: usize, const O: usize> std::fmt::Debug for Custom<I, O> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.desc)
        }
    }

    impl<const I: usize, const O: usize> Operation<<Cube as FusionBackend>::FusionRuntime> for Custom<I, O> {
        fn execute(
            &self,
            handles: &mut HandleContainer<<<Cube as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>,
        ) {
            let (inputs, outputs) = self.desc.as_fixed::<I, O>();
            let inputs = inputs.each_ref().map(|t| handles.get_float_tensor::<Cube>(t));
            for (ir, out) in outputs.iter().zip((self.run)(inputs)) {
                handles.register_float_tensor::<Cube>(&ir.id, out);
            }
        }
    }

    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(&inputs);
    let outputs = outputs.map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape, dtype));
    let inputs = inputs.map(|t| t.into_ir());
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    let results = client.register(streams, OperationIr::Custom(desc.clone()), Custom { desc, run: Box::new(run) });
    results
        .try_into()
        .unwrap_or_else(|r: Vec<_>| panic!("{name} registered {} outputs, not {O}", r.len()))
}
