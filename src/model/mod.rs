//! The WorldModel's networks: the Qwen3 text stream, the WAT stream and the fusion
//! blocks, generic over the burn backend. One file per architecture.

pub mod experiment;
pub mod fusion;
pub mod generate;
pub mod hf;
pub mod parity;
pub mod qwen3;
pub mod wat_stream;
pub mod weights;
pub mod world;

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Distribution, Tensor, backend::Backend};

/// A tensor of `shape` drawn from `distribution` on the host, by burn-flex's
/// generator (seeded by [`crate::backend::seed`]), then placed on `device` in its
/// float dtype: the same numbers on every backend for one seed. A GPU backend's own
/// generator (cubecl's) would draw other numbers, so a CUDA run of seed N would
/// start from other weights than the CPU's run of seed N.
pub fn random<B: Backend, const D: usize>(shape: [usize; D], distribution: Distribution, device: &B::Device) -> Tensor<B, D> {
    let host = Tensor::<crate::backend::Cpu, D>::random(shape, distribution, &Default::default());
    Tensor::from_data(host.into_data(), device)
}

/// A bias-free linear layer `[d_in] → [d_out]`, initialised eagerly from
/// U(-1/√d_in, 1/√d_in). (burn's lazy initialisation draws its random numbers when
/// a parameter is first read, so a cloned, unread model would not match its source.)
pub fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    let bound = 1.0 / (d_in as f64).sqrt();
    let weight = random([d_in, d_out], Distribution::Uniform(-bound, bound), device);
    Linear {
        weight: Param::from_tensor(weight),
        bias: None,
    }
}

/// Errors loading, building or saving a model; each names the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("missing {what}")]
    Missing { what: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("tensor `{name}` has shape {found:?}; the config expects {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{dir}: tensors the model does not use: {}", names.join(", "))]
    Unexpected { dir: PathBuf, names: Vec<String> },
    #[error("tensor data: {0}")]
    Tensor(String),
}

impl ModelError {
    pub fn io(path: &Path, err: impl std::fmt::Display) -> ModelError {
        ModelError::Io {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }

    pub fn format(path: &Path, message: String) -> ModelError {
        ModelError::Format {
            path: path.to_path_buf(),
            message,
        }
    }
}
