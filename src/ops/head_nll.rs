//! The LM head's product and the per-token cross-entropy as one operation, which
//! never holds the `[tokens, vocab]` logits.
//!
//! Written as the head's product followed by [`super::cross_entropy`], a training
//! step keeps the logits for the backward pass and writes their gradient beside
//! them: with Qwen3's 151,936 tokens and a batch of 8 × 512, 1.2 GB each in bf16, at
//! the moment the step's memory peaks (all activations alive). [`nll_and_picked`]
//! takes the final normed states `h` and the head's weight `w` instead. On burn's
//! Cuda it walks the vocabulary in slices of about 2²⁷ logits:
//! - forward: each slice's logits `h · w[:, slice]` (one cuBLAS call into a
//!   scratch buffer), then one kernel folding them into each row's running maximum
//!   and sum of exponentials (f32) and picking the target's logit; a last kernel
//!   turns those into the log-sum-exp and the loss;
//! - backward: each slice's logits again (one more product: the price of not
//!   keeping them), turned in place into their gradient `g·softmax` plus
//!   `(g_picked − g)` at the target, then `dh += d · w[:, slice]ᵀ` (accumulated in
//!   f32) and `dw[:, slice] = hᵀ · d` (for tied embeddings written in their
//!   `[vocab, hidden]` layout), each one cuBLAS call.
//!
//! Each pass is one operation of burn's fusion stream and one hand-off to cubecl's
//! device thread (a host function running every call of the pass). Only the rows'
//! log-sum-exps (f32) are kept between the passes, besides `h` and `w`, which the
//! graph holds anyway. `wmx bench kernels` checks both passes against burn's
//! autodiff of the composed form ([`from_logits`] on the head's product); every
//! other backend runs that composed form.
//!
//! **Where it runs.** On an H100 it passes `wmx bench kernels` in f32 and bf16
//! and, at the 0.6B shape (622M logits a step), trains 8.8% faster with 4.4 GiB
//! less at the peak; at base.toml's shape (under a million logits a step, vocab
//! 1,024) its launches made the steps 9% slower (bench/RESULTS.md, session 22).
//! So the model takes it where a loss's logits would number at least
//! [`FUSED_FROM_LOGITS`] ([`pays`]); `WMX_FUSED_HEAD=1` takes it at every size,
//! `WMX_FUSED_HEAD=0` never.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Logits (rows × vocabulary) from which the model fuses the head with its loss
/// by default: 16M, 64 MB in f32.
pub const FUSED_FROM_LOGITS: usize = 1 << 24;

/// `WMX_FUSED_HEAD`, read once: `Some(true)` at `1`, `Some(false)` at `0`, `None`
/// (by size) otherwise.
fn forced() -> Option<bool> {
    static FORCED: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("WMX_FUSED_HEAD").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    })
}

/// Whether [`nll_and_picked`] fuses the head's product with the loss on backend
/// `B`: on burn's Cuda (training or not) with cuBLAS on, unless
/// `WMX_FUSED_HEAD=0`.
pub fn handles<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    if super::cuda::cublas::handles::<B>() {
        return forced() != Some(false);
    }
    false
}

/// Whether a loss over `rows` positions and a vocabulary of `vocab` should go
/// through [`nll_and_picked`]: where it [`handles`] the backend and the logits
/// would number at least [`FUSED_FROM_LOGITS`], or at every size with
/// `WMX_FUSED_HEAD=1`.
pub fn pays<B: Backend>(rows: usize, vocab: usize) -> bool {
    handles::<B>() && worth_it(forced(), rows, vocab)
}

/// [`pays`] where the backend is handled, with `WMX_FUSED_HEAD` read as `forced`.
fn worth_it(forced: Option<bool>, rows: usize, vocab: usize) -> bool {
    forced.unwrap_or(rows.saturating_mul(vocab) >= FUSED_FROM_LOGITS)
}

