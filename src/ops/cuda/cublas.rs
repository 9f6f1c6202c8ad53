//! Matmuls through cuBLAS on the CUDA backend.
//!
//! burn-cuda 0.21 multiplies matrices with cubecl's own kernels, several times
//! slower than cuBLAS on the shapes a transformer trains with (bench/RESULTS.md).
//! [`matmul`] sends a product of two CUDA tensors with the same batch dimensions
//! to `cublasGemmStridedBatchedEx` instead. The call is launched like a kernel
//! (the vendored cubecl-cuda's `host_call`, vendor/cubecl-cuda/PATCH.md):
//! cubecl's device thread resolves the operands' memory and runs [`run_gemm`] on
//! the stream it launches its own kernels on, in order with them, so neither the
//! GPU nor the host waits for the other. It is on unless `WMX_CUBLAS=0`.
//!
//! Three layers, one per backend wrapper:
//! - [`gemm`] on cubecl tensors: reads both operands where they lie (a transposed
//!   view is a cuBLAS transpose flag, not a copy) and writes a fresh contiguous
//!   output. f32 is computed in full f32 (no TF32, as PyTorch by default); bf16 and
//!   f16 read and write half precision and accumulate in f32.
//! - a custom operation of burn's fusion stream ([`fused`]), which runs [`gemm`]
//!   when the stream executes.
//! - an autodiff operation ([`tracked`]) whose backward pass is two more products
//!   through cuBLAS: `dA = dC·Bᵀ`, `dB = Aᵀ·dC`.
//!
//! Every other backend, and any product this does not cover (broadcast batch
//! dimensions, integer tensors), goes through burn's own `matmul`.

use std::cell::RefCell;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::cubecl::cuda::CudaRuntime;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Float, Shape, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use cudarc::cublas::sys as cublas;

use super::{Cube, Cuda, CudaTrain, HostFunction, cast, is};
use crate::ops::layout::layout;

/// `lhs · rhs` over the last two dimensions, through cuBLAS where it is
/// [`enabled`] and both are CUDA tensors with the same batch dimensions and float
/// type, through burn's `matmul` otherwise.
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    let (l, r) = (lhs.dims(), rhs.dims());
    assert!(
        l[D - 1] == r[D - 2],
        "matmul: the inner dimensions of {l:?} and {r:?} differ ({} ≠ {})",
        l[D - 1],
        r[D - 2]
    );
    let same_batch = lhs.dims()[..D - 2] == rhs.dims()[..D - 2];
    if !same_batch || !takes(lhs.dtype()) || lhs.dtype() != rhs.dtype() || !enabled() {
        return lhs.matmul(rhs);
    }
    if is::<B, CudaTrain>() {
        let primitive = |t: Tensor<B, D>| cast::<B, CudaTrain, D, Float>(t).into_primitive().tensor();
        let out = tracked(primitive(lhs), primitive(rhs));
        cast(Tensor::<CudaTrain, D>::from_primitive(
            TensorPrimitive::Float(out),
        ))
    } else if is::<B, Cuda>() {
        let primitive = |t: Tensor<B, D>| cast::<B, Cuda, D, Float>(t).into_primitive().tensor();
        let out = fused(primitive(lhs), primitive(rhs));
        cast(Tensor::<Cuda, D>::from_primitive(TensorPrimitive::Float(
            out,
        )))
    } else {
        lhs.matmul(rhs)
    }
}

/// Whether cuBLAS multiplies tensors of this dtype: f32, bf16 and f16.
fn takes(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
}

/// Whether products go through cuBLAS: unless `WMX_CUBLAS=0`, which keeps
/// cubecl's own matmul kernels (to compare the two, as `bench/gpu.sh` does).
fn enabled() -> bool {
    static CUBLAS: crate::ops::Switch = crate::ops::Switch::new("WMX_CUBLAS");
    CUBLAS.on()
}

/// Whether tensors of backend `B` go through cuBLAS.
pub fn handles<B: Backend>() -> bool {
    enabled() && (is::<B, CudaTrain>() || is::<B, Cuda>())
}

