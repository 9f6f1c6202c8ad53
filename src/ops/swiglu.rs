//! The MLP's gate, `silu(gate) · up`, for training as one autodiff operation with
//! CUDA kernels of its own.
//!
//! [`composed`] is burn's operations: `silu(g) = g · sigmoid(g)`, where burn's
//! sigmoid is `exp(−log(1 + exp(−g)))` in f32 (eight operations once its casts
//! are counted), then the product with `up`; autodiff differentiates each. [`tracked`]
//! is one node of the graph that keeps `gate` and `up`; its backward pass is the
//! closed form `d up = dy · silu(g)`, `d gate = dy · up · σ(g)·(1 + g·(1 − σ(g)))`.
//!
//! On burn's Cuda both passes are one element-wise kernel each ([`kernels`]),
//! computing in f32 and rounding `σ(g)`, `silu(g)` and the product to the inputs'
//! dtype as the composed operations do. On every other backend both are burn
//! operations, which a CPU test checks against burn's autodiff of [`composed`];
//! `wmx bench kernels` checks the kernels the same way on the GPU. The model uses
//! it when training on CUDA ([`handles`]) unless `WMX_FUSED_SWIGLU=0`.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Whether the model's MLP gates of backend `B` go through [`tracked`]: training
/// on burn's Cuda, unless `WMX_FUSED_SWIGLU=0`.
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Fused = super::Fused::new("WMX_FUSED_SWIGLU");
    FUSED.handles::<B>()
}

/// `silu(gate) · up` with burn's operations.
pub fn composed<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// The model's gate on backend `B`: [`tracked`] where it [`handles`] `B` and the
/// dtypes, [`composed`] otherwise.
pub fn apply<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if handles::<B>() && super::training_on_cuda::<B>() && super::cuda::kernel::takes(gate.dtype()) && gate.dtype() == up.dtype() {
        use super::cuda::{Cuda, CudaTrain, cast};
        use burn::tensor::Float;
        let (gate, up) = (cast::<B, CudaTrain, D, Float>(gate), cast::<B, CudaTrain, D, Float>(up));
        return cast(tracked::<Cuda, D>(gate, up));
    }
    if handles::<B>() && super::training_on_cpu::<B>() && super::cpu::takes(gate.dtype()) && super::cpu::takes(up.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        return cast(tracked::<Cpu, D>(cast::<B, CpuTrain, D, Float>(gate), cast::<B, CpuTrain, D, Float>(up)));
    }
    if handles::<B>() && super::inferring_on_cpu::<B>() && super::cpu::takes(gate.dtype()) && super::cpu::takes(up.dtype()) {
        return Tensor::from_primitive(TensorPrimitive::Float(forward_pass::<B, D>(gate.into_primitive().tensor(), up.into_primitive().tensor())));
    }
    composed(gate, up)
}

fn forward_pass<B: Backend, const D: usize>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::forward::<B>(gate, up);
    }
    if super::cpu::f32s::<B>(&[&gate, &up]) {
        use super::cpu::{back, flex};
        return back::<B>(super::cpu::swiglu::forward(flex::<B>(gate), flex::<B>(up)));
    }
    let float = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
    composed(float(gate), float(up)).into_primitive().tensor()
}

/// `(d gate, d up)` for the output's gradient.
fn grads<B: Backend, const D: usize>(gate: FloatTensor<B>, up: FloatTensor<B>, grad: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::grads::<B>(gate, up, grad);
    }
    if super::cpu::f32s::<B>(&[&gate, &up, &grad]) {
        use super::cpu::{back, flex};
        let (d_gate, d_up) = super::cpu::swiglu::grads(flex::<B>(gate), flex::<B>(up), flex::<B>(grad));
        return (back::<B>(d_gate), back::<B>(d_up));
    }
    let float = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
    let (g, u, dy) = (float(gate), float(up), float(grad));
    let s = sigmoid(g.clone());
    let d_up = dy.clone() * silu(g.clone());
    let d_gate = dy * u * (s.clone() * (s.clone().neg().add_scalar(1.0) * g).add_scalar(1.0));
    (d_gate.into_primitive().tensor(), d_up.into_primitive().tensor())
}

/// [`composed`] as one node of the autodiff graph over backend `B`.
pub fn tracked<B: Backend, const D: usize>(gate: Tensor<Autodiff<B>, D>, up: Tensor<Autodiff<B>, D>) -> Tensor<Autodiff<B>, D> {
    #[derive(Debug)]
    struct Gate<const D: usize>;

    impl<B: Backend, const D: usize> Backward<B, 2> for Gate<D> {
        /// gate and up.
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (gate, up) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let (d_gate, d_up) = self::grads::<B, D>(gate, up, grad);
            super::register_grads!(B, grads, ops.parents, [d_gate, d_up]);
        }
    }

    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let y = forward_pass::<B, D>(gate.primitive.clone(), up.primitive.clone());
    let out = super::tracked_node!(Gate::<D>, [gate.node.clone(), up.node.clone()], (gate.primitive, up.primitive), y);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(feature = "cuda")]
