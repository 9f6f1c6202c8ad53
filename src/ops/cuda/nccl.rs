//! Sums across the processes of a data-parallel run through NCCL.
//!
//! NCCL is loaded when a run first needs it (`libnccl.so.2`, as PyTorch's wheels and
//! NVIDIA's packages install it; `WMX_NCCL` names another file), so a binary built
//! with CUDA runs where NCCL is absent until a run asks for several GPUs. Each
//! process holds one communicator, made by [`init`] on the process's CUDA device 0
//! from the id the first rank drew ([`unique_id`]). [`all_reduce`] is one operation
//! of burn's fusion stream: cubecl's device thread launches `ncclAllReduce` on the
//! stream it launches its own kernels on (the vendored cubecl-cuda's `host_call`,
//! as the cuBLAS products do), in order with them, so the host does not wait.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use burn::tensor::DType;
use burn::tensor::ops::FloatTensor;

use super::{Cuda, HostFunction};

/// NCCL's `ncclUniqueId`: the bytes ranks share to find each other.
pub const ID_BYTES: usize = 128;

#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [c_char; ID_BYTES],
}

type Comm = *mut c_void;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> c_int;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int;
type AllReduce = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> c_int;
type GetErrorString = unsafe extern "C" fn(c_int) -> *const c_char;
type GetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;

/// The NCCL functions wmx calls.
struct Nccl {
    _lib: libloading::Library,
    get_unique_id: GetUniqueId,
    comm_init_rank: CommInitRank,
    all_reduce: AllReduce,
    get_error_string: GetErrorString,
    version: c_int,
}

/// The library, loaded once; the error says what was tried.
fn nccl() -> Result<&'static Nccl, String> {
    static NCCL: OnceLock<Result<Nccl, String>> = OnceLock::new();
    NCCL.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Nccl, String> {
    let names: Vec<String> = match std::env::var("WMX_NCCL") {
        Ok(path) => vec![path],
        Err(_) => vec!["libnccl.so.2".into(), "libnccl.so".into()],
    };
    let mut failures = Vec::new();
    for name in &names {
        // SAFETY: loading NCCL runs its initialisers, which only set up the library.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return bind(lib).map_err(|e| format!("{name}: {e}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "cannot load NCCL, which training on several GPUs sums gradients through ({}); \
         install it (PyTorch's CUDA wheels carry it in nvidia/nccl/lib) and add its folder to \
         LD_LIBRARY_PATH, or name the file in WMX_NCCL",
        failures.join("; ")
    ))
}

fn bind(lib: libloading::Library) -> Result<Nccl, String> {
    // SAFETY: each symbol is NCCL's C function with the signature its header declares.
    unsafe {
        let get_unique_id = *lib.get::<GetUniqueId>(b"ncclGetUniqueId\0").map_err(|e| e.to_string())?;
        let comm_init_rank = *lib.get::<CommInitRank>(b"ncclCommInitRank\0").map_err(|e| e.to_string())?;
        let all_reduce = *lib.get::<AllReduce>(b"ncclAllReduce\0").map_err(|e| e.to_string())?;
        let get_error_string = *lib.get::<GetErrorString>(b"ncclGetErrorString\0").map_err(|e| e.to_string())?;
        let get_version = *lib.get::<GetVersion>(b"ncclGetVersion\0").map_err(|e| e.to_string())?;
        let mut version = 0;
        get_version(&mut version);
        Ok(Nccl { _lib: lib, get_unique_id, comm_init_rank, all_reduce, get_error_string, version })
    }
}

impl Nccl {
    fn check(&self, result: c_int, what: &str) -> Result<(), String> {
        if result == 0 {
            return Ok(());
        }
        // SAFETY: NCCL returns a static string for any result code.
        let text = unsafe { std::ffi::CStr::from_ptr((self.get_error_string)(result)) };
        Err(format!("{what} failed: {} (NCCL error {result})", text.to_string_lossy()))
    }
}

