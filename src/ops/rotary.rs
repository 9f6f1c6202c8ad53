//! Rotary embeddings for training as one autodiff operation, with a CUDA kernel of
//! its own.
//!
//! [`composed`] rotates with burn's operations: the tables' rows for the positions
//! are sliced and reshaped, the rotated half is a product with a fixed ±1 matrix,
//! and `x·cos + rotated·sin` is three more operations, each tracked by autodiff
//! and differentiated on its own. [`tracked`] is one node of the graph that keeps
//! nothing but the (constant) tables. Its backward pass is the transposed
//! rotation, `dx = dy·cos + unrotate(dy·sin)` with `unrotate(t) = cat(t₂, −t₁)`.
//!
//! On burn's Cuda both passes are one element-wise kernel ([`kernels`]) that
//! reads the tables at `start + position` and rounds as the composed operations
//! do: each product and the sum to x's dtype. On every other backend both are
//! burn operations, which a CPU test checks against burn's autodiff of
//! [`composed`]; `wmx bench kernels` checks the kernel the same way on the GPU.
//! The model uses it when training on CUDA ([`handles`]) unless `WMX_FUSED_ROTARY=0`.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Whether the model's rotary embeddings of backend `B` go through [`tracked`]:
/// training on burn's Cuda, unless `WMX_FUSED_ROTARY=0`.
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Fused = super::Fused::new("WMX_FUSED_ROTARY");
    FUSED.handles::<B>()
}

/// Rotate-half rotary embeddings of `x` at positions `start..start + seq`, with
/// burn's operations: `x·cos + (x·rotate)·sin`.
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`; cos, sin: `[positions, head_dim]`;
///   rotate: `[head_dim, head_dim]`
pub fn composed<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 2>, sin: Tensor<B, 2>, rotate: Tensor<B, 2>, start: usize) -> Tensor<B, 4> {
    let [b, seq, heads, hd] = x.dims();
    assert!(
        start + seq <= cos.dims()[0],
        "rotary embeddings: positions {start}..{} exceed the table's {} positions",
        start + seq,
        cos.dims()[0]
    );
    let cos = cos.narrow(0, start, seq).reshape([1, seq, 1, hd]);
    let sin = sin.narrow(0, start, seq).reshape([1, seq, 1, hd]);
    let rows = x.clone().reshape([b * seq * heads, hd]);
    let rotated = super::matmul(rows, rotate).reshape([b, seq, heads, hd]);
    x * cos + rotated * sin
}

/// The model's rotary embeddings on backend `B`: [`tracked`] where it [`handles`]
/// `B` and the dtypes, [`composed`] otherwise.
pub fn apply<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 2>, sin: Tensor<B, 2>, rotate: Tensor<B, 2>, start: usize) -> Tensor<B, 4> {
    #[cfg(feature = "cuda")]
    if handles::<B>() && super::training_on_cuda::<B>() && super::cuda::kernel::takes(x.dtype()) && super::cuda::kernel::takes(cos.dtype()) && cos.dtype() == sin.dtype() {
        use super::cuda::{Cuda, CudaTrain, cast};
        use burn::tensor::Float;
        let table = |t: Tensor<B, 2>| cast::<B, CudaTrain, 2, Float>(t).inner();
        return cast(tracked::<Cuda>(cast::<B, CudaTrain, 4, Float>(x), table(cos), table(sin), start));
    }
    if handles::<B>() && super::training_on_cpu::<B>() && super::cpu::takes(x.dtype()) && super::cpu::takes(cos.dtype()) && super::cpu::takes(sin.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        let table = |t: Tensor<B, 2>| cast::<B, CpuTrain, 2, Float>(t).inner();
        return cast(tracked::<Cpu>(cast::<B, CpuTrain, 4, Float>(x), table(cos), table(sin), start));
    }
    if handles::<B>() && super::inferring_on_cpu::<B>() && super::cpu::takes(x.dtype()) && super::cpu::takes(cos.dtype()) && super::cpu::takes(sin.dtype()) {
        let [x, cos, sin] = [x.into_primitive().tensor(), cos.into_primitive().tensor(), sin.into_primitive().tensor()];
        return Tensor::from_primitive(TensorPrimitive::Float(rotation::<B>(x, cos, sin, start, false)));
    }
    composed(x, cos, sin, rotate, start)
}

/// `unrotate(t) = cat(t₂, −t₁)` over the last dimension: the rotation's transpose.
fn unrotate<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = t.dims()[3];
    let half = hd / 2;
    Tensor::cat(vec![t.clone().narrow(3, half, hd - half), -t.narrow(3, 0, half)], 3)
}

/// `rotate(t) = cat(−t₂, t₁)`, as the product with [`composed`]'s matrix.
fn rotate<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = t.dims()[3];
    let half = hd / 2;
    Tensor::cat(vec![-t.clone().narrow(3, half, hd - half), t.narrow(3, 0, half)], 3)
}

/// The rotation of `x`, forward or (`backward`) transposed, on any backend:
/// [`kernels::rotate`] on burn's Cuda, burn's operations otherwise.
fn rotation<B: Backend>(x: FloatTensor<B>, cos: FloatTensor<B>, sin: FloatTensor<B>, start: usize, backward: bool) -> FloatTensor<B> {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::rotate::<B>(x, cos, sin, start, backward);
    }
    if super::cpu::f32s::<B>(&[&x, &cos, &sin]) {
        use super::cpu::{back, flex};
        return back::<B>(super::cpu::rotary::rotate(flex::<B>(x), flex::<B>(cos), flex::<B>(sin), start, backward));
    }
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    let [_, seq, _, hd] = x.dims();
    let table = |t| {
        Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t))
            .narrow(0, start, seq)
            .reshape([1, seq, 1, hd])
    };
    let (cos, sin) = (table(cos), table(sin));
    let y = match backward {
        false => x.clone() * cos + rotate(x) * sin,
        true => x.clone() * cos + unrotate(x * sin),
    };
    y.into_primitive().tensor()
}

/// [`composed`] as one node of the autodiff graph over backend `B`; the tables
/// are constants.
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`; cos, sin: `[positions, head_dim]`
pub fn tracked<B: Backend>(x: Tensor<Autodiff<B>, 4>, cos: Tensor<B, 2>, sin: Tensor<B, 2>, start: usize) -> Tensor<Autodiff<B>, 4> {
    #[derive(Debug)]
    struct Rotation;

    impl<B: Backend> Backward<B, 1> for Rotation {
        /// The tables and the first position.
        type State = (FloatTensor<B>, FloatTensor<B>, usize);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (cos, sin, start) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            if let [Some(node)] = ops.parents {
                grads.register::<B>(node.id, rotation::<B>(grad, cos, sin, start, true));
            }
        }
    }

    let x = x.into_primitive().tensor();
    let (cos, sin) = (cos.into_primitive().tensor(), sin.into_primitive().tensor());
    let y = rotation::<B>(x.primitive, cos.clone(), sin.clone(), start, false);
    let out = super::tracked_node!(Rotation, [x.node], (cos, sin, start), y);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(feature = "cuda")]
