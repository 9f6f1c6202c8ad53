//! The burn backends wmx runs on: CPU always, CUDA and ROCm behind cargo features.
//! Code generic over `Backend` is run on the one an experiment names via [`dispatch`].

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;

use crate::config::Backend as BackendName;

/// The CPU backend (burn's `flex`).
pub type Cpu = burn::backend::Flex;
/// The CPU backend with gradients, for training.
pub type CpuTrain = Autodiff<Cpu>;

#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32>;
#[cfg(feature = "rocm")]
pub type Rocm = burn::backend::Rocm<f32>;

/// Work generic over the backend.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Makes `dtype` the device's float type for every tensor created after this
/// (weights, activations, optimizer state). Must run before the first tensor.
pub fn set_float_dtype<B: Backend>(device: &B::Device, dtype: crate::config::DType) -> Result<(), String> {
    use burn::tensor::{FloatDType, IntDType};
    let float = match dtype {
        crate::config::DType::F32 => return Ok(()),
        crate::config::DType::Bf16 => FloatDType::BF16,
        crate::config::DType::F16 => FloatDType::F16,
    };
    burn::tensor::set_default_dtypes::<B>(device, float, IntDType::I32)
        .map_err(|e| format!("this backend cannot compute in {dtype:?}: {e:?}"))
}

/// The named backend is not compiled into this binary.
#[derive(Debug, thiserror::Error)]
#[error(
    "backend `{name}` is not built into this wmx; rebuild with `cargo build --release --features {name}`"
)]
pub struct MissingBackend {
    pub name: &'static str,
}

/// Runs `task` on the named backend's default device.
pub fn dispatch<T: BackendTask>(
    backend: BackendName,
    task: T,
) -> Result<T::Output, MissingBackend> {
    match backend {
        BackendName::Cpu => Ok(task.run::<Cpu>(Default::default())),
        #[cfg(feature = "cuda")]
        BackendName::Cuda => Ok(task.run::<Cuda>(Default::default())),
        #[cfg(not(feature = "cuda"))]
        BackendName::Cuda => Err(MissingBackend { name: "cuda" }),
        #[cfg(feature = "rocm")]
        BackendName::Rocm => Ok(task.run::<Rocm>(Default::default())),
        #[cfg(not(feature = "rocm"))]
        BackendName::Rocm => Err(MissingBackend { name: "rocm" }),
    }
}
