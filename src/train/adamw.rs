//! AdamW: burn's optimizer, its defaults and its checkpoint format, with one
//! operation per parameter tensor on CUDA where burn registers about twelve.
//!
//! The host's cost per burn operation bounds a 0.6B training step on a GPU
//! (bench/RESULTS.md), and burn's AdamW spends ~12 element-wise operations on each
//! of the model's ~300 parameter tensors. On CUDA, [`AdamW`] instead launches one
//! kernel per tensor through the vendored cubecl-cuda's `host_call` (as the cuBLAS
//! products do): it reads the parameter, its gradient and both moments once,
//! computes in f32, and writes the three results in their own dtypes. Every other
//! backend runs burn's `AdamW` itself, bit for bit. The state is burn's
//! `AdamWState`, so checkpoints of either load in the other.

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, AdamWState, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// burn's `AdamWConfig` defaults, which the fused update must share.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// AdamW with burn's defaults (β = 0.9, 0.999; ε = 1e-5) and this weight decay.
#[derive(Clone)]
pub struct AdamW {
    burn: burn::optim::AdamW,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    weight_decay: f32,
    /// Where the update is fused: burn's clipping by norm (per tensor), applied in
    /// the update's kernel rather than by the optimizer adaptor.
    clip: Option<f32>,
}

impl AdamW {
    pub fn new(weight_decay: f32) -> AdamW {
        AdamW {
            burn: AdamWConfig::new().with_weight_decay(weight_decay).build(),
            weight_decay,
            clip: None,
        }
    }

    /// The optimizer clipping each tensor's gradient to `threshold` by its norm
    /// inside the update (burn's `GradientClipping::Norm`), as [`AdamW::init`]
    /// makes it on CUDA.
    pub fn clipped(self, threshold: f32) -> Self {
        AdamW { clip: Some(threshold), ..self }
    }

    /// The optimizer of a module, clipping gradients first when `clipping` is given.
    /// On CUDA, clipping by norm happens inside the fused update: burn's clipping
    /// costs about seven operations per parameter tensor (a square, a sum, a square
    /// root, a division, a clamp and a product), each a launch and a hand-off to
    /// the device thread, where the fused update reads the tensor's sum of squares.
    pub fn init<B: AutodiffBackend, M: burn::module::AutodiffModule<B>>(
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))] mut self,
        clipping: Option<&GradientClippingConfig>,
    ) -> OptimizerAdaptor<AdamW, M, B> {
        #[cfg(feature = "cuda")]
        if let Some(GradientClippingConfig::Norm(threshold)) = clipping
            && fused::handles::<B::InnerBackend>()
        {
            self.clip = Some(*threshold);
            return OptimizerAdaptor::from(self);
        }
        let optim = OptimizerAdaptor::from(self);
        match clipping {
            Some(config) => optim.with_grad_clipping(config.init()),
            None => optim,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for AdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        #[cfg(feature = "cuda")]
        if fused::handles::<B>() && fused::takes(&tensor, &grad, state.as_ref()) {
            return fused::step(lr, tensor, grad, state, self.weight_decay, self.clip);
        }
        // A tensor the kernel does not take is clipped as the adaptor would have.
        let grad = match self.clip {
            Some(threshold) => GradientClippingConfig::Norm(threshold).init().clip_gradient(grad),
            None => grad,
        };
        self.burn.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// The scalars of one update: `p ← p·decay − lr·(m/c1) / (√(v/c2) + ε)` after
/// `m ← β1·m + (1−β1)·g` and `v ← β2·v + (1−β2)·g²`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scalars {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// `1 − lr·weight_decay`.
    pub decay: f32,
    /// Bias corrections `1 − β1^t` and `1 − β2^t` at step `t` (from 1).
    pub correction_1: f32,
    pub correction_2: f32,
}

impl Scalars {
    pub fn at(lr: f64, weight_decay: f32, time: usize) -> Scalars {
        let t = time as i32;
        Scalars {
            lr: lr as f32,
            beta_1: BETA_1,
            beta_2: BETA_2,
            epsilon: EPSILON,
            decay: 1.0 - (lr * weight_decay as f64) as f32,
            correction_1: 1.0 - BETA_1.powi(t),
            correction_2: 1.0 - BETA_2.powi(t),
        }
    }

    /// One element's update, as the CUDA kernel computes it: `(p, m, v)`.
    pub fn update(&self, p: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let m = self.beta_1 * m + (1.0 - self.beta_1) * g;
        let v = self.beta_2 * v + (1.0 - self.beta_2) * g * g;
        let step = (m / self.correction_1) / ((v / self.correction_2).sqrt() + self.epsilon);
        (p * self.decay - self.lr * step, m, v)
    }
}

/// The CUDA kernel of [`Scalars::update`], element-wise over a tensor; each of the
/// inputs f32 or bf16 ([`super::kernel`]'s conventions), each output in its
/// input's dtype. The scalars come as doubles and are computed with in f32. With
/// `clip` > 0 the gradient is first clipped by its norm as burn's
/// `GradientClipping::Norm` does, `g · min(clip / (√sq + min_positive), 1)`, where
/// `sq` holds the tensor's sum of squares (one element).
pub const KERNEL: &str = r#"
extern "C" __global__ void wmx_adamw(
    const void* p, const void* g, const void* m, const void* v, const void* sq,
    void* p_out, void* m_out, void* v_out,
    long long cp, long long cg, long long cm, long long cv, long long csq, long long n,
    double lr, double beta_1, double beta_2, double epsilon, double decay,
    double correction_1, double correction_2, double clip, double min_positive)
{
    const float b1 = (float)beta_1, b2 = (float)beta_2;
    float coef = 1.0f;
    if (clip > 0.0) {
        coef = fminf((float)clip / (sqrtf(wmx_load(sq, csq, 0)) + (float)min_positive), 1.0f);
    }
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float gi = wmx_load(g, cg, i) * coef;
        float mi = b1 * wmx_load(m, cm, i) + (1.0f - b1) * gi;
        float vi = b2 * wmx_load(v, cv, i) + (1.0f - b2) * gi * gi;
        float step = (mi / (float)correction_1) / (sqrtf(vi / (float)correction_2) + (float)epsilon);
        wmx_store(p_out, cp, i, wmx_load(p, cp, i) * (float)decay - (float)lr * step);
        wmx_store(m_out, cm, i, mi);
        wmx_store(v_out, cv, i, vi);
    }
}
"#;