/// The product on the autodiff backend: forward and backward through [`fused`].
fn tracked(lhs: FloatTensor<CudaTrain>, rhs: FloatTensor<CudaTrain>) -> FloatTensor<CudaTrain> {
    #[derive(Debug)]
    struct Product;

    impl Backward<Cuda, 2> for Product {
        type State = (Option<NodeId>, Option<NodeId>);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let (lhs, rhs) = ops.state;
            let lhs: Option<FloatTensor<Cuda>> =
                lhs.map(|id| checkpointer.retrieve_node_output(id));
            let rhs: Option<FloatTensor<Cuda>> =
                rhs.map(|id| checkpointer.retrieve_node_output(id));
            binary::<Cuda, _, _>(
                ops.parents,
                ops.node,
                grads,
                |grad| fused(grad, transposed(rhs.expect("the right operand was kept"))),
                |grad| fused(transposed(lhs.expect("the left operand was kept")), grad),
            );
        }
    }

    // Each operand is kept only if the other one needs its gradient.
    let needs_lhs = rhs.is_tracked();
    let needs_rhs = lhs.is_tracked();
    match Product
        .prepare::<NoCheckpointing>([lhs.node.clone(), rhs.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let lhs_state = needs_lhs.then(|| prep.checkpoint(&lhs));
            let rhs_state = needs_rhs.then(|| prep.checkpoint(&rhs));
            prep.finish((lhs_state, rhs_state), fused(lhs.primitive, rhs.primitive))
        }
        OpsKind::UnTracked(prep) => prep.finish(fused(lhs.primitive, rhs.primitive)),
    }
}

/// `x · w` over x's last dimension (burn's `Linear` without its bias): x
/// `[.., k]`, w `[k, n]` → `[.., n]`. On CUDA with cuBLAS [`enabled`] it is one
/// operation each way, the rows of x one matrix inside it; elsewhere burn's
/// reshapes around [`matmul`].
pub fn rows_product<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    let (xd, wd) = (x.dims(), w.dims());
    assert!(xd[D - 1] == wd[0], "rows product: x {xd:?} and w {wd:?} need x's last dimension = w's first");
    if x.dtype() == w.dtype() && takes(x.dtype()) && enabled() {
        if is::<B, CudaTrain>() {
            let x = cast::<B, CudaTrain, D, Float>(x).into_primitive().tensor();
            let w = cast::<B, CudaTrain, 2, Float>(w).into_primitive().tensor();
            return cast(Tensor::<CudaTrain, D>::from_primitive(TensorPrimitive::Float(tracked_rows(x, w))));
        }
        if is::<B, Cuda>() {
            let x = cast::<B, Cuda, D, Float>(x).into_primitive().tensor();
            let w = cast::<B, Cuda, 2, Float>(w).into_primitive().tensor();
            return cast(Tensor::<Cuda, D>::from_primitive(TensorPrimitive::Float(rows(x, w))));
        }
    }
    crate::ops::rows_composed(x, w)
}