/// For each token, `-log softmax(h · w)[target]` and the logit `(h · w)[target]`:
/// `[batch, seq, 2]` in h's dtype, from the final normed states `h`
/// `[batch, seq, hidden]`, the head's weight `w` `[hidden, vocab]` (tied
/// embeddings as their transposed view) and `targets` `[batch, seq]`. Fused
/// ([module docs](self)) where it [`handles`] the backend and both are f32 or
/// both bf16; [`from_logits`] of the head's product otherwise.
pub fn nll_and_picked<B: Backend>(h: Tensor<B, 3>, w: Tensor<B, 2>, targets: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if handles::<B>() && h.dtype() == w.dtype() && super::cuda::kernel::takes(h.dtype()) {
        use super::cuda::{Cuda, CudaTrain, cast, is};
        use burn::tensor::{Float, TensorPrimitive};
        if is::<B, CudaTrain>() {
            let h = cast::<B, CudaTrain, 3, Float>(h).into_primitive().tensor();
            let w = cast::<B, CudaTrain, 2, Float>(w).into_primitive().tensor();
            let t = cast::<B, CudaTrain, 2, Int>(targets).into_primitive();
            return cast(Tensor::<CudaTrain, 3>::from_primitive(TensorPrimitive::Float(cuda::tracked(h, w, t))));
        }
        if is::<B, Cuda>() {
            let h = cast::<B, Cuda, 3, Float>(h).into_primitive().tensor();
            let w = cast::<B, Cuda, 2, Float>(w).into_primitive().tensor();
            let t = cast::<B, Cuda, 2, Int>(targets).into_primitive();
            let (out, _) = cuda::forward(h, w, t);
            return cast(Tensor::<Cuda, 3>::from_primitive(TensorPrimitive::Float(out)));
        }
    }
    from_logits(super::rows_product(h, w), targets)
}

/// [`nll_and_picked`] from logits `[batch, seq, vocab]`: each token's loss
/// ([`super::cross_entropy::nll`]) and its target's logit, `[batch, seq, 2]`.
pub fn from_logits<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let picked = logits.clone().gather(2, targets.clone().unsqueeze_dim::<3>(2));
    let nll = super::cross_entropy::nll(logits, targets).unsqueeze_dim::<3>(2);
    Tensor::cat(vec![nll, picked], 2)
}

#[cfg(feature = "cuda")]
mod cuda {
    use burn::backend::autodiff::{
        checkpoint::base::Checkpointer,
        grads::Gradients,
        ops::{Backward, Ops},
    };
    use burn::cubecl::cuda::CudaRuntime;
    use burn::tensor::ops::{FloatTensor, IntTensor};
    use burn::tensor::{DType, Shape};
    use burn_cubecl::tensor::CubeTensor;

    use super::super::cuda::cublas::{Operand, gemm_on_stream};
    use super::super::cuda::kernel::{Kernel, THREADS, code, custom_views, empty};
    use super::super::cuda::{Cuda, CudaTrain, HostFunction};
    use crate::ops::layout::layout;