mod kernels {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;

    use super::super::cuda::{Cuda, cast_primitive};
    use super::super::cuda::kernel::{Kernel, code, custom, empty_like, int};

    const SOURCE: &str = r#"
__device__ float wmx_sigmoid(float g) { return expf(-logf(expf(-g) + 1.0f)); }

extern "C" __global__ void wmx_swiglu(const void* gate, const void* up, void* y, long long c, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = wmx_load(gate, c, i);
        const float a = wmx_round(g * wmx_round(wmx_sigmoid(g), c), c);
        wmx_store(y, c, i, a * wmx_load(up, c, i));
    }
}

extern "C" __global__ void wmx_swiglu_grad(const void* gate, const void* up, const void* dy,
    void* d_gate, void* d_up, long long c, long long cd, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = wmx_load(gate, c, i), u = wmx_load(up, c, i), d = wmx_load(dy, cd, i);
        const float s = wmx_sigmoid(g);
        const float a = wmx_round(g * wmx_round(s, c), c);
        wmx_store(d_up, c, i, d * a);
        wmx_store(d_gate, c, i, d * u * (s * (1.0f + g * (1.0f - s))));
    }
}
"#;

    static GATE: Kernel = Kernel::new(SOURCE, "wmx_swiglu");
    static GRADS: Kernel = Kernel::new(SOURCE, "wmx_swiglu_grad");

    pub(super) fn forward<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
        let [gate, up] = [gate, up].map(cast_primitive::<B, Cuda>);
        let outputs = [(gate.shape.clone(), gate.dtype)];
        let [y] = custom("wmx_swiglu", [gate, up], outputs, |[g, u]| {
            let n: usize = g.meta.shape().as_slice().iter().product();
            let y = empty_like(&g);
            GATE.per_item(&g, n, &[&g, &u, &y], &[code(g.dtype), int(n)]);
            [y]
        });
        cast_primitive::<Cuda, B>(y)
    }

    pub(super) fn grads<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>, grad: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
        let [gate, up, grad] = [gate, up, grad].map(cast_primitive::<B, Cuda>);
        let outputs = [(gate.shape.clone(), gate.dtype), (up.shape.clone(), up.dtype)];
        let [d_gate, d_up] = custom("wmx_swiglu_grad", [gate, up, grad], outputs, |[g, u, dy]| {
            let n: usize = g.meta.shape().as_slice().iter().product();
            let (d_gate, d_up) = (empty_like(&g), empty_like(&g));
            let scalars = [code(g.dtype), code(dy.dtype), int(n)];
            GRADS.per_item(&g, n, &[&g, &u, &dy, &d_gate, &d_up], &scalars);
            [d_gate, d_up]
        });
        (cast_primitive::<Cuda, B>(d_gate), cast_primitive::<Cuda, B>(d_up))
    }
}

#[cfg(test)]
mod tests {
    use super::{composed, tracked};
    use crate::backend::{Cpu, CpuTrain};
    use burn::tensor::{Distribution, Tensor, Tolerance};

    /// The operation, wired into burn's autodiff on the CPU, gives the output and
    /// gradients of burn's autodiff of [`composed`].
    #[test]
    fn the_tracked_gate_is_burns_autodiff_of_the_composed_one() {
        let device = Default::default();
        // The second shape is large enough for the CPU kernels' threads.
        for shape in [[2, 3, 16], [4, 64, 384]] {
        let gate = Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.0, 3.0), &device);
        let up = Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<CpuTrain, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let tg = Tensor::<CpuTrain, 3>::from_data(gate.to_data(), &device).require_grad();
            let tu = Tensor::<CpuTrain, 3>::from_data(up.to_data(), &device).require_grad();
            let y = match fused {
                true => tracked::<Cpu, 3>(tg.clone(), tu.clone()),
                false => composed(tg.clone(), tu.clone()),
            };
            let grads = ((y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).mean()).backward();
            (y.inner(), tg.grad(&grads).unwrap(), tu.grad(&grads).unwrap())
        };
        let (want_y, want_g, want_u) = run(false);
        let (got_y, got_g, got_u) = run(true);
        // A few ulps apart where |y| reaches ~10 (wmx's exp against libm's).
        got_y.into_data().assert_approx_eq::<f32>(&want_y.into_data(), Tolerance::rel_abs(1e-6, 1e-6));
        got_g.into_data().assert_approx_eq::<f32>(&want_g.into_data(), Tolerance::absolute(1e-5));
        got_u.into_data().assert_approx_eq::<f32>(&want_u.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
