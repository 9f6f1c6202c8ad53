//! Attention probabilities for training as one autodiff operation, with CUDA
//! kernels of their own.
//!
//! [`composed`] turns a product `q·kᵀ` into probabilities with burn's operations:
//! divide by `√head_dim`, fill masked scores with −∞, cast to f32, softmax (five
//! operations), cast back, each tracked by autodiff, which keeps f32 copies of the
//! `[batch, heads, seq, seq]` probabilities for the backward pass. [`tracked`] is
//! one node of the graph that keeps only the probabilities it returns (in the
//! scores' dtype, which the product with v keeps anyway). Its backward pass is the
//! closed form `dscores = p·(dp − Σ p·dp) / √head_dim`.
//!
//! The mask is causal (the model's `Causal`): query i of a group of
//! `queries` rows sees keys `0..=past + i`, so the kernels compute it from indices
//! instead of reading a mask. On burn's Cuda both passes are kernels of wmx's own
//! ([`kernels`], one warp per row, f32 inside, the scaled scores rounded to their
//! dtype as the composed division rounds them). On every other backend both are
//! burn operations, which a CPU test checks against burn's autodiff of
//! [`composed`]; `wmx bench kernels` checks the kernels the same way on the GPU.
//! The model uses it when training on CUDA ([`handles`]) unless `WMX_FUSED_SOFTMAX=0`.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, FloatDType, Tensor, TensorPrimitive};

use crate::ops::in_f32;

/// Whether the model's attention probabilities of backend `B` go through
/// [`tracked`]: training on burn's Cuda, unless `WMX_FUSED_SOFTMAX=0`.
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Fused = super::Fused::new("WMX_FUSED_SOFTMAX");
    FUSED.handles::<B>()
}

/// `softmax(scores / divisor)` over the last dimension in f32, cast to the scores'
/// dtype, with burn's operations; masked scores (true in `mask`) get probability 0.
/// # Shapes
/// - scores: `[batch, heads, groups · queries, keys]`, rows of a head grouped
///   by query in `groups` blocks of `queries`; mask: `[queries, keys]`
pub fn composed<B: Backend>(scores: Tensor<B, 4>, divisor: f64, mask: Option<&Tensor<B, 2, Bool>>) -> Tensor<B, 4> {
    let [b, h, rows, keys] = scores.dims();
    let mut scores = scores / divisor;
    if let Some(mask) = mask {
        let queries = mask.dims()[0];
        let groups = rows / queries.max(1);
        scores = scores
            .reshape([b, h, groups, queries, keys])
            .mask_fill(mask.clone().unsqueeze::<5>().expand([b, h, groups, queries, keys]), f32::NEG_INFINITY)
            .reshape([b, h, rows, keys]);
    }
    in_f32(scores, |s| softmax(s, 3))
}

/// [`composed`] for a causal mask of `queries` rows after `past` cached keys, on
/// backend `B`: [`tracked`] where it [`handles`] `B` and the dtype, [`composed`]
/// with `mask` otherwise.
pub fn apply<B: Backend>(scores: Tensor<B, 4>, divisor: f64, mask: Option<(&Tensor<B, 2, Bool>, usize)>) -> Tensor<B, 4> {
    #[cfg(feature = "cuda")]
    if handles::<B>() && super::training_on_cuda::<B>() && super::cuda::kernel::takes(scores.dtype()) {
        use super::cuda::{Cuda, CudaTrain, cast};
        use burn::tensor::Float;
        let causal = mask.map(|(m, past)| (m.dims()[0], past));
        return cast(tracked::<Cuda>(cast::<B, CudaTrain, 4, Float>(scores), divisor, causal));
    }
    if handles::<B>() && super::training_on_cpu::<B>() && super::cpu::takes(scores.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        let causal = mask.map(|(m, past)| (m.dims()[0], past));
        return cast(tracked::<Cpu>(cast::<B, CpuTrain, 4, Float>(scores), divisor, causal));
    }
    if handles::<B>() && super::inferring_on_cpu::<B>() && super::cpu::takes(scores.dtype()) {
        let causal = mask.map(|(m, past)| (m.dims()[0], past));
        return Tensor::from_primitive(TensorPrimitive::Float(forward_pass::<B>(scores.into_primitive().tensor(), divisor, causal)));
    }
    composed(scores, divisor, mask.map(|(m, _)| m))
}