    /// [`super::super::cuda::kernel::PRELUDE`] before it. `logits` is a slice's
    /// scratch: `rows` rows of `cols` logits, `ld` apart (a multiple of 4).
    const SOURCE: &str = r#"
#define WMX_NEG_INF __int_as_float(0xff800000)
/* (m, s) ← the running maximum and sum of exp(x − m) of both pairs. */
__device__ void wmx_lse_merge(float* m, float* s, float om, float os) {
    const float nm = fmaxf(*m, om);
    const float a = (*m == nm) ? *s : *s * expf(*m - nm);
    const float b = (om == nm) ? os : os * expf(om - nm);
    *m = nm;
    *s = a + b;
}
/* Four consecutive values at element i (a multiple of 4) as f32. */
__device__ void wmx_load4(const void* p, long long code, long long i, float* v) {
    if (code == 1) {
        const uint2 u = *(const uint2*)((const unsigned short*)p + i);
        v[0] = __uint_as_float(u.x << 16); v[1] = __uint_as_float(u.x & 0xffff0000u);
        v[2] = __uint_as_float(u.y << 16); v[3] = __uint_as_float(u.y & 0xffff0000u);
    } else {
        const float4 f = *(const float4*)((const float*)p + i);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    }
}
__device__ void wmx_store4(void* p, long long code, long long i, const float* v) {
    if (code == 1) {
        uint2 u;
        u.x = (unsigned int)wmx_bf16_bits(v[0]) | ((unsigned int)wmx_bf16_bits(v[1]) << 16);
        u.y = (unsigned int)wmx_bf16_bits(v[2]) | ((unsigned int)wmx_bf16_bits(v[3]) << 16);
        *(uint2*)((unsigned short*)p + i) = u;
    } else {
        *(float4*)((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
    }
}
__device__ long long wmx_target(const void* t, long long tcode, long long r) {
    return tcode == 1 ? ((const long long*)t)[r] : (long long)((const int*)t)[r];
}

/* One block per row: folds the slice's logits into the row's running maximum m
   and sum s (the first slice starts them), and picks the target's logit if it
   falls in the slice, which starts at vocabulary index v0. */
extern "C" __global__ void wmx_head_lse(const void* logits, const void* targets, float* m, float* s, float* picked,
    long long code, long long tcode, long long rows, long long cols, long long ld, long long v0, long long first)
{
    __shared__ float wm[32], ws[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = r * ld;
        float bm = WMX_NEG_INF, bs = 0.0f;
        for (long long j = 4 * (long long)threadIdx.x; j < cols; j += 4 * (long long)blockDim.x) {
            float v[4];
            wmx_load4(logits, code, base + j, v);
            for (int q = 0; q < 4 && j + q < cols; ++q) {
                const float x = v[q];
                if (x > bm) { bs = bs * expf(bm - x) + 1.0f; bm = x; }
                else bs += expf(x - bm);
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float om = __shfl_xor_sync(0xffffffffu, bm, o), os = __shfl_xor_sync(0xffffffffu, bs, o);
            wmx_lse_merge(&bm, &bs, om, os);
        }
        if (lane == 0) { wm[warp] = bm; ws[warp] = bs; }
        __syncthreads();
        if (threadIdx.x == 0) {
            float M = wm[0], S = ws[0];
            for (int w = 1; w < warps; ++w) wmx_lse_merge(&M, &S, wm[w], ws[w]);
            if (!first) wmx_lse_merge(&M, &S, m[r], s[r]);
            m[r] = M;
            s[r] = S;
            const long long t = wmx_target(targets, tcode, r);
            if (t >= v0 && t < v0 + cols) picked[r] = wmx_load(logits, code, base + (t - v0));
        }
        __syncthreads();
    }
}

/* Per row: lse = m + log s (in place of m); out[r] = (lse − picked, picked) in
   the model's dtype. */
extern "C" __global__ void wmx_head_nll(float* m, const float* s, const float* picked, void* out, long long code, long long rows)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {
        const float lse = m[r] + logf(s[r]);
        m[r] = lse;
        wmx_store(out, code, 2 * r, lse - picked[r]);
        wmx_store(out, code, 2 * r + 1, picked[r]);
    }
}

/* One block per row, in place: a slice's logits become their gradient,
   g·exp(x − lse) plus (g_picked − g) at the target, for the row's upstream
   gradients (g, g_picked) = grad[2r], grad[2r + 1]. */
extern "C" __global__ void wmx_head_nll_grad(void* logits, const void* targets, const float* lse, const void* grad,
    long long code, long long gcode, long long tcode, long long rows, long long cols, long long ld, long long v0)
{
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = r * ld;
        const float g = wmx_load(grad, gcode, 2 * r), gp = wmx_load(grad, gcode, 2 * r + 1), l = lse[r];
        const long long t = wmx_target(targets, tcode, r) - v0;
        for (long long j = 4 * (long long)threadIdx.x; j < cols; j += 4 * (long long)blockDim.x) {
            float v[4];
            wmx_load4(logits, code, base + j, v);
            for (int q = 0; q < 4; ++q) {
                v[q] = expf(v[q] - l) * g;
                if (j + q == t) v[q] += gp - g;
            }
            wmx_store4(logits, code, base + j, v);
        }
    }
}

/* y = x in y's dtype. */
extern "C" __global__ void wmx_head_cast(const float* x, void* y, long long code, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) wmx_store(y, code, i, x[i]);
}
"#;

    static LSE: Kernel = Kernel::new(SOURCE, "wmx_head_lse");
    static NLL: Kernel = Kernel::new(SOURCE, "wmx_head_nll");
    static GRAD: Kernel = Kernel::new(SOURCE, "wmx_head_nll_grad");
    static CAST: Kernel = Kernel::new(SOURCE, "wmx_head_cast");

    /// Logits in one slice's scratch, at most.
    const SLICE: usize = 1 << 27;

