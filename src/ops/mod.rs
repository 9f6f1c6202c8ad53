//! Tensor operations the model is built from, each the same on every backend in
//! what it computes: burn's operations everywhere; for training, wmx's own fused
//! operations on CUDA (`cuda`, with cuBLAS products) and on the CPU (`cpu`), each
//! behind a switch to compare it with burn's.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub mod cross_entropy;
pub mod head_nll;
pub mod heads;
pub mod product;
pub mod rms_norm;
pub mod rotary;
pub mod softmax;
pub mod swiglu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod cpu;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod layout;

/// A switch read once from the environment, on unless the variable is `0`: how
/// wmx's CUDA paths (cuBLAS, the fused operations) can be turned back to burn's
/// own, to compare the two.
pub struct Switch {
    var: &'static str,
    on: std::sync::OnceLock<bool>,
}

impl Switch {
    pub const fn new(var: &'static str) -> Switch {
        Switch { var, on: std::sync::OnceLock::new() }
    }

    pub fn on(&self) -> bool {
        *self.on.get_or_init(|| std::env::var(self.var).map_or(true, |v| v != "0"))
    }
}

/// A fused operation's switch: whether a backend's tensors go through the
/// operation's own autodiff node and kernels rather than burn's autodiff of the
/// operations it replaces (and, without autodiff on the CPU, through its forward
/// kernel rather than burn's operations). On when training on burn's Cuda or on
/// the CPU, and for inference on the CPU, unless its environment variable is `0`.
pub struct Fused(Switch);

impl Fused {
    pub const fn new(var: &'static str) -> Fused {
        Fused(Switch::new(var))
    }

    /// Whether tensors of backend `B` go through the fused operation.
    pub fn handles<B: Backend>(&self) -> bool {
        (training_on_cuda::<B>() || training_on_cpu::<B>() || inferring_on_cpu::<B>()) && self.0.on()
    }
}

/// `$output`, computed outside the autodiff graph from the inputs whose nodes are
/// `$parents`, as one node of the graph whose backward pass is `$op`'s; it keeps
/// `$state`, evaluated only when some input is tracked.
macro_rules! tracked_node {
    ($op:expr, $parents:expr, $state:expr, $output:expr) => {
        match $op.prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>($parents).compute_bound().stateful() {
            burn::backend::autodiff::ops::OpsKind::Tracked(prep) => prep.finish($state, $output),
            burn::backend::autodiff::ops::OpsKind::UnTracked(prep) => prep.finish($output),
        }
    };
}

/// In a backward pass over backend `$b`: each of `$parents` the graph tracks gets
/// its gradient, in order.
macro_rules! register_grads {
    ($b:ty, $grads:expr, $parents:expr, [$($grad:expr),+ $(,)?]) => {
        for (parent, grad) in $parents.into_iter().zip([$($grad),+]) {
            if let Some(node) = parent {
                $grads.register::<$b>(node.id, grad);
            }
        }
    };
}

pub(crate) use {register_grads, tracked_node};

/// Whether `B` is burn's Cuda with autodiff: where wmx's fused training
/// operations run their own kernels.
pub fn training_on_cuda<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    return cuda::is::<B, cuda::CudaTrain>();
    #[cfg(not(feature = "cuda"))]
    false
}

/// Whether `B` is burn's Flex (the CPU backend) with autodiff: where wmx's fused
/// training operations run [`cpu`]'s kernels.
pub fn training_on_cpu<B: Backend>() -> bool {
    is::<B, crate::backend::CpuTrain>()
}

/// Whether `B` is burn's Flex without autodiff: inference on the CPU, where the
/// model's forward passes run [`cpu`]'s kernels (in f32) as training's do.
pub fn inferring_on_cpu<B: Backend>() -> bool {
    is::<B, crate::backend::Cpu>()
}

/// Whether backends `A` and `B` are the same type.
pub fn is<A: 'static, B: 'static>() -> bool {
    std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
}