/// [`rows`] on the autodiff backend: `dx = dy · wᵀ` through [`rows`] again, and
/// `dw = xᵀ · dy` through [`gram`].
fn tracked_rows(x: FloatTensor<CudaTrain>, w: FloatTensor<CudaTrain>) -> FloatTensor<CudaTrain> {
    #[derive(Debug)]
    struct Rows;

    impl Backward<Cuda, 2> for Rows {
        /// x, if w needs its gradient; w, if x does.
        type State = (Option<FloatTensor<Cuda>>, Option<FloatTensor<Cuda>>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, w) = ops.state;
            binary::<Cuda, _, _>(
                ops.parents,
                ops.node,
                grads,
                |grad| rows(grad, transposed(w.expect("w was kept"))),
                |grad| gram(x.expect("x was kept"), grad),
            );
        }
    }

    let (keep_x, keep_w) = (w.is_tracked(), x.is_tracked());
    let y = rows(x.primitive.clone(), w.primitive.clone());
    match Rows.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((keep_x.then_some(x.primitive), keep_w.then_some(w.primitive)), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The rows of `t` `[.., d]` as one matrix `[rows, d]`: a view when t is
/// contiguous, a copy otherwise.
fn as_matrix(t: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    let shape = t.meta.shape().as_slice().to_vec();
    let d = shape.last().copied().unwrap_or(1);
    let n = shape.iter().product::<usize>() / d.max(1);
    burn_cubecl::ops::reshape(t, Shape::from(vec![n, d]))
}

/// `x · w` as one operation of burn's fusion stream: x `[.., k]`, w `[k, n]`
/// (or a transposed view) → `[.., n]`.
fn rows(x: FloatTensor<Cuda>, w: FloatTensor<Cuda>) -> FloatTensor<Cuda> {
    let (xd, wd) = (x.shape.as_slice(), w.shape.as_slice());
    assert!(wd.len() == 2 && xd.last() == Some(&wd[0]), "rows product: x {xd:?} and w {wd:?} need x's last dimension = w's first");
    let mut dims = x.shape.as_slice().to_vec();
    *dims.last_mut().expect("x has a last dimension") = w.shape[1];
    let out = [(Shape::from(dims.clone()), x.dtype)];
    let [y] = super::kernel::custom_views("wmx_cublas_rows", [x, w], out, move |[x, w]| {
        let y = gemm(as_matrix(x), w);
        [burn_cubecl::ops::reshape(y, Shape::from(dims.clone()))]
    });
    y
}

/// `xᵀ · dy` over all rows as one operation of burn's fusion stream: x `[.., k]`,
/// dy `[.., n]` → `[k, n]`, the gradient of [`rows`]' w.
fn gram(x: FloatTensor<Cuda>, dy: FloatTensor<Cuda>) -> FloatTensor<Cuda> {
    let rows = |s: &[usize]| s[..s.len() - 1].iter().product::<usize>();
    assert!(
        rows(x.shape.as_slice()) == rows(dy.shape.as_slice()),
        "gram product: x {:?} and dy {:?} need the same rows",
        x.shape.as_slice(),
        dy.shape.as_slice()
    );
    let (k, n) = (x.shape[x.shape.num_dims() - 1], dy.shape[dy.shape.num_dims() - 1]);
    let out = [(Shape::from(vec![k, n]), x.dtype)];
    let [dw] = super::kernel::custom_views("wmx_cublas_gram", [x, dy], out, |[x, dy]| {
        [gemm(burn_cubecl::ops::permute(as_matrix(x), &[1, 0]), as_matrix(dy))]
    });
    dw
}

/// The last two dimensions swapped: a view, no copy.
fn transposed(tensor: FloatTensor<Cuda>) -> FloatTensor<Cuda> {
    <Cuda as burn::tensor::ops::FloatTensorOps<Cuda>>::float_transpose(tensor)
}

/// The product as an operation of burn's fusion stream, run by [`gemm`].
fn fused(lhs: FloatTensor<Cuda>, rhs: FloatTensor<Cuda>) -> FloatTensor<Cuda> {
    #[derive(Debug)]
    struct Gemm {
        desc: CustomOpIr,
    }

    impl Operation<<Cube as FusionBackend>::FusionRuntime> for Gemm {
        fn execute(
            &self,
            handles: &mut HandleContainer<
                <<Cube as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle,
            >,
        ) {
            let ([lhs, rhs], [out]) = self.desc.as_fixed();
            let product = gemm(
                handles.get_float_tensor::<Cube>(lhs),
                handles.get_float_tensor::<Cube>(rhs),
            );
            handles.register_float_tensor::<Cube>(&out.id, product);
        }
    }

    let client = lhs.client.clone();
    let mut dims = lhs.shape.as_slice().to_vec();
    let n = rhs.shape[rhs.shape.num_dims() - 1];
    *dims.last_mut().expect("a matrix has two dimensions") = n;
    let streams = OperationStreams::with_inputs([&lhs, &rhs]);
    let out = TensorIr::uninit(client.create_empty_handle(), Shape::from(dims), lhs.dtype);
    let desc = CustomOpIr::new("wmx_cublas_matmul", &[lhs.into_ir(), rhs.into_ir()], &[out]);
    client
        .register(streams, OperationIr::Custom(desc.clone()), Gemm { desc })
        .remove(0)
}

/// One operand of [`gemm_on_stream`]: a row-major matrix at device address `ptr`
/// whose rows are `ld` elements apart, or, with `transpose`, one whose buffer holds
/// its transpose that way (as [`layout`] reads a view).
#[derive(Debug, Clone, Copy)]
pub struct Operand {
    pub ptr: u64,
    pub transpose: bool,
    pub ld: usize,
}

/// Row-major `c = a · b + beta · c`, a `[m, k]` times b `[k, n]` into c `[m, n]`
/// whose rows are `ldc` elements apart, as one cuBLAS call on `stream`: for host
/// functions, which already run on cubecl's device thread in stream order. `dtype`
/// is a and b's dtype code ([`super::kernel::code`]), `out` c's: bf16 operands with
/// an f32 output accumulate across calls (`beta = 1`) without rounding to bf16.
#[allow(clippy::too_many_arguments)]
pub fn gemm_on_stream(
    device: usize,
    stream: *mut std::ffi::c_void,
    (dtype, out): (u64, u64),
    [m, n, k]: [usize; 3],
    a: Operand,
    b: Operand,
    c: u64,
    ldc: usize,
    beta: f32,
) -> Result<(), String> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let int = |v: usize, what: &str| i32::try_from(v).map_err(|_| format!("a cuBLAS product's {what} ({v}) does not fit cuBLAS's 32-bit sizes"));
    let op = |transpose: bool| match transpose {
        true => cublas::cublasOperation_t::CUBLAS_OP_T,
        false => cublas::cublasOperation_t::CUBLAS_OP_N,
    };
    let alpha = 1.0f32;
    let handle = handle(device)?;
    // Column-major `cᵀ = bᵀ·aᵀ`: b's buffer is cuBLAS's first operand.
    unsafe {
        check(cublas::cublasSetStream_v2(handle, stream as cublas::cudaStream_t), "cublasSetStream")?;
        check(
            cublas::cublasGemmEx(
                handle,
                op(b.transpose),
                op(a.transpose),
                int(n, "columns")?,
                int(m, "rows")?,
                int(k, "inner dimension")?,
                (&alpha as *const f32).cast(),
                b.ptr as *const std::ffi::c_void,
                data_type(dtype)?,
                int(b.ld, "ldb")?,
                a.ptr as *const std::ffi::c_void,
                data_type(dtype)?,
                int(a.ld, "lda")?,
                (&beta as *const f32).cast(),
                c as *mut std::ffi::c_void,
                data_type(out)?,
                int(ldc, "ldc")?,
                cublas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            ),
            "cublasGemmEx",
        )
    }
}