mod kernels {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;

    use super::super::cuda::{Cuda, cast_primitive};
    use super::super::cuda::kernel::{Kernel, code, custom, empty_like, int};

    /// `y_j = x_j·cos_j + sign·x_p·sin_q`, each product and the sum rounded to x's
    /// dtype; p is j's partner in the other half. Forward: sign −1 in the first
    /// half, +1 in the second, q = j. Backward (transposed): the signs swap, q = p.
    const SOURCE: &str = r#"
extern "C" __global__ void wmx_rotary(const void* x, const void* cos, const void* sin, void* y,
    long long cx, long long ct, long long n, long long seq, long long heads, long long hd,
    long long start, long long backward)
{
    const long long half = hd / 2;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long j = i % hd;
        const long long pos = start + (i / hd / heads) % seq;
        const int first = j < half;
        const long long p = first ? j + half : j - half;
        const float sign = (first != (int)backward) ? -1.0f : 1.0f;
        const float s = wmx_load(sin, ct, pos * hd + (backward ? p : j));
        const float a = wmx_round(wmx_load(x, cx, i) * wmx_load(cos, ct, pos * hd + j), cx);
        const float b = wmx_round(sign * wmx_load(x, cx, i - j + p) * s, cx);
        wmx_store(y, cx, i, a + b);
    }
}
"#;

    static ROTARY: Kernel = Kernel::new(SOURCE, "wmx_rotary");

    /// The rotation of `x` `[batch, seq, heads, head_dim]` at positions from
    /// `start`, or its transpose.
    pub(super) fn rotate<B: Backend>(x: FloatTensor<B>, cos: FloatTensor<B>, sin: FloatTensor<B>, start: usize, backward: bool) -> FloatTensor<B> {
        let [x, cos, sin] = [x, cos, sin].map(cast_primitive::<B, Cuda>);
        // The kernel reads the tables at positions start..start + seq: check them here,
        // as burn checks `narrow`, rather than read out of bounds.
        let (dims, table) = (x.shape.as_slice().to_vec(), cos.shape.as_slice().to_vec());
        assert!(
            dims.len() == 4 && table.len() == 2 && sin.shape.as_slice() == &table[..] && table[1] == dims[3],
            "rotary embeddings: x {dims:?} needs [batch, seq, heads, head_dim] and tables [positions, head_dim], not {table:?}"
        );
        assert!(
            start + dims[1] <= table[0],
            "rotary embeddings: positions {start}..{} exceed the table's {} positions",
            start + dims[1],
            table[0]
        );
        let outputs = [(x.shape.clone(), x.dtype)];
        let [y] = custom("wmx_rotary", [x, cos, sin], outputs, move |[x, cos, sin]| {
            let shape = x.meta.shape().as_slice().to_vec();
            let [_, seq, heads, hd] = shape[..] else {
                panic!("rotary embeddings of a {}-dimensional tensor", shape.len())
            };
            let y = empty_like(&x);
            let n: usize = shape.iter().product();
            let scalars = [code(x.dtype), code(cos.dtype), int(n), int(seq), int(heads), int(hd), int(start), int(backward as usize)];
            ROTARY.per_item(&x, n, &[&x, &cos, &sin, &y], &scalars);
            [y]
        });
        cast_primitive::<Cuda, B>(y)
    }
}