    /// How the passes walk the vocabulary: `rows` tokens, `d` hidden, `vocab`
    /// columns in slices of `cols` (the last may be shorter), a scratch row `ld`
    /// apart; w read as cuBLAS reads it, a slice `v_stride` elements further.
    #[derive(Debug, Clone, Copy)]
    struct Plan {
        rows: usize,
        d: usize,
        vocab: usize,
        cols: usize,
        ld: usize,
        w_transpose: bool,
        w_ld: usize,
        v_stride: usize,
        dtype: u64,
        tcode: u64,
        device: usize,
    }

    impl Plan {
        /// The plan for contiguous `h`, `targets` and `w` as it lies (which
        /// [`readable`] has made row- or column-major).
        fn new(h: &CubeTensor<CudaRuntime>, w: &CubeTensor<CudaRuntime>, targets: &CubeTensor<CudaRuntime>) -> Plan {
            let (rows, d) = super::super::cuda::kernel::rows(h.meta.shape().as_slice());
            let vocab = w.meta.shape()[1];
            let l = layout(w.meta.shape().as_slice(), &w.meta.strides()[..]).expect("w was made readable");
            // Slices of about SLICE logits, a multiple of 256 columns.
            let cols = (SLICE / rows.max(1)).max(256) / 256 * 256;
            let cols = cols.min(vocab.div_ceil(4) * 4);
            Plan {
                rows,
                d,
                vocab,
                cols,
                ld: cols,
                w_transpose: l.transpose,
                w_ld: l.ld as usize,
                v_stride: w.meta.strides()[1],
                dtype: code(h.dtype),
                tcode: match targets.dtype {
                    DType::I64 => 1,
                    DType::I32 => 0,
                    other => panic!("the head's loss takes i32 or i64 targets, not {other:?}"),
                },
                device: h.device.index,
            }
        }

        fn params(&self) -> Vec<u64> {
            [self.rows, self.d, self.vocab, self.cols, self.ld, self.w_transpose as usize, self.w_ld, self.v_stride, self.device]
                .into_iter()
                .map(|v| v as u64)
                .chain([self.dtype, self.tcode])
                .collect()
        }

        fn from_params(p: &[u64]) -> Result<Plan, String> {
            let &[rows, d, vocab, cols, ld, w_transpose, w_ld, v_stride, device, dtype, tcode] = p else {
                return Err(format!("the head's loss takes 11 parameters, not {}", p.len()));
            };
            let u = |v: u64| v as usize;
            Ok(Plan {
                rows: u(rows),
                d: u(d),
                vocab: u(vocab),
                cols: u(cols),
                ld: u(ld),
                w_transpose: w_transpose == 1,
                w_ld: u(w_ld),
                v_stride: u(v_stride),
                device: u(device),
                dtype,
                tcode,
            })
        }

        /// Bytes of one element of the model's dtype.
        fn size(&self) -> u64 {
            if self.dtype == 1 { 2 } else { 4 }
        }

        /// The slices: their first column and width.
        fn slices(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
            (0..self.vocab).step_by(self.cols.max(1)).map(|v0| (v0, self.cols.min(self.vocab - v0)))
        }

        /// The scratch's logits `h · w[:, v0..v0 + cols]`.
        fn logits(&self, stream: *mut std::ffi::c_void, h: u64, w: u64, scratch: u64, (v0, cols): (usize, usize)) -> Result<(), String> {
            let a = Operand { ptr: h, transpose: false, ld: self.d };
            let b = Operand { ptr: self.w_slice(w, v0), transpose: self.w_transpose, ld: self.w_ld };
            gemm_on_stream(self.device, stream, (self.dtype, self.dtype), [self.rows, cols, self.d], a, b, scratch, self.ld, 0.0)
        }

        fn w_slice(&self, w: u64, v0: usize) -> u64 {
            w + (v0 * self.v_stride) as u64 * self.size()
        }
    }

    /// w as cuBLAS can read it: as it lies when row- or column-major, else a copy.
    fn readable(w: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
        match layout(w.meta.shape().as_slice(), &w.meta.strides()[..]) {
            Some(_) => w,
            None => burn_cubecl::kernel::into_contiguous(w),
        }
    }