/// NCCL's version as `major.minor.patch`, loading it.
pub fn version() -> Result<String, String> {
    let v = nccl()?.version;
    // NCCL ≥ 2.9 encodes versions as major*10000 + minor*100 + patch.
    Ok(format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
}

/// A new id for a communicator, drawn by the first rank and handed to the others.
pub fn unique_id() -> Result<[u8; ID_BYTES], String> {
    let nccl = nccl()?;
    let mut id = UniqueId { internal: [0; ID_BYTES] };
    // SAFETY: `id` is a valid ncclUniqueId to write.
    nccl.check(unsafe { (nccl.get_unique_id)(&mut id) }, "ncclGetUniqueId")?;
    Ok(id.internal.map(|c| c as u8))
}

/// This process's communicator (as an address), once [`init`] made it.
static COMM: OnceLock<usize> = OnceLock::new();

/// Joins the communicator of `size` ranks named by `id` as `rank`, on this process's
/// CUDA device 0 (each rank sees its own GPU as device 0). Blocks until every rank
/// has joined.
pub fn init(id: &[u8; ID_BYTES], rank: usize, size: usize) -> Result<(), String> {
    if COMM.get().is_some() {
        return Err("this process already joined a communicator".into());
    }
    let nccl = nccl()?;
    let driver = |e: cudarc::driver::DriverError| format!("CUDA device 0: {e}");
    // NCCL makes the communicator on the current device: the primary context of
    // device 0, the one cubecl runs in.
    unsafe {
        cudarc::driver::result::init().map_err(driver)?;
        let dev = cudarc::driver::result::device::get(0).map_err(driver)?;
        let ctx = cudarc::driver::result::primary_ctx::retain(dev).map_err(driver)?;
        cudarc::driver::result::ctx::set_current(ctx).map_err(driver)?;
    }
    let id = UniqueId { internal: id.map(|b| b as c_char) };
    let mut comm: Comm = std::ptr::null_mut();
    let (rank, size) = (
        c_int::try_from(rank).map_err(|_| "rank out of range")?,
        c_int::try_from(size).map_err(|_| "world size out of range")?,
    );
    // SAFETY: `comm` receives the new communicator; id, size and rank are NCCL's.
    nccl.check(unsafe { (nccl.comm_init_rank)(&mut comm, size, id, rank) }, "ncclCommInitRank")?;
    COMM.set(comm as usize).map_err(|_| "this process already joined a communicator".to_string())
}

/// Whether this process joined a communicator.
pub fn joined() -> bool {
    COMM.get().is_some()
}

/// NCCL's code for a float dtype.
fn data_type(dtype: DType) -> Option<u64> {
    match dtype {
        DType::F16 => Some(6),
        DType::F32 => Some(7),
        DType::F64 => Some(8),
        DType::BF16 => Some(9),
        _ => None,
    }
}

/// The element-wise sum of `tensor` over every rank, into a new tensor, as an
/// operation of burn's fusion stream. Every rank must call it, in the same order,
/// with tensors of the same shape and dtype.
pub fn all_reduce(tensor: FloatTensor<Cuda>) -> FloatTensor<Cuda> {
    let code = data_type(tensor.dtype).unwrap_or_else(|| panic!("NCCL cannot sum {:?} tensors", tensor.dtype));
    assert!(joined(), "an NCCL sum before this process joined a communicator");
    let out = [(tensor.shape.clone(), tensor.dtype)];
    let [sum] = super::kernel::custom_views("wmx_nccl_all_reduce", [tensor], out, move |[x]| {
        let x = burn_cubecl::kernel::into_contiguous(x);
        let sum = super::kernel::empty_like(&x);
        let count = x.meta.shape().as_slice().iter().product::<usize>() as u64;
        if count > 0 {
            static ALL_REDUCE: HostFunction = HostFunction::new(run_all_reduce);
            ALL_REDUCE.launch(&x, &[code, count], vec![x.handle.clone().binding(), sum.handle.clone().binding()]);
        }
        [sum]
    });
    sum
}

/// Runs one `ncclAllReduce` (sum) on cubecl's device thread, on its stream.
fn run_all_reduce(params: &[u64], pointers: &[u64], stream: *mut c_void) -> Result<(), String> {
    let &[dtype, count] = params else {
        return Err(format!("an NCCL sum takes 2 parameters, not {}", params.len()));
    };
    let &[send, receive] = pointers else {
        return Err(format!("an NCCL sum takes 2 buffers, not {}", pointers.len()));
    };
    let comm = *COMM.get().ok_or("an NCCL sum before this process joined a communicator")? as Comm;
    let nccl = nccl()?;
    const SUM: c_int = 0;
    // SAFETY: both buffers hold `count` elements of `dtype` on this device; the stream
    // is cubecl's, which orders the sum after the kernels that wrote `send`.
    let result = unsafe {
        (nccl.all_reduce)(send as *const c_void, receive as *mut c_void, count as usize, dtype as c_int, SUM, comm, stream)
    };
    nccl.check(result, "ncclAllReduce").inspect_err(|e| {
        // A failed sum leaves the ranks out of step: nothing after it can be trusted.
        eprintln!("error: {e}; stopping this process");
        std::process::exit(1);
    })
}
