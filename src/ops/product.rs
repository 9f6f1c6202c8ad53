//! Matrix products on the CPU, `lhs · rhs` over the last two dimensions, as one
//! autodiff operation whose passes call gemm straight into fresh outputs.
//!
//! burn-flex's matmul zeroes each output, then copies it into an aligned buffer,
//! on the calling thread while the CPU's other threads wait: about a tenth of a
//! training step's samples (`bench/cpu-threads.sh`). [`tracked`] computes the
//! same products with the same gemm ([`super::cpu::product`]): forward `lhs · rhs`,
//! backward `g · rhsᵀ` and `lhsᵀ · g`, transposes read through strides. Without
//! gradients (evaluation, generation) [`matmul`] takes the same forward pass. The
//! model uses it on the CPU for f32 operands with the same batch dimensions
//! unless `WMX_FUSED_PRODUCT=0`; everything else is burn's `matmul`.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::backend::{Cpu, CpuTrain};

static SWITCH: super::Switch = super::Switch::new("WMX_FUSED_PRODUCT");

/// A float primitive of `B`, which is the CPU backend, as burn-flex's tensor.
fn cpu<B: Backend>(t: &FloatTensor<B>) -> &burn::backend::flex::FlexTensor {
    (t as &dyn std::any::Any).downcast_ref().expect("a CPU tensor")
}

/// `lhs · rhs` on the CPU backend (with or without autodiff) when the operands
/// are f32 with the same batch dimensions; `Err` hands them back for burn's.
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    use super::{cast, is};
    use burn::tensor::{DType, Float};
    let takes = SWITCH.on()
        && (is::<B, Cpu>() || is::<B, CpuTrain>())
        && lhs.dtype() == DType::F32
        && rhs.dtype() == DType::F32
        && D >= 2
        && lhs.dims()[..D - 2] == rhs.dims()[..D - 2];
    if !takes {
        return Err((lhs, rhs));
    }
    if is::<B, CpuTrain>() {
        return Ok(cast(tracked::<Cpu, D>(cast::<B, CpuTrain, D, Float>(lhs), cast::<B, CpuTrain, D, Float>(rhs))));
    }
    let (l, r) = (lhs.into_primitive().tensor(), rhs.into_primitive().tensor());
    let out = super::cpu::product::forward(cpu::<B>(&l), cpu::<B>(&r));
    Ok(Tensor::from_primitive(TensorPrimitive::Float(super::cpu::back::<B>(out))))
}

/// The product as one node of the autodiff graph over the CPU backend.
fn tracked<B: Backend, const D: usize>(lhs: Tensor<Autodiff<B>, D>, rhs: Tensor<Autodiff<B>, D>) -> Tensor<Autodiff<B>, D> {
    #[derive(Debug)]
    struct Product;

    impl<B: Backend> Backward<B, 2> for Product {
        /// lhs and rhs.
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (lhs, rhs) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let (d_lhs, d_rhs) = super::cpu::product::grads(cpu::<B>(&lhs), cpu::<B>(&rhs), cpu::<B>(&grad));
            let back = super::cpu::back::<B>;
            super::register_grads!(B, grads, ops.parents, [back(d_lhs), back(d_rhs)]);
        }
    }

    let (lhs, rhs) = (lhs.into_primitive().tensor(), rhs.into_primitive().tensor());
    let y = super::cpu::back::<B>(super::cpu::product::forward(cpu::<B>(&lhs.primitive), cpu::<B>(&rhs.primitive)));
    let out = super::tracked_node!(Product, [lhs.node.clone(), rhs.node.clone()], (lhs.primitive, rhs.primitive), y);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor, Tolerance};

    use crate::backend::{Cpu, CpuTrain};

    /// The product and both gradients equal burn's, for plain, batched and
    /// transposed-view operands, with and without autodiff.
    #[test]
    fn products_and_their_gradients_are_burns() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        // A linear layer's rows · weight, large enough for gemm's threads.
        let x = Tensor::<CpuTrain, 2>::random([300, 128], normal, &device).require_grad();
        let w = Tensor::<CpuTrain, 2>::random([128, 200], normal, &device).require_grad();
        // Attention's scores: q · kᵀ with k a transposed view, batched.
        let q = Tensor::<CpuTrain, 4>::random([3, 2, 40, 16], normal, &device).require_grad();
        let k = Tensor::<CpuTrain, 4>::random([3, 2, 24, 16], normal, &device).require_grad();
        let weight_2 = Tensor::<CpuTrain, 2>::random([300, 200], normal, &device);
        let weight_4 = Tensor::<CpuTrain, 4>::random([3, 2, 40, 24], normal, &device);
        let ours = |a: Tensor<CpuTrain, 2>, b| super::matmul(a, b).ok().expect("the CPU product takes f32");
        let ours_4 = |a: Tensor<CpuTrain, 4>, b| super::matmul(a, b).ok().expect("the CPU product takes f32");
        let exact = Tolerance::absolute(0.0);
        let (fused, plain) = (ours(x.clone(), w.clone()), x.clone().matmul(w.clone()));
        fused.to_data().assert_approx_eq::<f32>(&plain.to_data(), exact);
        let (gf, gp) = ((fused * weight_2.clone()).sum().backward(), (plain * weight_2).sum().backward());
        x.grad(&gf).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&gp).unwrap().to_data(), exact);
        w.grad(&gf).unwrap().to_data().assert_approx_eq::<f32>(&w.grad(&gp).unwrap().to_data(), exact);
        let fused = ours_4(q.clone(), k.clone().swap_dims(2, 3));
        let plain = q.clone().matmul(k.clone().swap_dims(2, 3));
        fused.to_data().assert_approx_eq::<f32>(&plain.to_data(), exact);
        let (gf, gp) = ((fused * weight_4.clone()).sum().backward(), (plain * weight_4).sum().backward());
        q.grad(&gf).unwrap().to_data().assert_approx_eq::<f32>(&q.grad(&gp).unwrap().to_data(), exact);
        k.grad(&gf).unwrap().to_data().assert_approx_eq::<f32>(&k.grad(&gp).unwrap().to_data(), exact);
        // Without autodiff (generation) the forward pass alone.
        let (a, b) = (x.inner(), w.inner());
        let fused = super::matmul::<Cpu, 2>(a.clone(), b.clone()).ok().expect("the CPU product takes f32");
        fused.to_data().assert_approx_eq::<f32>(&a.matmul(b).to_data(), exact);
        // Different batch dimensions are left to burn.
        let (a, b) = (Tensor::<Cpu, 3>::ones([2, 3, 4], &device), Tensor::<Cpu, 3>::ones([1, 4, 5], &device));
        assert!(super::matmul(a, b).is_err());
    }
}
