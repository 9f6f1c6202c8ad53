//! Per-token cross-entropy on CUDA as one autodiff operation.
//!
//! Written with burn's tensor operations, `-log_softmax(logits).gather(target)`
//! keeps the full `[batch, seq, vocab]` log-probabilities for the backward pass
//! and walks the vocabulary several more times there (the gather's scatter into
//! zeros, the subtraction's sum, the exponential's product); with Qwen3's 151,936
//! tokens each walk over a batch of 8 × 512 is 1.2 GB in bf16. [`token_nll`]
//! keeps only the logits and each row's log-sum-exp, and its backward pass is one
//! element-wise walk, `softmax · g`, written once, with `g` subtracted at each
//! row's target. The log-sum-exp and the softmax are computed in f32 whatever the
//! logits' dtype. [`forward`] and [`backward`] are generic, so their math is
//! tested on the CPU against burn's autodiff of the composed expression.

#[cfg(feature = "cuda")]
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops, unary},
};
use burn::tensor::backend::Backend;
#[cfg(feature = "cuda")]
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor};
#[cfg(feature = "cuda")]
use burn::tensor::{Float, TensorPrimitive};

#[cfg(feature = "cuda")]
use super::cuda::{Cuda, CudaTrain, cast, float, is};

/// Whether [`token_nll`] takes tensors of backend `B`.
#[cfg(feature = "cuda")]
pub fn handles<B: Backend>() -> bool {
    is::<B, CudaTrain>() || is::<B, Cuda>()
}

/// `-log softmax(logits)[target]` per token: `[batch, seq, vocab]` logits and
/// `[batch, seq]` targets give `[batch, seq]`, in the logits' dtype. `B` must be
/// one that [`handles`] says.
#[cfg(feature = "cuda")]
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    if is::<B, CudaTrain>() {
        // Autodiff tracks floats only: its integer tensors are the inner backend's.
        let targets = cast::<B, CudaTrain, 2, Int>(targets).into_primitive();
        let logits = cast::<B, CudaTrain, 3, Float>(logits).into_primitive().tensor();
        let out = tracked(logits, targets);
        cast(Tensor::<CudaTrain, 2>::from_primitive(TensorPrimitive::Float(out)))
    } else {
        let logits = cast::<B, Cuda, 3, Float>(logits);
        cast(forward(logits, cast::<B, Cuda, 2, Int>(targets)).0)
    }
}

/// The losses `[batch, seq]` (in the logits' dtype) and each row's log-sum-exp
/// `[batch, seq, 1]` (f32).
fn forward<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> (Tensor<B, 2>, Tensor<B, 3>) {
    let dtype = logits.dtype();
    // The maximum is exact in any dtype; taking it before the cast keeps the f32
    // copy of the logits from being written out (on CUDA the cast fuses into the
    // sum's read).
    let max = logits.clone().max_dim(2).cast(FloatDType::F32);
    let lse = (logits.clone().cast(FloatDType::F32) - max.clone()).exp().sum_dim(2).log() + max;
    let picked = logits.gather(2, targets.unsqueeze_dim(2)).cast(FloatDType::F32);
    let nll = (lse.clone() - picked).squeeze_dim::<2>(2).cast(FloatDType::from(dtype));
    (nll, lse)
}

/// `d loss / d logits` for the losses' gradient `grad` `[batch, seq]`:
/// `grad · (softmax(logits) − onehot(target))`.
fn backward<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    lse: Tensor<B, 3>,
    grad: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let dtype = FloatDType::from(logits.dtype());
    let grad = grad.cast(FloatDType::F32).unsqueeze_dim::<3>(2);
    let soft = ((logits.cast(FloatDType::F32) - lse).exp() * grad.clone()).cast(dtype);
    soft.scatter(2, targets.unsqueeze_dim(2), grad.neg().cast(dtype), IndexingUpdateOp::Add)
}

/// [`forward`] as an operation of the autodiff graph, differentiated by [`backward`].
#[cfg(feature = "cuda")]
fn tracked(logits: FloatTensor<CudaTrain>, targets: IntTensor<Cuda>) -> FloatTensor<CudaTrain> {
    #[derive(Debug)]
    struct Nll;

    impl Backward<Cuda, 1> for Nll {
        /// The logits, the targets and each row's log-sum-exp.
        type State = (FloatTensor<Cuda>, IntTensor<Cuda>, FloatTensor<Cuda>);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (logits, targets, lse) = ops.state;
            unary::<Cuda, _>(ops.parents, ops.node, grads, |grad| {
                backward(
                    float(logits),
                    Tensor::from_primitive(targets),
                    float(lse),
                    float(grad),
                )
                .into_primitive()
                .tensor()
            });
        }
    }

    let (nll, lse) = forward(float(logits.primitive.clone()), Tensor::from_primitive(targets.clone()));
    let nll = nll.into_primitive().tensor();
    super::tracked_node!(Nll, [logits.node.clone()], (logits.primitive, targets, lse.into_primitive().tensor()), nll)
}

#[cfg(test)]
mod tests {
    use super::{backward, forward};
    use crate::backend::{Cpu, CpuTrain};
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Distribution, Int, Tensor, TensorData, Tolerance};

    #[test]
    fn the_fused_loss_and_gradient_are_log_softmax_and_its_autodiff() {
        let device = Default::default();
        let [batch, seq, vocab] = [2, 3, 7];
        let logits = Tensor::<Cpu, 3>::random([batch, seq, vocab], Distribution::Normal(0.0, 3.0), &device);
        let targets = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![0i32, 6, 3, 3, 1, 5], [batch, seq]), &device);
        let weights = Tensor::<Cpu, 2>::from_data(TensorData::new(vec![1.0f32, 0.5, 0.0, 2.0, 1.0, 0.25], [batch, seq]), &device);

        // The composed expression, differentiated by burn.
        let tracked = Tensor::<CpuTrain, 3>::from_data(logits.to_data(), &device).require_grad();
        let nll = log_softmax(tracked.clone(), 2)
            .gather(2, Tensor::<CpuTrain, 2, Int>::from_data(targets.to_data(), &device).unsqueeze_dim::<3>(2))
            .squeeze_dim::<2>(2)
            .neg();
        let loss = (nll.clone() * Tensor::<CpuTrain, 2>::from_data(weights.to_data(), &device)).sum();
        let want_grad = tracked.grad(&loss.backward()).expect("logits are tracked");

        let (got_nll, lse) = forward(logits.clone(), targets.clone());
        got_nll.into_data().assert_approx_eq::<f32>(&nll.inner().into_data(), Tolerance::absolute(1e-5));
        let got_grad = backward(logits, targets, lse, weights);
        got_grad.into_data().assert_approx_eq::<f32>(&want_grad.into_data(), Tolerance::absolute(1e-5));
    }
}