    /// The forward pass on cubecl's device thread: buffers h, w, targets, the
    /// output, the log-sum-exps, the sums, the picked logits, the scratch.
    fn run_forward(params: &[u64], pointers: &[u64], stream: *mut std::ffi::c_void) -> Result<(), String> {
        let plan = Plan::from_params(params)?;
        let &[h, w, targets, out, lse, sums, picked, scratch] = pointers else {
            return Err(format!("the head's loss takes 8 buffers, not {}", pointers.len()));
        };
        for (i, slice) in plan.slices().enumerate() {
            plan.logits(stream, h, w, scratch, slice)?;
            let (v0, cols) = slice;
            let args = [scratch, targets, lse, sums, picked, plan.dtype, plan.tcode, plan.rows as u64, cols as u64, plan.ld as u64, v0 as u64, (i == 0) as u64];
            LSE.launch_on_stream(stream, plan.rows, THREADS, &args)?;
        }
        NLL.launch_on_stream(stream, plan.rows.div_ceil(THREADS), THREADS, &[lse, sums, picked, out, plan.dtype, plan.rows as u64])
    }

    /// The backward pass on cubecl's device thread: buffers h, w, targets, the
    /// log-sum-exps, the upstream gradient, dh, dw, dh's f32 sum (dh itself in
    /// f32), the scratch. `params`: the plan's, then the gradient's dtype code and
    /// whether dw is written as its transpose `[vocab, hidden]` (w is the
    /// transposed view of such a matrix: tied embeddings).
    fn run_backward(params: &[u64], pointers: &[u64], stream: *mut std::ffi::c_void) -> Result<(), String> {
        let (plan, gcode, dw_rows) = match params {
            [rest @ .., g, rows] => (Plan::from_params(rest)?, *g, *rows == 1),
            _ => return Err("the head's loss gradient takes parameters".into()),
        };
        let &[h, w, targets, lse, grad, dh, dw, dh_sum, scratch] = pointers else {
            return Err(format!("the head's loss gradient takes 9 buffers, not {}", pointers.len()));
        };
        for (i, slice) in plan.slices().enumerate() {
            plan.logits(stream, h, w, scratch, slice)?;
            let (v0, cols) = slice;
            let args = [scratch, targets, lse, grad, plan.dtype, gcode, plan.tcode, plan.rows as u64, cols as u64, plan.ld as u64, v0 as u64];
            GRAD.launch_on_stream(stream, plan.rows, THREADS, &args)?;
            let types = (plan.dtype, 0);
            // dh (+)= d · w[:, slice]ᵀ, in f32.
            let d_op = Operand { ptr: scratch, transpose: false, ld: plan.ld };
            let w_t = Operand { ptr: plan.w_slice(w, v0), transpose: !plan.w_transpose, ld: plan.w_ld };
            let beta = if i == 0 { 0.0 } else { 1.0 };
            gemm_on_stream(plan.device, stream, types, [plan.rows, plan.d, cols], d_op, w_t, dh_sum, plan.d, beta)?;
            if dw_rows {
                // dwᵀ[slice, :] = dᵀ · h, row-major [vocab, d].
                let d_t = Operand { ptr: scratch, transpose: true, ld: plan.ld };
                let h_op = Operand { ptr: h, transpose: false, ld: plan.d };
                let dw_slice = dw + (v0 * plan.d) as u64 * plan.size();
                gemm_on_stream(plan.device, stream, (plan.dtype, plan.dtype), [cols, plan.d, plan.rows], d_t, h_op, dw_slice, plan.d, 0.0)?;
            } else {
                // dw[:, slice] = hᵀ · d, row-major [d, vocab].
                let h_t = Operand { ptr: h, transpose: true, ld: plan.d };
                let dw_slice = dw + v0 as u64 * plan.size();
                gemm_on_stream(plan.device, stream, (plan.dtype, plan.dtype), [plan.d, cols, plan.rows], h_t, d_op, dw_slice, plan.vocab, 0.0)?;
            }
        }
        if dh != dh_sum {
            let n = plan.rows * plan.d;
            CAST.launch_on_stream(stream, n.div_ceil(THREADS), THREADS, &[dh_sum, dh, plan.dtype, n as u64])?;
        }
        Ok(())
    }

    static FORWARD: HostFunction = HostFunction::new(run_forward);
    static BACKWARD: HostFunction = HostFunction::new(run_backward);