/// The probabilities on any backend: [`kernels::forward`] on burn's Cuda,
/// [`composed`] otherwise. `causal`: queries per group and cached keys.
fn forward_pass<B: Backend>(scores: FloatTensor<B>, divisor: f64, causal: Option<(usize, usize)>) -> FloatTensor<B> {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::forward::<B>(scores, divisor, causal);
    }
    if super::cpu::f32s::<B>(&[&scores]) {
        use super::cpu::{back, flex};
        let keys = match causal {
            Some((queries, past)) => super::cpu::softmax::Keys::Causal { queries, past },
            None => super::cpu::softmax::Keys::All,
        };
        return back::<B>(super::cpu::softmax::forward(flex::<B>(scores), divisor, keys));
    }
    let scores = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(scores));
    let keys = scores.dims()[3];
    let mask = causal.map(|(queries, past)| Tensor::<B, 2, Bool>::tril_mask([queries, keys], past as i64, &scores.device()));
    composed(scores, divisor, mask.as_ref()).into_primitive().tensor()
}

/// `d loss / d scores` from the probabilities `p` and their gradient: on burn's
/// Cuda [`kernels::grad`], otherwise `p·(dp − Σ p·dp) / divisor` in f32 with
/// burn's operations, cast to the scores' dtype.
fn grad<B: Backend>(p: FloatTensor<B>, grad: FloatTensor<B>, divisor: f64) -> FloatTensor<B> {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::grad::<B>(p, grad, divisor);
    }
    if super::cpu::f32s::<B>(&[&p, &grad]) {
        use super::cpu::{back, flex};
        return back::<B>(super::cpu::softmax::grad(flex::<B>(p), flex::<B>(grad), divisor));
    }
    let float = |t| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(t));
    let (p, grad) = (float(p), float(grad));
    let dtype = p.dtype();
    let (p, grad) = (p.cast(FloatDType::F32), grad.cast(FloatDType::F32));
    let dot = (p.clone() * grad.clone()).sum_dim(3);
    let ds = (p * (grad - dot)).cast(FloatDType::from(dtype));
    (ds / divisor).into_primitive().tensor()
}

/// The softmax as a node of the autodiff graph: differentiated by [`grad`] from
/// the probabilities alone, whatever mask made them.
#[derive(Debug)]
struct Softmax;

impl<B: Backend> Backward<B, 1> for Softmax {
    /// The probabilities and the divisor.
    type State = (FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (p, divisor) = ops.state;
        let dp = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, grad::<B>(p, dp, divisor));
        }
    }
}

/// `softmax(scores / divisor)` over the last dimension with burn's operations,
/// keys that `ignore` marks (per batch item) masked: cross-attention to a padded
/// sequence.
/// # Shapes
/// - scores: `[batch, heads, queries, keys]`; ignore: `[batch, keys]`
pub fn padded_composed<B: Backend>(scores: Tensor<B, 4>, divisor: f64, ignore: &Tensor<B, 2, Bool>) -> Tensor<B, 4> {
    let [b, h, s, t] = scores.dims();
    let mask = ignore.clone().reshape([b, 1, 1, t]).expand([b, h, s, t]);
    softmax((scores / divisor).mask_fill(mask, f32::NEG_INFINITY), 3)
}

/// [`padded_composed`] on backend `B`: when training on the CPU in f32, one node
/// of the autodiff graph computed by [`super::cpu::softmax::forward`] (a row whose
/// keys are all ignored gets zeros, not NaN); for inference on the CPU in f32, that
/// kernel alone; [`padded_composed`] otherwise.
pub fn apply_padded<B: Backend>(scores: Tensor<B, 4>, divisor: f64, ignore: &Tensor<B, 2, Bool>) -> Tensor<B, 4> {
    if handles::<B>() && super::training_on_cpu::<B>() && super::cpu::takes(scores.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        let scores = cast::<B, CpuTrain, 4, Float>(scores).into_primitive().tensor();
        let p = padded_forward::<Cpu, B>(scores.primitive, divisor, ignore);
        let out = super::tracked_node!(Softmax, [scores.node], (p.clone(), divisor), p);
        return cast(Tensor::<CpuTrain, 4>::from_primitive(TensorPrimitive::Float(out)));
    }
    if handles::<B>() && super::inferring_on_cpu::<B>() && super::cpu::takes(scores.dtype()) {
        return Tensor::from_primitive(TensorPrimitive::Float(padded_forward::<B, B>(scores.into_primitive().tensor(), divisor, ignore)));
    }
    padded_composed(scores, divisor, ignore)
}

