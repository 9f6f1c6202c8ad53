//! `x.swap_dims(1, 2)` of a `[a, b, c, d]` tensor, laid out contiguously: how
//! attention turns `[batch, seq, heads, head_dim]` heads first and back.
//!
//! burn's swap is a view; the reshape after it (and the one in its backward pass)
//! copies it element by element on the calling thread (burn-flex's strided
//! copy), while the CPU's other threads wait. When training on the CPU,
//! [`tracked`] is one autodiff operation whose passes copy rows of `d` elements
//! in parallel ([`super::cpu::heads::swap`]); its backward pass is the same swap
//! of the gradient. Elsewhere (CUDA reads views in its fused kernels) it is
//! burn's view. The model uses it unless `WMX_FUSED_HEADS=0`.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Whether swaps on backend `B` go through [`tracked`]: training on the CPU,
/// unless `WMX_FUSED_HEADS=0`.
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Fused = super::Fused::new("WMX_FUSED_HEADS");
    super::training_on_cpu::<B>() && FUSED.handles::<B>()
}

/// `x.swap_dims(1, 2)`: [`tracked`] where it [`handles`] `B` and the dtype, burn's view otherwise.
pub fn swap<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    if handles::<B>() && super::cpu::takes(x.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        return cast(tracked::<Cpu>(cast::<B, CpuTrain, 4, Float>(x)));
    }
    x.swap_dims(1, 2)
}

fn pass<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    if super::cpu::f32s::<B>(&[&x]) {
        // Read through its layout, whatever it is (`cpu::heads::swap`).
        let x = super::cast_primitive::<B, crate::backend::Cpu>(x);
        return super::cpu::back::<B>(super::cpu::heads::swap(x));
    }
    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x))
        .swap_dims(1, 2)
        .into_primitive()
        .tensor()
}

/// The swap as one node of the autodiff graph over backend `B`.
pub fn tracked<B: Backend>(x: Tensor<Autodiff<B>, 4>) -> Tensor<Autodiff<B>, 4> {
    #[derive(Debug)]
    struct Swap;

    impl<B: Backend> Backward<B, 1> for Swap {
        type State = ();

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            super::register_grads!(B, grads, ops.parents, [pass::<B>(grad)]);
        }
    }

    let x = x.into_primitive().tensor();
    let y = pass::<B>(x.primitive.clone());
    let out = super::tracked_node!(Swap, [x.node.clone()], (), y);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor, Tolerance};

    use crate::backend::CpuTrain;

    #[test]
    fn the_swap_and_its_gradient_are_burns() {
        let device = Default::default();
        let x = Tensor::<CpuTrain, 4>::random([4, 128, 8, 32], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<CpuTrain, 4>::random([4, 8, 128, 32], Distribution::Normal(0.0, 1.0), &device);
        let fused = super::swap(x.clone());
        let plain = x.clone().swap_dims(1, 2);
        fused.to_data().assert_eq(&plain.to_data(), true);
        let g_fused = (fused * w.clone()).sum().backward();
        let g_plain = (plain * w).sum().backward();
        x.grad(&g_fused).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&g_plain).unwrap().to_data(), Tolerance::absolute(0.0));
    }

    /// The CPU's swap reads views as they are laid out: the swap of a contiguous
    /// tensor (given back as a view of it, no copy), a permutation whose last
    /// dimension is strided, and a narrowed view that starts at an offset.
    #[test]
    fn the_cpus_swap_reads_any_layout() {
        use crate::backend::Cpu;
        use burn::tensor::TensorPrimitive;
        let device = Default::default();
        let base = Tensor::<Cpu, 4>::random([3, 5, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        let views = [
            base.clone().swap_dims(1, 2),
            base.clone().permute([0, 3, 1, 2]),
            base.clone().narrow(1, 1, 3).narrow(3, 2, 4),
        ];
        for (i, view) in views.into_iter().enumerate() {
            let want = view.clone().swap_dims(1, 2).to_data();
            let flex = view.into_primitive().tensor();
            let shared = i == 0;
            let got = crate::ops::cpu::heads::swap(flex.clone());
            assert!(got.is_contiguous(), "view {i}");
            assert_eq!(std::sync::Arc::ptr_eq(&got.data_arc(), &flex.data_arc()), shared, "view {i}: shares its storage");
            Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(got)).to_data().assert_eq(&want, true);
        }
    }
}