    /// The output `[batch, seq, 2]` and each row's log-sum-exp (f32 `[rows]`).
    pub(super) fn forward(h: FloatTensor<Cuda>, w: FloatTensor<Cuda>, targets: IntTensor<Cuda>) -> (FloatTensor<Cuda>, FloatTensor<Cuda>) {
        let dims = h.shape.as_slice().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut out_dims = dims.clone();
        *out_dims.last_mut().expect("h has a last dimension") = 2;
        let outputs = [(Shape::from(out_dims.clone()), h.dtype), (Shape::from(vec![rows]), DType::F32)];
        let [out, lse] = custom_views("wmx_head_nll", [h, w, targets], outputs, move |[h, w, t]| {
            let (h, t, w) = (burn_cubecl::kernel::into_contiguous(h), burn_cubecl::kernel::into_contiguous(t), readable(w));
            let plan = Plan::new(&h, &w, &t);
            let out = empty(&h, &out_dims, h.dtype);
            let lse = empty(&h, &[plan.rows], DType::F32);
            let sums = empty(&h, &[plan.rows], DType::F32);
            let picked = empty(&h, &[plan.rows], DType::F32);
            let scratch = empty(&h, &[plan.rows, plan.ld], h.dtype);
            let buffers = [&h, &w, &t, &out, &lse, &sums, &picked, &scratch].map(|b| b.handle.clone().binding()).to_vec();
            FORWARD.launch(&h, &plan.params(), buffers);
            [out, lse]
        });
        (out, lse)
    }

    /// dh (h's shape) and dw (`[hidden, vocab]`: contiguous, or for tied
    /// embeddings the transposed view of a contiguous `[vocab, hidden]`), in their
    /// dtypes.
    fn backward(
        h: FloatTensor<Cuda>,
        w: FloatTensor<Cuda>,
        targets: IntTensor<Cuda>,
        lse: FloatTensor<Cuda>,
        grad: FloatTensor<Cuda>,
    ) -> (FloatTensor<Cuda>, FloatTensor<Cuda>) {
        let outputs = [(h.shape.clone(), h.dtype), (w.shape.clone(), w.dtype)];
        let [dh, dw] = custom_views("wmx_head_nll_grad", [h, w, targets, lse, grad], outputs, |[h, w, t, lse, g]| {
            let contiguous = burn_cubecl::kernel::into_contiguous;
            let (h, t, lse, g, w) = (contiguous(h), contiguous(t), contiguous(lse), contiguous(g), readable(w));
            let plan = Plan::new(&h, &w, &t);
            let dh = empty(&h, h.meta.shape().as_slice(), h.dtype);
            // Tied embeddings' gradient in the embeddings' own layout, so adding
            // it to the embedding lookup's gradient reads both in order.
            let dw_rows = plan.w_transpose && plan.w_ld == plan.d;
            let dw = match dw_rows {
                true => empty(&h, &[plan.vocab, plan.d], w.dtype),
                false => empty(&h, &[plan.d, plan.vocab], w.dtype),
            };
            let sum = (h.dtype != DType::F32).then(|| empty(&h, &[plan.rows, plan.d], DType::F32));
            let scratch = empty(&h, &[plan.rows, plan.ld], h.dtype);
            let dh_sum = sum.as_ref().unwrap_or(&dh);
            let buffers = [&h, &w, &t, &lse, &g, &dh, &dw, dh_sum, &scratch].map(|b| b.handle.clone().binding()).to_vec();
            let mut params = plan.params();
            params.extend([code(g.dtype), dw_rows as u64]);
            BACKWARD.launch(&h, &params, buffers);
            match dw_rows {
                true => [dh, burn_cubecl::ops::permute(dw, &[1, 0])],
                false => [dh, dw],
            }
        });
        (dh, dw)
    }

    /// [`forward`] as one node of the autodiff graph, differentiated by [`backward`].
    pub(super) fn tracked(h: FloatTensor<CudaTrain>, w: FloatTensor<CudaTrain>, targets: IntTensor<Cuda>) -> FloatTensor<CudaTrain> {
        #[derive(Debug)]
        struct HeadNll;

        impl Backward<Cuda, 2> for HeadNll {
            /// h, w, the targets and each row's log-sum-exp.
            type State = (FloatTensor<Cuda>, FloatTensor<Cuda>, IntTensor<Cuda>, FloatTensor<Cuda>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (h, w, targets, lse) = ops.state;
                let grad = grads.consume::<Cuda>(&ops.node);
                let (dh, dw) = backward(h, w, targets, lse, grad);
                crate::ops::register_grads!(Cuda, grads, ops.parents, [dh, dw]);
            }
        }

        let (out, lse) = forward(h.primitive.clone(), w.primitive.clone(), targets.clone());
        crate::ops::tracked_node!(HeadNll, [h.node.clone(), w.node.clone()], (h.primitive, w.primitive, targets, lse), out)
    }
}