/// [`super::cpu::softmax::forward`] of f32 scores on the CPU backend `S` (with or
/// without autodiff, `M` being the mask's) over the keys `ignore` leaves visible.
fn padded_forward<S: Backend, M: Backend>(scores: FloatTensor<S>, divisor: f64, ignore: &Tensor<M, 2, Bool>) -> FloatTensor<S> {
    let ignore: Vec<bool> = ignore.to_data().convert::<bool>().to_vec().expect("a bool mask");
    let p = super::cpu::softmax::forward(super::cpu::flex::<S>(scores), divisor, super::cpu::softmax::Keys::Padded(&ignore));
    super::cpu::back::<S>(p)
}

/// [`composed`] as one node of the autodiff graph over backend `B`, with a causal
/// mask of `(queries, past)` when given.
pub fn tracked<B: Backend>(scores: Tensor<Autodiff<B>, 4>, divisor: f64, causal: Option<(usize, usize)>) -> Tensor<Autodiff<B>, 4> {
    let scores = scores.into_primitive().tensor();
    let p = forward_pass::<B>(scores.primitive, divisor, causal);
    let out = super::tracked_node!(Softmax, [scores.node], (p.clone(), divisor), p);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(feature = "cuda")]
mod kernels {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;

    use super::super::cuda::{Cuda, cast_primitive};
    use super::super::cuda::kernel::{Kernel, code, custom, empty_like, int, real, rows};

    /// One warp per row of `keys` scores. Row r is query `r % queries` of its
    /// group; with `causal`, keys after `past + query` are masked.
    const SOURCE: &str = r#"
extern "C" __global__ void wmx_softmax(const void* x, void* p, long long cx, long long rows, long long keys,
    long long queries, long long past, long long causal, double divisor)
{
    const int lane = threadIdx.x & 31;
    const float div = (float)divisor;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const long long base = r * keys;
        const long long seen = causal ? past + (r % queries) + 1 : keys;
        float m = __int_as_float(0xff800000); /* -inf */
        for (long long j = lane; j < seen && j < keys; j += 32) m = fmaxf(m, wmx_round(wmx_load(x, cx, base + j) / div, cx));
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float s = 0.0f;
        for (long long j = lane; j < seen && j < keys; j += 32) s += expf(wmx_round(wmx_load(x, cx, base + j) / div, cx) - m);
        s = wmx_warp_sum(s);
        for (long long j = lane; j < keys; j += 32) {
            float e = j < seen ? expf(wmx_round(wmx_load(x, cx, base + j) / div, cx) - m) / s : 0.0f;
            wmx_store(p, cx, base + j, e);
        }
    }
}

