//! RMSNorm for training as one autodiff operation, with CUDA kernels of its own.
//!
//! The host's cost per burn operation bounds a 0.6B training step on a GPU
//! (bench/RESULTS.md). Written with burn's tensor operations ([`norm`]), an
//! RMSNorm is nine tracked operations, and burn's autodiff differentiates them one
//! by one: about twenty more in the backward pass, and an f32 copy of the input
//! kept for it. [`tracked`] is the same norm as one node of the graph, which keeps
//! the input and each row's root mean square. Its backward pass is the closed form
//! `dx = (g·w − n·mean(g·w·n)) / rms`, `dw = Σ g·n` with `n = x / rms`.
//!
//! On burn's Cuda both passes are kernels of wmx's own ([`kernels`]): one warp per
//! row, the forward pass rounding as [`norm`] does (normalised in f32, rounded to
//! x's dtype, then scaled by the weight in x's dtype), the weight's gradient
//! summed over rows in a fixed order, so a step is deterministic. On every other
//! backend both passes are burn operations ([`grad_x`], [`grad_weight`]), which a
//! CPU test checks against burn's autodiff of [`norm`]; `wmx bench kernels`
//! checks the CUDA kernels the same way on the GPU. The model uses it when
//! training on CUDA ([`handles`]) unless `WMX_FUSED_NORM=0`; inference, and every
//! other backend, runs [`norm`].

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, FloatDType, Tensor, TensorPrimitive};

use crate::ops::in_f32;

/// Whether the model's norms of backend `B` go through [`tracked`]: training on
/// burn's Cuda, unless `WMX_FUSED_NORM=0` (burn's autodiff of [`norm`], to
/// compare the two).
pub fn handles<B: Backend>() -> bool {
    static FUSED: super::Fused = super::Fused::new("WMX_FUSED_NORM");
    FUSED.handles::<B>()
}

/// The model's RMSNorm on backend `B`: [`tracked`] where it [`handles`] `B` and
/// the dtypes, [`norm`] otherwise.
pub fn forward<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if handles::<B>() && super::training_on_cuda::<B>() && x.dtype() == weight.dtype() && super::cuda::kernel::takes(x.dtype()) {
        use super::cuda::{Cuda, CudaTrain, cast};
        let y = tracked::<Cuda, D>(cast::<B, CudaTrain, D, burn::tensor::Float>(x), cast::<B, CudaTrain, 1, burn::tensor::Float>(weight), eps);
        return cast(y);
    }
    if handles::<B>() && super::training_on_cpu::<B>() && super::cpu::takes(x.dtype()) && super::cpu::takes(weight.dtype()) {
        use crate::backend::{Cpu, CpuTrain};
        use burn::tensor::Float;
        use super::cast;
        return cast(tracked::<Cpu, D>(cast::<B, CpuTrain, D, Float>(x), cast::<B, CpuTrain, 1, Float>(weight), eps));
    }
    if handles::<B>() && super::inferring_on_cpu::<B>() && super::cpu::takes(x.dtype()) && super::cpu::takes(weight.dtype()) {
        let (y, _) = forward_pass::<B, D>(x.into_primitive().tensor(), weight.into_primitive().tensor(), eps);
        return Tensor::from_primitive(TensorPrimitive::Float(y));
    }
    norm(x, weight, eps).0
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

/// `d loss / d x` and `d loss / d weight` for the output's gradient `grad`, on
/// any backend: [`kernels::grads`] on burn's Cuda, [`grad_x`] and [`grad_weight`]
/// otherwise.
fn grads<B: Backend, const D: usize>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    rms: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::grads::<B>(x, weight, rms, grad);
    }
    if super::cpu::f32s::<B>(&[&x, &weight, &rms, &grad]) {
        use super::cpu::{back, flex};
        let (dx, dw) = super::cpu::rms_norm::grads(flex::<B>(x), flex::<B>(weight), flex::<B>(rms), flex::<B>(grad));
        return (back::<B>(dx), back::<B>(dw));
    }
    let float = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
    let (x, weight) = (float(x), Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(weight)));
    let (x_dtype, weight_dtype) = (x.dtype(), weight.dtype());
    let rms = float(rms);
    let n = normalised(x, rms.clone());
    let dw = grad_weight(n.clone(), weight_dtype, float(grad.clone()));
    let dx = grad_x(n, weight, rms, float(grad), x_dtype);
    (dx.into_primitive().tensor(), dw.into_primitive().tensor())
}

/// [`norm`] as one node of the autodiff graph over backend `B`: computed by
/// [`kernels::forward`] on burn's Cuda and by [`norm`] elsewhere, differentiated
/// by [`grads`].
pub fn tracked<B: Backend, const D: usize>(
    x: Tensor<Autodiff<B>, D>,
    weight: Tensor<Autodiff<B>, 1>,
    eps: f64,
) -> Tensor<Autodiff<B>, D> {
    #[derive(Debug)]
    struct Norm<const D: usize>;

    impl<B: Backend, const D: usize> Backward<B, 2> for Norm<D> {
        /// The input, the weight and each row's root mean square.
        type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, weight, rms) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let (dx, dw) = self::grads::<B, D>(x, weight, rms, grad);
            super::register_grads!(B, grads, ops.parents, [dx, dw]);
        }
    }

    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let (y, rms) = forward_pass::<B, D>(x.primitive.clone(), weight.primitive.clone(), eps);
    let out = super::tracked_node!(Norm::<D>, [x.node.clone(), weight.node.clone()], (x.primitive, weight.primitive, rms), y);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The norm and each row's root mean square, on any backend.
