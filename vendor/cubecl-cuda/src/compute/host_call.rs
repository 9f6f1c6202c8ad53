//! wmx patch: library calls launched like kernels.
//!
//! A library such as cuBLAS launches its own kernels on a stream the caller
//! names. To run one in order with cubecl's kernels, without the caller waiting
//! on cubecl's device thread for its operands' memory, the call is sent to that
//! thread as a launch of [`HostCall`]: the server resolves the launch's buffers
//! to device pointers as it does for any kernel and calls the registered
//! function with them and the stream it would have launched a kernel on.

use std::sync::RwLock;

use cubecl_core::ir::{ElemType, StorageType, UIntKind};
use cubecl_runtime::{
    compiler::{CompilationError, Compiler, CubeTask},
    id::KernelId,
    kernel::{CompiledKernel, KernelMetadata},
    server::{Binding, ExecutionMode, KernelArguments, MetadataBindingInfo},
};

use crate::CudaCompiler;

/// A function run on the device thread: the call's parameters, the device
/// address of each buffer in launch order, and the stream to run on
/// (a `CUstream`). An error is reported as a failed launch.
pub type HostFn = fn(params: &[u64], pointers: &[u64], stream: *mut core::ffi::c_void) -> Result<(), String>;

static FUNCTIONS: RwLock<Vec<HostFn>> = RwLock::new(Vec::new());

/// Registers `function` and returns the id [`arguments`] names it by.
pub fn register(function: HostFn) -> u64 {
    let mut functions = FUNCTIONS.write().unwrap();
    functions.push(function);
    (functions.len() - 1) as u64
}

/// The task to launch (with `CubeCount::Static(1, 1, 1)`) for a host call.
pub struct HostCall;

/// Launch arguments calling function `id` with `params` on `buffers`.
pub fn arguments(id: u64, params: &[u64], buffers: Vec<Binding>) -> KernelArguments {
    let mut data = Vec::with_capacity(params.len() + 1);
    data.push(id);
    data.extend_from_slice(params);
    KernelArguments {
        buffers,
        info: MetadataBindingInfo::custom(data),
        tensor_maps: Vec::new(),
    }
}

/// Whether a launched task is a [`HostCall`].
pub(crate) fn is_host_call(kernel: &dyn CubeTask<CudaCompiler>) -> bool {
    kernel.name() == core::any::type_name::<HostCall>()
}

/// Runs the call that `data` (a [`HostCall`]'s info) names.
pub(crate) fn call(data: &[u64], pointers: &[u64], stream: *mut core::ffi::c_void) -> Result<(), String> {
    let function = FUNCTIONS
        .read()
        .unwrap()
        .get(data[0] as usize)
        .copied()
        .ok_or_else(|| format!("no host function {} is registered", data[0]))?;
    function(&data[1..], pointers, stream)
}

impl KernelMetadata for HostCall {
    fn id(&self) -> KernelId {
        KernelId::new::<Self>()
    }

    fn address_type(&self) -> StorageType {
        ElemType::UInt(UIntKind::U64).into()
    }
}

impl CubeTask<CudaCompiler> for HostCall {
    fn compile(
        &self,
        _compiler: &mut CudaCompiler,
        _compilation_options: &<CudaCompiler as Compiler>::CompilationOptions,
        _mode: ExecutionMode,
        _address_type: StorageType,
    ) -> Result<CompiledKernel<CudaCompiler>, CompilationError> {
        Err(CompilationError::UnsupportedInstruction {
            reason: "a host call is run by the server, never compiled".into(),
            backtrace: cubecl_common::backtrace::BackTrace::capture(),
        })
    }
}