extern "C" __global__ void wmx_softmax_grad(const void* p, const void* dp, void* dx, long long cp, long long cd,
    long long rows, long long keys, double divisor)
{
    const int lane = threadIdx.x & 31;
    const float div = (float)divisor;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const long long base = r * keys;
        float s = 0.0f;
        for (long long j = lane; j < keys; j += 32) s += wmx_load(p, cp, base + j) * wmx_load(dp, cd, base + j);
        s = wmx_warp_sum(s);
        for (long long j = lane; j < keys; j += 32) {
            float g = wmx_round(wmx_load(p, cp, base + j) * (wmx_load(dp, cd, base + j) - s), cp);
            wmx_store(dx, cp, base + j, g / div);
        }
    }
}
"#;

    static SOFTMAX: Kernel = Kernel::new(SOURCE, "wmx_softmax");
    static GRAD: Kernel = Kernel::new(SOURCE, "wmx_softmax_grad");

    pub(super) fn forward<B: Backend>(scores: FloatTensor<B>, divisor: f64, causal: Option<(usize, usize)>) -> FloatTensor<B> {
        let scores = cast_primitive::<B, Cuda>(scores);
        let outputs = [(scores.shape.clone(), scores.dtype)];
        let [p] = custom("wmx_softmax", [scores], outputs, move |[x]| {
            let (n, keys) = rows(x.meta.shape().as_slice());
            let p = empty_like(&x);
            let (queries, past) = causal.unwrap_or((1, 0));
            let scalars = [code(x.dtype), int(n), int(keys), int(queries), int(past), int(causal.is_some() as usize), real(divisor)];
            SOFTMAX.per_row(&x, n, &[&x, &p], &scalars);
            [p]
        });
        cast_primitive::<Cuda, B>(p)
    }

    pub(super) fn grad<B: Backend>(p: FloatTensor<B>, dp: FloatTensor<B>, divisor: f64) -> FloatTensor<B> {
        let [p, dp] = [p, dp].map(cast_primitive::<B, Cuda>);
        let outputs = [(p.shape.clone(), p.dtype)];
        let [dx] = custom("wmx_softmax_grad", [p, dp], outputs, move |[p, dp]| {
            let (n, keys) = rows(p.meta.shape().as_slice());
            let dx = empty_like(&p);
            let scalars = [code(p.dtype), code(dp.dtype), int(n), int(keys), real(divisor)];
            GRAD.per_row(&p, n, &[&p, &dp, &dx], &scalars);
            [dx]
        });
        cast_primitive::<Cuda, B>(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::{composed, tracked};
    use crate::backend::{Cpu, CpuTrain};
    use burn::tensor::{Bool, Distribution, Tensor, Tolerance};

    /// `fused` gives the probabilities of `composed` for `scores` and, through a
    /// graph that uses them twice, the same gradient.
    fn same_as_composed(
        scores: &Tensor<Cpu, 4>,
        upstream: &Tensor<CpuTrain, 4>,
        fused: impl Fn(Tensor<CpuTrain, 4>) -> Tensor<CpuTrain, 4>,
        composed: impl Fn(Tensor<CpuTrain, 4>) -> Tensor<CpuTrain, 4>,
    ) {
        let run = |softmax: &dyn Fn(Tensor<CpuTrain, 4>) -> Tensor<CpuTrain, 4>| {
            let ts = Tensor::<CpuTrain, 4>::from_data(scores.to_data(), &scores.device()).require_grad();
            let p = softmax(ts.clone());
            let grads = ((p.clone() * upstream.clone()).sum() + (p.clone() * p.clone()).mean()).backward();
            (p.inner(), ts.grad(&grads).unwrap())
        };
        let (want_p, want_s) = run(&composed);
        let (got_p, got_s) = run(&fused);
        got_p.into_data().assert_approx_eq::<f32>(&want_p.into_data(), Tolerance::absolute(1e-6));
        got_s.into_data().assert_approx_eq::<f32>(&want_s.into_data(), Tolerance::absolute(1e-6));
    }

    /// The operation, wired into burn's autodiff on the CPU, gives the output and
    /// gradient of burn's autodiff of [`composed`] with the model's causal mask,
    /// two groups of three queries after two cached keys, and without a mask.
    #[test]
    fn the_tracked_softmax_is_burns_autodiff_of_the_composed_one() {
        let device = Default::default();
        // The second is large enough for the CPU kernels' threads.
        for (queries, past, batch) in [(3, 2, 2), (64, 2, 4)] {
        let shape = [batch, 2, 2 * queries, past + queries];
        let scores = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 3.0), &device);
        let upstream = Tensor::<CpuTrain, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        // The model's causal mask: true where key j > query i + past.
        let mask = Tensor::<CpuTrain, 2, Bool>::tril_mask([queries, past + queries], past as i64, &device);
        for masked in [true, false] {
            same_as_composed(
                &scores,
                &upstream,
                |ts| tracked::<Cpu>(ts, 8f64.sqrt(), masked.then_some((queries, past))),
                |ts| composed(ts, 8f64.sqrt(), masked.then_some(&mask)),
            );
        }
        if queries == 3 {
            // The mask is causal: the last query of a group sees every key, the
            // first one `past + 1` of them.
            let m: Tensor<CpuTrain, 2, Bool> = mask.clone();
            assert_eq!(m.int().sum().into_scalar(), 3);
        }
        }
    }

    /// Cross-attention's softmax over a padded sequence, on the CPU: the kernel's
    /// probabilities and gradient are burn's autodiff of [`super::padded_composed`].
    #[test]
    fn the_padded_softmax_is_burns_autodiff_of_the_composed_one() {
        use super::{apply_padded, padded_composed};
        use burn::tensor::TensorData;
        let device = Default::default();
        // The second shape is large enough for the kernel's threads.
        for [b, h, s, t] in [[2, 2, 3, 5], [4, 4, 64, 70]] {
            let scores = Tensor::<Cpu, 4>::random([b, h, s, t], Distribution::Normal(0.0, 3.0), &device);
            let upstream = Tensor::<CpuTrain, 4>::random([b, h, s, t], Distribution::Normal(0.0, 1.0), &device);
            // Batch item i ignores its last i + 1 keys.
            let ignore: Vec<bool> = (0..b * t).map(|k| k % t >= t - 1 - k / t).collect();
            let ignore = Tensor::<CpuTrain, 2, Bool>::from_data(TensorData::new(ignore, [b, t]), &device);
            same_as_composed(
                &scores,
                &upstream,
                |ts| apply_padded(ts, 8f64.sqrt(), &ignore),
                |ts| padded_composed(ts, 8f64.sqrt(), &ignore),
            );
        }
    }
}