fn forward_pass<B: Backend, const D: usize>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    #[cfg(feature = "cuda")]
    if super::cuda::is::<B, super::cuda::Cuda>() {
        return kernels::forward::<B>(x, weight, eps);
    }
    if super::cpu::f32s::<B>(&[&x, &weight]) {
        use super::cpu::{back, flex};
        let (y, rms) = super::cpu::rms_norm::forward(flex::<B>(x), flex::<B>(weight), eps);
        return (back::<B>(y), back::<B>(rms));
    }
    let (y, rms) = norm::<B, D>(
        Tensor::from_primitive(TensorPrimitive::Float(x)),
        Tensor::from_primitive(TensorPrimitive::Float(weight)),
        eps,
    );
    (y.into_primitive().tensor(), rms.into_primitive().tensor())
}

#[cfg(feature = "cuda")]
mod kernels {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, Shape};

    use super::super::cuda::{Cuda, cast_primitive};
    use super::super::cuda::kernel::{Kernel, THREADS, code, custom, empty, empty_like, int, real, rows};

    /// One warp per row; [`super::super::cuda::kernel::PRELUDE`] before it.
    const SOURCE: &str = r#"
extern "C" __global__ void wmx_rms_norm(const void* x, const void* w, void* y, float* rms,
    long long cx, long long cw, long long rows, long long d, double eps)
{
    const int lane = threadIdx.x & 31;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const long long base = r * d;
        float s = 0.0f;
        for (long long j = lane; j < d; j += 32) {
            float v = wmx_load(x, cx, base + j);
            s += v * v;
        }
        const float rr = sqrtf(wmx_warp_sum(s) / (float)d + (float)eps);
        if (lane == 0) rms[r] = rr;
        for (long long j = lane; j < d; j += 32) {
            float n = wmx_round(wmx_load(x, cx, base + j) / rr, cx);
            wmx_store(y, cx, base + j, n * wmx_load(w, cw, j));
        }
    }
}

extern "C" __global__ void wmx_rms_norm_grad(const void* g, const void* x, const void* w, const float* rms,
    void* dx, long long cg, long long cx, long long cw, long long rows, long long d)
{
    const int lane = threadIdx.x & 31;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const long long base = r * d;
        const float rr = rms[r];
        float s = 0.0f;
        for (long long j = lane; j < d; j += 32) {
            float gw = wmx_load(g, cg, base + j) * wmx_load(w, cw, j);
            s += gw * (wmx_load(x, cx, base + j) / rr);
        }
        const float mean = wmx_warp_sum(s) / (float)d;
        for (long long j = lane; j < d; j += 32) {
            float gw = wmx_load(g, cg, base + j) * wmx_load(w, cw, j);
            float n = wmx_load(x, cx, base + j) / rr;
            wmx_store(dx, cx, base + j, (gw - n * mean) / rr);
        }
    }
}

/* Sums of g·n over chunks of `chunk` rows: 256 threads, 32 columns × 8 rows at a
   time; block b takes columns tile b % tiles of row chunk b / tiles. */
extern "C" __global__ void wmx_rms_norm_grad_weight(const void* g, const void* x, const float* rms,
    float* partial, long long cg, long long cx, long long rows, long long d, long long chunk)
{
    __shared__ float acc[8][32];
    const long long tiles = (d + 31) / 32;
    const long long tile = blockIdx.x % tiles, c = blockIdx.x / tiles;
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const long long j = tile * 32 + tx;
    const long long r0 = c * chunk;
    const long long r1 = (r0 + chunk < rows) ? r0 + chunk : rows;
    float a = 0.0f;
    if (j < d) {
        for (long long r = r0 + ty; r < r1; r += 8) {
            a += wmx_load(g, cg, r * d + j) * wmx_round(wmx_load(x, cx, r * d + j) / rms[r], cx);
        }
    }
    acc[ty][tx] = a;
    __syncthreads();
    if (ty == 0 && j < d) {
        float s = 0.0f;
        for (int k = 0; k < 8; ++k) s += acc[k][tx];
        partial[c * d + j] = s;
    }
}