#[cfg(test)]
mod tests {
    use super::{FUSED_FROM_LOGITS, from_logits, nll_and_picked, pays, worth_it};
    use crate::backend::{Cpu, CpuTrain};
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Distribution, Int, Tensor, TensorData, Tolerance};

    /// By default the head fuses from 16M logits on: the 0.6B model's batch, not
    /// base.toml's; `WMX_FUSED_HEAD` forces either way; the CPU never fuses.
    #[test]
    fn the_head_fuses_where_the_logits_are_many() {
        let (qwen3_batch, base_batch) = ([8 * 512, 151_936], [16 * 48, 1024]);
        assert!(worth_it(None, qwen3_batch[0], qwen3_batch[1]));
        assert!(!worth_it(None, base_batch[0], base_batch[1]));
        assert!(worth_it(None, FUSED_FROM_LOGITS, 1) && !worth_it(None, FUSED_FROM_LOGITS - 1, 1));
        assert!(worth_it(Some(true), base_batch[0], base_batch[1]));
        assert!(!worth_it(Some(false), qwen3_batch[0], qwen3_batch[1]));
        assert!(!pays::<CpuTrain>(qwen3_batch[0], qwen3_batch[1]));
    }

    /// The head's loss and picked logit, and their gradients through a graph that
    /// weighs both, are burn's autodiff of log-softmax over the head's product.
    #[test]
    fn the_heads_loss_and_picked_logit_are_log_softmax_of_the_product() {
        let device = Default::default();
        let [batch, seq, d, vocab] = [2, 5, 8, 37];
        let h = Tensor::<Cpu, 3>::random([batch, seq, d], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Cpu, 2>::random([vocab, d], Distribution::Normal(0.0, 0.5), &device);
        let ids: Vec<i32> = (0..batch * seq).map(|i| ((i * 7 + 3) % vocab) as i32).collect();
        let targets = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device);
        let weights = Tensor::<CpuTrain, 3>::random([batch, seq, 2], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let th = Tensor::<CpuTrain, 3>::from_data(h.to_data(), &device).require_grad();
            let tw = Tensor::<CpuTrain, 2>::from_data(w.to_data(), &device).require_grad();
            let out = match fused {
                true => nll_and_picked(th.clone(), tw.clone().transpose(), targets.clone()),
                false => {
                    let logits = th.clone().matmul(tw.clone().transpose().unsqueeze::<3>());
                    let picked = logits.clone().gather(2, targets.clone().unsqueeze_dim::<3>(2));
                    let nll = log_softmax(logits, 2).gather(2, targets.clone().unsqueeze_dim::<3>(2)).neg();
                    Tensor::cat(vec![nll, picked], 2)
                }
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            (out.inner(), th.grad(&grads).expect("h is tracked"), tw.grad(&grads).expect("w is tracked"))
        };
        let (want, want_h, want_w) = run(false);
        let (got, got_h, got_w) = run(true);
        got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        got_h.into_data().assert_approx_eq::<f32>(&want_h.into_data(), Tolerance::absolute(1e-5));
        got_w.into_data().assert_approx_eq::<f32>(&want_w.into_data(), Tolerance::absolute(1e-5));
        // from_logits is the same function of the logits.
        let logits = Tensor::<Cpu, 3>::random([batch, seq, vocab], Distribution::Normal(0.0, 2.0), &device);
        let t = Tensor::<Cpu, 2, Int>::from_data(targets.inner().into_data(), &device);
        let out = from_logits(logits.clone(), t.clone());
        let want = log_softmax(logits.clone(), 2).gather(2, t.clone().unsqueeze_dim::<3>(2)).neg();
        out.clone().narrow(2, 0, 1).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        out.narrow(2, 1, 1).into_data().assert_approx_eq::<f32>(&logits.gather(2, t.unsqueeze_dim::<3>(2)).into_data(), Tolerance::absolute(0.0));
    }
}