/// cuBLAS's data type for a dtype code: 0 f32, 1 bf16, 2 f16.
fn data_type(code: u64) -> Result<cublas::cudaDataType, String> {
    match code {
        0 => Ok(cublas::cudaDataType::CUDA_R_32F),
        1 => Ok(cublas::cudaDataType::CUDA_R_16BF),
        2 => Ok(cublas::cudaDataType::CUDA_R_16F),
        other => Err(format!("no cuBLAS data type has code {other}")),
    }
}

thread_local! {
    /// One cuBLAS handle per thread (a handle must not be shared between threads
    /// calling at the same time).
    static HANDLE: RefCell<Option<cublas::cublasHandle_t>> = const { RefCell::new(None) };
}

/// This thread's cuBLAS handle, created in the device's primary context (the one
/// cubecl runs in) on first use.
fn handle(device: usize) -> Result<cublas::cublasHandle_t, String> {
    HANDLE.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(handle) = *h {
            return Ok(handle);
        }
        let driver = |e: cudarc::driver::DriverError| format!("CUDA device {device}: {e}");
        let handle = unsafe {
            let dev = cudarc::driver::result::device::get(device as i32).map_err(driver)?;
            let ctx = cudarc::driver::result::primary_ctx::retain(dev).map_err(driver)?;
            cudarc::driver::result::ctx::set_current(ctx).map_err(driver)?;
            let mut handle = std::ptr::null_mut();
            check(cublas::cublasCreate_v2(&mut handle), "cublasCreate")?;
            handle
        };
        *h = Some(handle);
        Ok(handle)
    })
}

fn check(status: cublas::cublasStatus_t, what: &str) -> Result<(), String> {
    if status == cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed: {status:?}"))
    }
}