/* out[j] = Σ_c partial[c·d + j], in chunk order. */
extern "C" __global__ void wmx_sum_chunks(const float* partial, void* out, long long cout, long long chunks, long long d)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < d; j += stride) {
        float s = 0.0f;
        for (long long c = 0; c < chunks; ++c) s += partial[c * d + j];
        wmx_store(out, cout, j, s);
    }
}
"#;

    static NORM: Kernel = Kernel::new(SOURCE, "wmx_rms_norm");
    static GRAD_X: Kernel = Kernel::new(SOURCE, "wmx_rms_norm_grad");
    static GRAD_WEIGHT: Kernel = Kernel::new(SOURCE, "wmx_rms_norm_grad_weight");
    static SUM_CHUNKS: Kernel = Kernel::new(SOURCE, "wmx_sum_chunks");

    /// The norm of `x` (any shape, normalised over its last dimension) and each
    /// row's root mean square, f32 `[rows]`.
    pub(super) fn forward<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f64) -> (FloatTensor<B>, FloatTensor<B>) {
        let (x, weight) = (cast_primitive::<B, Cuda>(x), cast_primitive::<B, Cuda>(weight));
        let (n, _) = rows(x.shape.as_slice());
        let outputs = [(x.shape.clone(), x.dtype), (Shape::from(vec![n]), DType::F32)];
        let [y, rms] = custom("wmx_rms_norm", [x, weight], outputs, move |[x, w]| {
            let (n, d) = rows(x.meta.shape().as_slice());
            let y = empty_like(&x);
            let rms = empty(&x, &[n], DType::F32);
            let scalars = [code(x.dtype), code(w.dtype), int(n), int(d), real(eps)];
            NORM.per_row(&x, n, &[&x, &w, &y, &rms], &scalars);
            [y, rms]
        });
        (cast_primitive::<Cuda, B>(y), cast_primitive::<Cuda, B>(rms))
    }

    /// The gradients of x and of the weight, in their dtypes.
    pub(super) fn grads<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        rms: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let [x, weight, rms, grad] = [x, weight, rms, grad].map(cast_primitive::<B, Cuda>);
        let outputs = [(x.shape.clone(), x.dtype), (weight.shape.clone(), weight.dtype)];
        let [dx, dw] = custom("wmx_rms_norm_grad", [grad, x, weight, rms], outputs, |[g, x, w, rms]| {
            let (n, d) = rows(x.meta.shape().as_slice());
            let dx = empty_like(&x);
            let dw = empty(&w, &[d], w.dtype);
            let scalars = [code(g.dtype), code(x.dtype), code(w.dtype), int(n), int(d)];
            GRAD_X.per_row(&x, n, &[&g, &x, &w, &rms, &dx], &scalars);
            // About 1024 blocks over the rows, each summing `chunk` of them.
            let tiles = d.div_ceil(32);
            let chunks = (1024 / tiles).clamp(1, n.div_ceil(8).max(1));
            let chunk = n.div_ceil(chunks).max(1);
            let chunks = n.div_ceil(chunk).max(1);
            let partial = empty(&x, &[chunks, d], DType::F32);
            let scalars = [code(g.dtype), code(x.dtype), int(n), int(d), int(chunk)];
            GRAD_WEIGHT.launch(&x, tiles * chunks, THREADS, &[&g, &x, &rms, &partial], &scalars);
            let scalars = [code(w.dtype), int(chunks), int(d)];
            SUM_CHUNKS.per_item(&x, d, &[&partial, &dw], &scalars);
            [dx, dw]
        });
        (cast_primitive::<Cuda, B>(dx), cast_primitive::<Cuda, B>(dw))
    }
}

#[cfg(test)]
mod tests {
    use super::{grad_weight, grad_x, norm, normalised, tracked};
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

    /// The operation, wired into burn's autodiff on the CPU, gives the gradients
    /// and output of burn's autodiff of [`norm`], through a graph that uses the
    /// output twice.
    #[test]
    fn the_tracked_norm_is_burns_autodiff_of_the_norm() {
        let device = Default::default();
        // The second shape is large enough for the CPU kernels' threads.
        for shape in [[3, 5, 16], [32, 80, 128]] {
        let x = Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.5, 2.0), &device);
        let weight = Tensor::<Cpu, 1>::random([shape[2]], Distribution::Normal(1.0, 0.5), &device);
        let upstream = Tensor::<CpuTrain, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let tx = Tensor::<CpuTrain, 3>::from_data(x.to_data(), &device).require_grad();
            let tw = Tensor::<CpuTrain, 1>::from_data(weight.to_data(), &device).require_grad();
            let y = match fused {
                true => tracked::<Cpu, 3>(tx.clone(), tw.clone(), 1e-6),
                false => norm(tx.clone(), tw.clone(), 1e-6).0,
            };
            let loss = (y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).mean();
            let grads = loss.backward();
            (y.inner(), tx.grad(&grads).unwrap(), tw.grad(&grads).unwrap())
        };
        let (want_y, want_x, want_w) = run(false);
        let (got_y, got_x, got_w) = run(true);
        got_y.into_data().assert_approx_eq::<f32>(&want_y.into_data(), Tolerance::rel_abs(1e-6, 1e-6));
        got_x.into_data().assert_approx_eq::<f32>(&want_x.into_data(), Tolerance::absolute(1e-5));
        got_w.into_data().assert_approx_eq::<f32>(&want_w.into_data(), Tolerance::rel_abs(1e-4, 1e-4));
        }
    }
}