/// `value` as type `U`, which it is: a tensor of one backend named through
/// another name of the same backend, once [`is`] has said so.
fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn std::any::Any> = Box::new(value);
    *boxed.downcast::<U>().unwrap_or_else(|_| unreachable!("cast between different backends"))
}

/// A float primitive of backend `From` as one of backend `To`, which [`is`] `From`.
pub fn cast_primitive<From: Backend, To: Backend>(tensor: burn::tensor::ops::FloatTensor<From>) -> burn::tensor::ops::FloatTensor<To> {
    same_type(tensor)
}

/// `tensor` as a tensor of backend `To`, which [`is`] `From`.
pub fn cast<From: Backend, To: Backend, const D: usize, K>(tensor: Tensor<From, D, K>) -> Tensor<To, D, K>
where
    K: burn::tensor::TensorKind<From> + burn::tensor::TensorKind<To> + 'static,
{
    same_type(tensor)
}

/// `lhs · rhs` over the last two dimensions: through cuBLAS on CUDA ([`cuda::cublas`]),
/// gemm straight into its output on the CPU ([`product`]), burn's `matmul` elsewhere.
pub fn matmul<B: Backend, const D: usize>(
    lhs: burn::tensor::Tensor<B, D>,
    rhs: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    // On the CPU, wmx's own product ([`product`]), else burn's.
    let (lhs, rhs) = match product::matmul(lhs, rhs) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    #[cfg(feature = "cuda")]
    return cuda::cublas::matmul(lhs, rhs);
    #[cfg(not(feature = "cuda"))]
    lhs.matmul(rhs)
}

/// `x · w` over x's last dimension: on CUDA one operation each way through cuBLAS
/// ([`cuda::cublas::rows_product`]), burn's reshapes around `matmul` elsewhere.
pub fn rows_product<B: Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
    w: burn::tensor::Tensor<B, 2>,
) -> burn::tensor::Tensor<B, D> {
    #[cfg(feature = "cuda")]
    return cuda::cublas::rows_product(x, w);
    #[cfg(not(feature = "cuda"))]
    rows_composed(x, w)
}

/// [`rows_product`] with burn's operations: the rows of x reshaped into one
/// matrix, multiplied by [`matmul`], reshaped back.
pub fn rows_composed<B: Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
    w: burn::tensor::Tensor<B, 2>,
) -> burn::tensor::Tensor<B, D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let n = dims[..D - 1].iter().product::<usize>();
    dims[D - 1] = w.dims()[1];
    matmul(x.reshape([n, k]), w).reshape(dims)
}

/// `layer.forward(x)`, with the rows of `x` as one matrix multiplied by the
/// weight ([`rows_product`]: through cuBLAS on CUDA, burn's `matmul` elsewhere).
/// burn's `Linear` would broadcast the weight over x's batch: one small product
/// per sequence, and in the backward pass one weight gradient per sequence,
/// summed afterwards.
pub fn linear<B: Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    let y = rows_product(x, layer.weight.val());
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<D>(),
        None => y,
    }
}


/// `f` computed in f32 on a tensor of any float dtype, the result cast back:
/// reductions such as norms and softmax keep f32 precision in bf16 models.
pub fn in_f32<B: Backend, const D: usize>(x: Tensor<B, D>, f: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>) -> Tensor<B, D> {
    use burn::tensor::{DType, FloatDType};
    match x.dtype() {
        DType::F32 => f(x),
        other => f(x.cast(FloatDType::F32)).cast(FloatDType::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::Switch;

    /// A switch is on unless its variable is `0`. Each variable is this test's own.
    #[test]
    fn switches_are_on_unless_their_variable_is_zero() {
        assert!(Switch::new("WMX_TEST_SWITCH_UNSET").on());
        for (value, on) in [("0", false), ("1", true), ("yes", true)] {
            let var: &'static str = Box::leak(format!("WMX_TEST_SWITCH_{value}").into_boxed_str());
            // SAFETY: no other thread reads these variables, which only this test names.
            unsafe { std::env::set_var(var, value) };
            assert_eq!(Switch::new(var).on(), on, "{var}={value}");
        }
    }
}
