//! What wmx's CUDA operations share: burn's Cuda backend types, moving tensors
//! between a generic backend and Cuda once [`is`] says they are the same, and host
//! functions that run in stream order on cubecl's device thread.

pub mod cublas;
pub mod kernel;
pub mod nccl;

use burn::backend::Autodiff;
use burn::cubecl::CubeCount;
use burn::cubecl::cuda::{CudaRuntime, host_call};
use burn::cubecl::server::Binding;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::Fusion;

/// The cubecl backend under burn's `Cuda` (fusion on top of it).
pub type Cube = CubeBackend<CudaRuntime, f32, i32, u8>;
/// burn's `Cuda<f32>`: what wmx runs on with `--backend cuda`.
pub type Cuda = Fusion<Cube>;
/// Training on CUDA.
pub type CudaTrain = Autodiff<Cuda>;

pub use super::{cast, cast_primitive, is};

/// A float primitive of burn's Cuda as a tensor, for the custom autodiff
/// operations' generic math.
pub fn float<const D: usize>(t: FloatTensor<Cuda>) -> Tensor<Cuda, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A function that cubecl's device thread runs in stream order with its kernels
/// (the vendored cubecl-cuda's `host_call`), registered on its first launch.
pub struct HostFunction {
    function: host_call::HostFn,
    id: std::sync::OnceLock<u64>,
}

impl HostFunction {
    pub const fn new(function: host_call::HostFn) -> HostFunction {
        HostFunction { function, id: std::sync::OnceLock::new() }
    }

    /// Queues a call with `params` and `buffers` (the function gets their device
    /// pointers) after everything launched before it on `on`'s device.
    pub fn launch(&self, on: &CubeTensor<CudaRuntime>, params: &[u64], buffers: Vec<Binding>) {
        let id = *self.id.get_or_init(|| host_call::register(self.function));
        on.client.launch(
            Box::new(host_call::HostCall),
            CubeCount::Static(1, 1, 1),
            host_call::arguments(id, params, buffers),
        );
    }
}

