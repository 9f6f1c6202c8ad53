//! Per-token cross-entropy as one autodiff operation, on CUDA and on the CPU.
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

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops, unary},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Float, FloatDType, IndexingUpdateOp, Int, Tensor, TensorPrimitive};

use super::{cast, is};
use crate::backend::{Cpu, CpuTrain};

/// Whether [`token_nll`] takes tensors of backend `B`: burn's Cuda, and the CPU
/// (in f32) unless `WMX_FUSED_LOSS=0`.
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Switch = super::Switch::new("WMX_FUSED_LOSS");
    #[cfg(feature = "cuda")]
    if is::<B, super::cuda::CudaTrain>() || is::<B, super::cuda::Cuda>() {
        return true;
    }
    (is::<B, CpuTrain>() || is::<B, Cpu>()) && FUSED.on()
}

/// The mean of per-token losses `nll` `[batch, seq]` where `mask` is 1; a
/// scalar `[1]` (0 where nothing is masked in).
pub fn masked_mean<B: Backend>(nll: Tensor<B, 2>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    let total = mask.clone().sum().clamp_min(1.0);
    (nll * mask).sum() / total
}

/// `-log softmax(logits)[target]` per token, `[batch, seq]`: [`token_nll`] where
/// it [`handles`] the backend (CUDA; the CPU in f32), burn's tensor operations
/// elsewhere.
pub fn nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    if handles::<B>() {
        return token_nll(logits, targets);
    }
    burn::tensor::activation::log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2)
        .neg()
}

/// `-log softmax(logits)[target]` per token: `[batch, seq, vocab]` logits and
/// `[batch, seq]` targets give `[batch, seq]`, in the logits' dtype. `B` must be
/// one that [`handles`] says.
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    #[cfg(feature = "cuda")]
    {
        use super::cuda::{Cuda, CudaTrain};
        if is::<B, CudaTrain>() {
            return cast(on_autodiff::<Cuda>(cast::<B, CudaTrain, 3, Float>(logits), cast::<B, CudaTrain, 2, Int>(targets)));
        }
        if is::<B, Cuda>() {
            let (logits, targets) = (cast::<B, Cuda, 3, Float>(logits), cast::<B, Cuda, 2, Int>(targets));
            return cast(forward(logits, targets).0);
        }
    }
    if is::<B, CpuTrain>() && super::cpu::takes(logits.dtype()) {
        return cast(on_autodiff::<Cpu>(cast::<B, CpuTrain, 3, Float>(logits), cast::<B, CpuTrain, 2, Int>(targets)));
    }
    if is::<B, Cpu>() && super::cpu::takes(logits.dtype()) {
        let logits = cast::<B, Cpu, 3, Float>(logits).into_primitive().tensor();
        let targets = cast::<B, Cpu, 2, Int>(targets).into_primitive();
        let (nll, _) = super::cpu::cross_entropy::forward(logits, targets);
        return cast(Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(nll)));
    }
    forward(logits, targets).0
}

/// [`tracked`] on tensors of `Autodiff<IB>`.
fn on_autodiff<IB: Backend>(logits: Tensor<Autodiff<IB>, 3>, targets: Tensor<Autodiff<IB>, 2, Int>) -> Tensor<Autodiff<IB>, 2> {
    // Autodiff tracks floats only: its integer tensors are the inner backend's.
    let out = tracked::<IB>(logits.into_primitive().tensor(), targets.into_primitive());
    Tensor::from_primitive(TensorPrimitive::Float(out))
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

/// [`forward`] as an operation of the autodiff graph over backend `B`,
/// differentiated by [`backward`]; on the CPU both are [`super::cpu`]'s kernels.
fn tracked<B: Backend>(logits: FloatTensor<Autodiff<B>>, targets: IntTensor<B>) -> FloatTensor<Autodiff<B>> {
    #[derive(Debug)]
    struct Nll;

    fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    impl<B: Backend> Backward<B, 1> for Nll {
        /// The logits, the targets and each row's log-sum-exp.
        type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (logits, targets, lse) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                if super::cpu::f32s::<B>(&[&logits, &lse, &grad]) {
                    use super::cpu::{back, flex};
                    let targets = super::cpu::int::<B>(targets);
                    return back::<B>(super::cpu::cross_entropy::backward(flex::<B>(logits), targets, flex::<B>(lse), flex::<B>(grad)));
                }
                backward(float::<B, 3>(logits), Tensor::from_primitive(targets), float::<B, 3>(lse), float::<B, 2>(grad))
                    .into_primitive()
                    .tensor()
            });
        }
    }

    let (nll, lse) = if super::cpu::f32s::<B>(&[&logits.primitive]) {
        use super::cpu::{back, flex};
        let (nll, lse) = super::cpu::cross_entropy::forward(flex::<B>(logits.primitive.clone()), super::cpu::int::<B>(targets.clone()));
        (back::<B>(nll), back::<B>(lse))
    } else {
        let (nll, lse) = forward(float::<B, 3>(logits.primitive.clone()), Tensor::from_primitive(targets.clone()));
        (nll.into_primitive().tensor(), lse.into_primitive().tensor())
    };
    super::tracked_node!(Nll, [logits.node.clone()], (logits.primitive, targets, lse), nll)
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

    /// [`super::token_nll`] on the CPU (its kernels, wired into burn's autodiff)
    /// gives the losses and gradient of burn's autodiff of the composed expression,
    /// at a shape large enough for the kernels' threads.
    #[test]
    fn the_cpu_loss_is_burns_autodiff_of_log_softmax() {
        let device = Default::default();
        let [batch, seq, vocab] = [4, 64, 1024];
        let logits = Tensor::<Cpu, 3>::random([batch, seq, vocab], Distribution::Normal(0.0, 3.0), &device);
        let ids: Vec<i32> = (0..batch * seq).map(|i| ((i * 7919 + 13) % vocab) as i32).collect();
        let targets = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device);
        let weights = Tensor::<CpuTrain, 2>::random([batch, seq], Distribution::Uniform(0.0, 2.0), &device);
        let run = |fused: bool| {
            let tracked = Tensor::<CpuTrain, 3>::from_data(logits.to_data(), &device).require_grad();
            let nll = match fused {
                true => super::token_nll(tracked.clone(), targets.clone()),
                false => log_softmax(tracked.clone(), 2).gather(2, targets.clone().unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2).neg(),
            };
            let grads = (nll.clone() * weights.clone()).sum().backward();
            (nll.inner(), tracked.grad(&grads).expect("logits are tracked"))
        };
        let (want_nll, want_grad) = run(false);
        let (got_nll, got_grad) = run(true);
        got_nll.into_data().assert_approx_eq::<f32>(&want_nll.into_data(), Tolerance::absolute(1e-4));
        got_grad.into_data().assert_approx_eq::<f32>(&want_grad.into_data(), Tolerance::rel_abs(1e-5, 1e-6));
    }
}