/// `lhs · rhs` for cubecl tensors `[.., m, k]` and `[.., k, n]` with the same batch
/// dimensions, into a new contiguous `[.., m, n]`.
///
/// cuBLAS is column-major, and a row-major `C = A·B` is the column-major
/// `Cᵀ = Bᵀ·Aᵀ`: so B is cuBLAS's first operand and A its second, each read as the
/// transpose of what burn holds ([`layout`]).
pub fn gemm(lhs: CubeTensor<CudaRuntime>, rhs: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    let readable = |t: CubeTensor<CudaRuntime>| {
        let l = layout(t.meta.shape().as_slice(), &t.meta.strides()[..]);
        match l {
            Some(l) => (t, l),
            None => {
                let t = burn_cubecl::kernel::into_contiguous(t);
                let l = layout(t.meta.shape().as_slice(), &t.meta.strides()[..])
                    .expect("a contiguous tensor is row-major");
                (t, l)
            }
        }
    };
    let (lhs, a) = readable(lhs);
    let (rhs, b) = readable(rhs);
    let shape = lhs.meta.shape().as_slice().to_vec();
    let other = rhs.meta.shape().as_slice().to_vec();
    let d = shape.len();
    assert!(
        d >= 2 && other.len() == d && shape[..d - 2] == other[..d - 2] && shape[d - 1] == other[d - 2],
        "cuBLAS product of {shape:?} and {other:?}: needs equal batch dimensions and lhs's last = rhs's second-to-last"
    );
    let (m, k, n) = (shape[d - 2], shape[d - 1], rhs.meta.shape()[d - 1]);
    let batch: usize = shape[..d - 2].iter().product();
    let mut out_dims = shape.clone();
    out_dims[d - 1] = n;
    let dtype = lhs.dtype;
    let out = burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
        lhs.client.clone(),
        lhs.device.clone(),
        Shape::from(out_dims),
        dtype,
    );
    if m == 0 || n == 0 || batch == 0 {
        return out;
    }
    let dtype_code = match dtype {
        DType::F32 => 0,
        DType::BF16 => 1,
        DType::F16 => 2,
        other => panic!("cuBLAS matmul of {other:?} tensors"),
    };
    // Column-major `Cᵀ = Bᵀ·Aᵀ`: B's buffer is cuBLAS's first operand.
    let params = [
        lhs.device.index as u64,
        dtype_code,
        b.transpose as u64,
        a.transpose as u64,
        n as u64,
        m as u64,
        k as u64,
        b.ld as u64,
        b.batch_stride as u64,
        a.ld as u64,
        a.batch_stride as u64,
        batch as u64,
    ];
    let buffers = vec![
        rhs.handle.clone().binding(),
        lhs.handle.clone().binding(),
        out.handle.clone().binding(),
    ];
    static GEMM: HostFunction = HostFunction::new(run_gemm);
    GEMM.launch(&lhs, &params, buffers);
    out
}

/// Runs one `cublasGemmStridedBatchedEx` on cubecl's device thread, on the stream
/// cubecl would launch its next kernel on. `params` are [`gemm`]'s, `pointers`
/// the first operand, the second and the output.
fn run_gemm(params: &[u64], pointers: &[u64], stream: *mut std::ffi::c_void) -> Result<(), String> {
    let &[device, dtype, trans_a, trans_b, m, n, k, lda, stride_a, ldb, stride_b, batch] = params
    else {
        return Err(format!("a cuBLAS product takes 12 parameters, not {}", params.len()));
    };
    let &[a, b, c] = pointers else {
        return Err(format!("a cuBLAS product takes 3 buffers, not {}", pointers.len()));
    };
    let compute = cublas::cublasComputeType_t::CUBLAS_COMPUTE_32F;
    let kind = data_type(dtype)?;
    let op = |transpose: u64| {
        if transpose == 1 {
            cublas::cublasOperation_t::CUBLAS_OP_T
        } else {
            cublas::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let int = |v: u64, what: &str| {
        i32::try_from(v).map_err(|_| format!("a cuBLAS product's {what} ({v}) does not fit cuBLAS's 32-bit sizes"))
    };
    let (m32, n32, k32) = (int(m, "rows")?, int(n, "columns")?, int(k, "inner dimension")?);
    let (lda, ldb, batch) = (int(lda, "lda")?, int(ldb, "ldb")?, int(batch, "batch")?);
    let stride_c = m.checked_mul(n).and_then(|c| i64::try_from(c).ok()).ok_or("a cuBLAS product's output is too large")?;
    let (stride_a, stride_b) = (
        i64::try_from(stride_a).map_err(|_| "a cuBLAS batch stride is too large")?,
        i64::try_from(stride_b).map_err(|_| "a cuBLAS batch stride is too large")?,
    );
    let (alpha, beta) = (1.0f32, 0.0f32);
    let handle = handle(device as usize)?;
    unsafe {
        check(
            cublas::cublasSetStream_v2(handle, stream as cublas::cudaStream_t),
            "cublasSetStream",
        )?;
        check(
            cublas::cublasGemmStridedBatchedEx(
                handle,
                op(trans_a),
                op(trans_b),
                m32,
                n32,
                k32,
                (&alpha as *const f32).cast(),
                a as *const std::ffi::c_void,
                kind,
                lda,
                stride_a,
                b as *const std::ffi::c_void,
                kind,
                ldb,
                stride_b,
                (&beta as *const f32).cast(),
                c as *mut std::ffi::c_void,
                kind,
                m32,
                stride_c,
                batch,
                compute,
                cublas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            ),
            "cublasGemmStridedBatchedEx",
        )
    }
}