#[cfg(feature = "cuda")]
mod fused {
    use burn::optim::{AdamWState, AdaptiveMomentumState};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Float, Tensor};

    use crate::ops::cuda::{Cuda, cast, float, is};
    use crate::ops::cuda::kernel::{self, Kernel, code, custom, empty_like, int, real};
    use super::Scalars;

    /// Whether the update of `B`'s tensors is fused: on burn's Cuda, unless
    /// `WMX_FUSED_ADAMW=0`, which keeps burn's own operations (to compare the two).
    pub(super) fn handles<B: Backend>() -> bool {
        static FUSED: crate::ops::Switch = crate::ops::Switch::new("WMX_FUSED_ADAMW");
        is::<B, Cuda>() && FUSED.on()
    }

    /// Whether the kernel reads these tensors' dtypes (f32 and bf16; burn's own
    /// operations update the rest, f16 models among them).
    pub(super) fn takes<B: Backend, const D: usize>(
        tensor: &Tensor<B, D>,
        grad: &Tensor<B, D>,
        state: Option<&AdamWState<B, D>>,
    ) -> bool {
        let ok = |t: &Tensor<B, D>| kernel::takes(t.dtype());
        ok(tensor) && ok(grad) && state.is_none_or(|s| ok(&s.momentum.moment_1) && ok(&s.momentum.moment_2))
    }

    pub(super) fn step<B: Backend, const D: usize>(
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<AdamWState<B, D>>,
        weight_decay: f32,
        clip: Option<f32>,
    ) -> (Tensor<B, D>, Option<AdamWState<B, D>>) {
        debug_assert!(is::<B, Cuda>(), "the fused AdamW runs on burn's Cuda");
        // The gradient's sum of squares, as burn's clipping computes it; without
        // clipping the kernel reads nothing there.
        let sq = match clip {
            Some(_) => cast::<B, Cuda, 1, Float>(grad.clone().square().sum()).into_primitive().tensor(),
            None => cast::<B, Cuda, D, Float>(grad.clone()).into_primitive().tensor(),
        };
        let (m, v, time) = match state {
            Some(s) => (s.momentum.moment_1, s.momentum.moment_2, s.momentum.time),
            None => (grad.zeros_like(), grad.zeros_like(), 0),
        };
        let time = time + 1;
        let primitive = |t: Tensor<B, D>| cast::<B, Cuda, D, Float>(t).into_primitive().tensor();
        let back = |t: FloatTensor<Cuda>| cast::<Cuda, B, D, Float>(float(t));
        let [p, m, v] = update(
            [primitive(tensor), primitive(grad), primitive(m), primitive(v), sq],
            Scalars::at(lr, weight_decay, time),
            clip.unwrap_or(0.0),
        );
        let state = AdamWState::new(AdaptiveMomentumState::new(time, back(m), back(v)));
        (back(p), Some(state))
    }

    /// The update as one operation of burn's fusion stream: new p, m and v.
    fn update(inputs: [FloatTensor<Cuda>; 5], s: Scalars, clip: f32) -> [FloatTensor<Cuda>; 3] {
        static UPDATE: Kernel = Kernel::new(super::KERNEL, "wmx_adamw");
        let out = |t: &FloatTensor<Cuda>| (t.shape.clone(), t.dtype);
        let outputs = [out(&inputs[0]), out(&inputs[2]), out(&inputs[3])];
        custom("wmx_adamw", inputs, outputs, move |[p, g, m, v, sq]| {
            let outs = [empty_like(&p), empty_like(&m), empty_like(&v)];
            let n = p.meta.shape().as_slice().iter().product::<usize>();
            let scalars = [
                code(p.dtype),
                code(g.dtype),
                code(m.dtype),
                code(v.dtype),
                code(sq.dtype),
                int(n),
                real(s.lr as f64),
                real(s.beta_1 as f64),
                real(s.beta_2 as f64),
                real(s.epsilon as f64),
                real(s.decay as f64),
                real(s.correction_1 as f64),
                real(s.correction_2 as f64),
                real(clip as f64),
                // burn's clipping adds its dtype's smallest normal to the norm:
                // f32's, which bf16 shares.
                real(f32::MIN_POSITIVE as f64),
            ];
            let [po, mo, vo] = &outs;
            UPDATE.per_item(&p, n, &[&p, &g, &m, &v, &sq, po, mo, vo], &scalars);
            outs
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    /// The fused update's arithmetic ([`Scalars::update`], which the CUDA kernel
    /// spells out) against burn's AdamW over three steps in f32.
    #[test]
    fn the_fused_update_is_burns_adamw() {
        let device = Default::default();
        let optim = AdamW::new(0.1);
        let mut p = Tensor::<Cpu, 1>::random([64], Distribution::Normal(0.0, 1.0), &device);
        let mut state = None;
        let mut mine: Vec<f32> = p.to_data().to_vec().unwrap();
        let (mut m, mut v) = (vec![0f32; 64], vec![0f32; 64]);
        for t in 1..=3 {
            let g = Tensor::<Cpu, 1>::random([64], Distribution::Normal(0.0, 1.0), &device);
            let grads: Vec<f32> = g.to_data().to_vec().unwrap();
            let s = Scalars::at(1e-2, 0.1, t);
            for i in 0..64 {
                (mine[i], m[i], v[i]) = s.update(mine[i], grads[i], m[i], v[i]);
            }
            (p, state) = optim.step(1e-2, p, g, state);
        }
        let state = state.unwrap();
        assert_eq!(state.momentum.time, 3);
        p.into_data().assert_approx_eq::<f32>(&TensorData::new(mine, [64]), Tolerance::absolute(1e-6));
        state.momentum.moment_1.into_data().assert_approx_eq::<f32>(&TensorData::new(m, [64]), Tolerance::absolute(1e-6));
        state.momentum.moment_2.into_data().assert_approx_eq::<f32>(&TensorData::new(v, [64]), Tolerance::absolute(1e-6));
    }

    /// Where the optimizer clips (a tensor the CUDA kernel does not take), it
    /// clips as burn's adaptor does: by the tensor's norm, then burn's update.
    #[test]
    fn clipping_in_the_optimizer_is_burns() {
        let device = Default::default();
        let clipped = AdamW::new(0.1).clipped(0.5);
        let p = Tensor::<Cpu, 1>::random([64], Distribution::Normal(0.0, 1.0), &device);
        let g = Tensor::<Cpu, 1>::random([64], Distribution::Normal(0.0, 1.0), &device);
        let (mine, _) = clipped.step(1e-2, p.clone(), g.clone(), None);
        let g = GradientClippingConfig::Norm(0.5).init().clip_gradient(g);
        let (burns, _) = AdamW::new(0.1).burn.step(1e-2, p, g, None);
        mine.into_data().assert_approx_eq::<f32>(&burns.into_data(), Tolerance::absolute(0.0));
    }

    /// The kernel's source names every scalar in [`Scalars::update`]'s order.
    #[test]
    fn the_kernel_takes_the_scalars_in_order() {
        let signature = KERNEL.split("wmx_adamw(").nth(1).unwrap().split(')').next().unwrap();
        let names: Vec<&str> = signature
            .split(',')
            .map(|a| a.split_whitespace().last().unwrap().trim_start_matches('*'))
            .collect();
        assert_eq!(
            names,
            [
                "p", "g", "m", "v", "sq", "p_out", "m_out", "v_out", "cp", "cg", "cm", "cv", "csq", "n", "lr", "beta_1", "beta_2",
                "epsilon", "decay", "correction_1", "correction_2", "clip", "min_positive"
            ]
        );
    }
}
