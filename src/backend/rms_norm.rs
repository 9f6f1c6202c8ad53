//! RMSNorm for training on CUDA as one autodiff operation.
//!
//! The host's cost per burn operation bounds a 0.6B training step on a GPU
//! (bench/RESULTS.md). Written with burn's tensor operations, an RMSNorm is nine
//! tracked operations, and burn's autodiff differentiates them one by one: about
//! twenty more in the backward pass, and an f32 copy of the input kept for it.
//! [`tracked`] computes the same forward pass ([`norm`], which every backend runs,
//! so the logits do not change) as one node of the graph that keeps the input
//! and each row's root mean square, and its backward pass is the closed form
//! ([`grad_x`], [`grad_weight`], from the normalised input computed once). Both are generic, so they are tested on the CPU
//! against burn's autodiff of [`norm`]. Opt-in for now (`WMX_FUSED_NORM=1`,
//! [`handles`]): it saves memory, not time.

#[cfg(feature = "cuda")]
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, binary},
};
use burn::tensor::backend::Backend;
#[cfg(feature = "cuda")]
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::model::qwen3::in_f32;
#[cfg(feature = "cuda")]
use burn::tensor::{Float, TensorPrimitive};

#[cfg(feature = "cuda")]
use super::cublas::{Cuda, CudaTrain, cast, float, is};

/// Whether [`tracked`] takes tensors of backend `B`: burn's Cuda with autodiff,
/// when `WMX_FUSED_NORM=1`. It is off by default: on an H200 it took the 0.6B
/// step's peak memory from 26.2 to 23.8 GiB and its forward pass from ~55 to
/// 35 ms, but its backward pass from ~65 to 82 ms, and the step was no faster
/// (bench/RESULTS.md, session 9).
#[cfg(feature = "cuda")]
pub fn handles<B: Backend>() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    is::<B, CudaTrain>() && *ON.get_or_init(|| std::env::var("WMX_FUSED_NORM").is_ok_and(|v| v == "1"))
}

/// `x / rms(x) · weight` over the last dimension, normalised in f32 whatever x's
/// dtype and scaled in x's dtype (as transformers does); also each row's
/// `rms = √(mean(x²) + eps)`, f32, `[.., 1]`.
pub fn norm<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f64) -> (Tensor<B, D>, Tensor<B, D>) {
    let mut rms = None;
    let normed = in_f32(x, |x| {
        let r = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
        rms = Some(r.clone());
        x / r
    });
    (normed * weight.unsqueeze(), rms.expect("in_f32 runs its function"))
}

/// The normalised input `n = x / rms`, in f32: what both gradients read.
fn normalised<B: Backend, const D: usize>(x: Tensor<B, D>, rms: Tensor<B, D>) -> Tensor<B, D> {
    x.cast(FloatDType::F32) / rms
}

/// `d loss / d x` for the output's gradient `grad`: `(g·w − n · mean(g·w·n)) / rms`,
/// in f32, cast to `dtype` (x's).
fn grad_x<B: Backend, const D: usize>(n: Tensor<B, D>, weight: Tensor<B, 1>, rms: Tensor<B, D>, grad: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    let gw = grad.cast(FloatDType::F32) * weight.cast(FloatDType::F32).unsqueeze();
    let mean = (gw.clone() * n.clone()).mean_dim(D - 1);
    ((gw - n * mean) / rms).cast(FloatDType::from(dtype))
}

/// `d loss / d weight`: `Σ g · n` over every row, cast to the weight's dtype.
fn grad_weight<B: Backend, const D: usize>(n: Tensor<B, D>, weight_dtype: DType, grad: Tensor<B, D>) -> Tensor<B, 1> {
    let d = n.dims()[D - 1];
    let rows = n.shape().num_elements() / d.max(1);
    (grad.cast(FloatDType::F32) * n)
        .reshape([rows, d])
        .sum_dim(0)
        .reshape([d])
        .cast(FloatDType::from(weight_dtype))
}

/// [`norm`] as one node of the autodiff graph, differentiated by [`grad_x`] and
/// [`grad_weight`]. `B` must be one that [`handles`] says.
#[cfg(feature = "cuda")]
pub fn tracked<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    #[derive(Debug)]
    struct Norm<const D: usize>;

    impl<const D: usize> Backward<Cuda, 2> for Norm<D> {
        /// The input, the weight and each row's root mean square.
        type State = (FloatTensor<Cuda>, FloatTensor<Cuda>, FloatTensor<Cuda>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, weight, rms) = ops.state;
            let (x_dtype, weight_dtype) = (x.dtype, weight.dtype);
            // Read by both gradients, so computed once.
            let n = normalised::<Cuda, D>(float(x), float(rms.clone()));
            let n2 = n.clone();
            binary::<Cuda, _, _>(
                ops.parents,
                ops.node,
                grads,
                |grad| grad_x::<Cuda, D>(n, float(weight), float(rms), float(grad), x_dtype).into_primitive().tensor(),
                |grad| grad_weight::<Cuda, D>(n2, weight_dtype, float(grad)).into_primitive().tensor(),
            );
        }
    }

    let x = cast::<B, CudaTrain, D, Float>(x).into_primitive().tensor();
    let weight = cast::<B, CudaTrain, 1, Float>(weight).into_primitive().tensor();
    let (y, rms) = norm::<Cuda, D>(float(x.primitive.clone()), float(weight.primitive.clone()), eps);
    let y = y.into_primitive().tensor();
    let out = match Norm::<D>
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive, rms.into_primitive().tensor()), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    cast(Tensor::<CudaTrain, D>::from_primitive(TensorPrimitive::Float(out)))
}

#[cfg(test)]
mod tests {
    use super::{grad_weight, grad_x, norm, normalised};
    use crate::backend::{Cpu, CpuTrain};
    use burn::tensor::{Distribution, Tensor, Tolerance};

    #[test]
    fn the_closed_form_gradients_are_burns_autodiff_of_the_norm() {
        let device = Default::default();
        let x = Tensor::<Cpu, 3>::random([2, 3, 8], Distribution::Normal(0.0, 2.0), &device);
        let weight = Tensor::<Cpu, 1>::random([8], Distribution::Normal(1.0, 0.5), &device);
        let upstream = Tensor::<Cpu, 3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);

        let tx = Tensor::<CpuTrain, 3>::from_data(x.to_data(), &device).require_grad();
        let tw = Tensor::<CpuTrain, 1>::from_data(weight.to_data(), &device).require_grad();
        let (y, _) = norm(tx.clone(), tw.clone(), 1e-6);
        let loss = (y * Tensor::<CpuTrain, 3>::from_data(upstream.to_data(), &device)).sum();
        let grads = loss.backward();
        let want_x = tx.grad(&grads).unwrap();
        let want_w = tw.grad(&grads).unwrap();

        let (_, rms) = norm(x.clone(), weight.clone(), 1e-6);
        let (x_dtype, weight_dtype) = (x.dtype(), weight.dtype());
        let n = normalised(x, rms.clone());
        let got_x = grad_x(n.clone(), weight, rms, upstream.clone(), x_dtype);
        let got_w = grad_weight(n, weight_dtype, upstream);
        got_x.into_data().assert_approx_eq::<f32>(&want_x.into_data(), Tolerance::absolute(1e-5));
        got_w.into_data().assert_approx_eq::<f32>(&want_w.into_data(), Tolerance::absolute(1e-5));
    }
}
