//! `wmx bench kernels`: wmx's fused operations against burn's autodiff.


use burn::tensor::{Tensor, backend::Backend};



/// One fused operation checked by `wmx bench kernels`: its output and gradients
/// against burn's autodiff of the same computation written with burn's
/// operations, on the same backend, from the same inputs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelCheck {
    pub op: &'static str,
    pub shape: Vec<usize>,
    /// Scaled distances (max |Δ| / max |want|) of the output and of each input's gradient.
    pub output: f32,
    pub grads: Vec<(&'static str, f32)>,
    /// The largest scaled distance that passes in this dtype.
    pub bound: f32,
    pub pass: bool,
}

/// `wmx bench kernels`: wmx's fused training operations (on CUDA, its own
/// kernels) against burn's autodiff of the operations they replace, in `dtype`.
/// f32 passes within 1e-5 of each tensor's scale; bf16 within 2e-2, since the
/// fused gradients round once where burn's round after every operation.
pub struct KernelsBench {
    pub dtype: crate::config::DType,
}

impl crate::backend::BackendTask for KernelsBench {
    type Output = anyhow::Result<Vec<KernelCheck>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use burn::backend::Autodiff;
        use burn::tensor::Distribution;
        crate::backend::set_float_dtype::<B>(&device, self.dtype).map_err(anyhow::Error::msg)?;
        let bound = match self.dtype {
            crate::config::DType::F32 => 1e-5,
            _ => 2e-2,
        };
        let values = |t: Tensor<B, 4>| -> anyhow::Result<Vec<f32>> {
            t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        let mut checks = Vec::new();
        // Scaled distances of the fused results from the composed ones, and the check.
        let mut check = |op, shape: [usize; 4], got: Vec<Tensor<B, 4>>, want: Vec<Tensor<B, 4>>, names: &[&'static str]| -> anyhow::Result<()> {
            let mut distances = Vec::new();
            for (g, w) in got.into_iter().zip(want) {
                distances.push(crate::model::parity::distance(&values(g)?, &values(w)?).max_scaled);
            }
            let output = distances[0];
            let grads: Vec<_> = names.iter().copied().zip(distances[1..].iter().copied()).collect();
            let pass = distances.iter().all(|d| *d <= bound);
            checks.push(KernelCheck { op, shape: shape.to_vec(), output, grads, bound, pass });
            Ok(())
        };
        let upstream = |shape: [usize; 4]| Tensor::<Autodiff<B>, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let input = |shape: [usize; 4]| Tensor::<B, 4>::random(shape, Distribution::Normal(0.3, 2.0), &device);
        // A hidden-state norm and a per-head (q/k) norm of the 0.6B model's widths.
        for shape in [[2, 64, 1, 1024], [2, 64, 16, 128]] {
            let d = shape[3];
            let x = input(shape);
            let weight = Tensor::<B, 1>::random([d], Distribution::Normal(1.0, 0.5), &device);
            let dy = upstream(shape);
            let run = |fused: bool| {
                let tx = Tensor::<Autodiff<B>, 4>::from_inner(x.clone()).require_grad();
                let tw = Tensor::<Autodiff<B>, 1>::from_inner(weight.clone()).require_grad();
                let y = match fused {
                    true => crate::ops::rms_norm::tracked::<B, 4>(tx.clone(), tw.clone(), 1e-6),
                    false => crate::ops::rms_norm::norm(tx.clone(), tw.clone(), 1e-6).0,
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                let dw = tw.grad(&grads).expect("the weight's gradient").reshape([1, 1, 1, d]);
                vec![y.inner(), tx.grad(&grads).expect("the input's gradient"), dw]
            };
            check("rms_norm", shape, run(true), run(false), &["x", "weight"])?;
        }
        // Queries of the 0.6B model at positions 100..164.
        let shape = [2, 64, 16, 128];
        let rotary = crate::model::qwen3::Rotary::<Autodiff<B>>::new(128, 512, 1_000_000.0, &device);
        let (x, dy) = (input(shape), upstream(shape));
        let run = |fused: bool| {
            let tx = Tensor::<Autodiff<B>, 4>::from_inner(x.clone()).require_grad();
            let (cos, sin) = (rotary.cos.clone(), rotary.sin.clone());
            let y = match fused {
                true => crate::ops::rotary::tracked::<B>(tx.clone(), cos.inner(), sin.inner(), 100),
                false => crate::ops::rotary::composed(tx.clone(), cos, sin, rotary.rotate.clone(), 100),
            };
            let grads = (y.clone() * dy.clone()).sum().backward();
            vec![y.inner(), tx.grad(&grads).expect("the input's gradient")]
        };
        check("rotary", shape, run(true), run(false), &["x"])?;
        // Attention scores of the 0.6B model's grouped heads: 8 kv heads of 2 query
        // groups of 128 positions each, under the causal mask and without one.
        let (queries, shape) = (128, [2, 8, 2 * 128, 128]);
        let mask = crate::model::qwen3::causal_mask::<Autodiff<B>>(queries, 0, &device);
        let scores = input(shape);
        let dy = upstream(shape);
        for (op, masked) in [("softmax causal", true), ("softmax", false)] {
            let run = |fused: bool| {
                let ts = Tensor::<Autodiff<B>, 4>::from_inner(scores.clone()).require_grad();
                let p = match fused {
                    true => crate::ops::softmax::tracked::<B>(ts.clone(), 128f64.sqrt(), masked.then_some((queries, 0))),
                    false => crate::ops::softmax::composed(ts.clone(), 128f64.sqrt(), masked.then_some(mask.mask())),
                };
                let grads = (p.clone() * dy.clone()).sum().backward();
                vec![p.inner(), ts.grad(&grads).expect("the scores' gradient")]
            };
            check(op, shape, run(true), run(false), &["scores"])?;
        }
        // The MLP's gate at the 0.6B model's width.
        let shape = [2, 64, 1, 3072];
        let (gate, up, dy) = (input(shape), input(shape), upstream(shape));
        let run = |fused: bool| {
            let tg = Tensor::<Autodiff<B>, 4>::from_inner(gate.clone()).require_grad();
            let tu = Tensor::<Autodiff<B>, 4>::from_inner(up.clone()).require_grad();
            let y = match fused {
                true => crate::ops::swiglu::tracked::<B, 4>(tg.clone(), tu.clone()),
                false => crate::ops::swiglu::composed(tg.clone(), tu.clone()),
            };
            let grads = (y.clone() * dy.clone()).sum().backward();
            vec![y.inner(), tg.grad(&grads).expect("the gate's gradient"), tu.grad(&grads).expect("up's gradient")]
        };
        check("swiglu", shape, run(true), run(false), &["gate", "up"])?;
        // A projection of the 0.6B model (up_proj): rows of x times a weight.
        let shape = [2, 64, 1, 1024];
        let x = input(shape);
        let weight = Tensor::<B, 2>::random([1024, 3072], Distribution::Normal(0.0, 0.05), &device);
        let dy = upstream([2, 64, 1, 3072]);
        let run = |fused: bool| {
            let tx = Tensor::<Autodiff<B>, 4>::from_inner(x.clone()).require_grad();
            let tw = Tensor::<Autodiff<B>, 2>::from_inner(weight.clone()).require_grad();
            let y = match fused {
                true => crate::ops::rows_product(tx.clone(), tw.clone()),
                false => crate::ops::rows_composed(tx.clone(), tw.clone()),
            };
            let grads = (y.clone() * dy.clone()).sum().backward();
            let dw = tw.grad(&grads).expect("the weight's gradient").reshape([1, 1, 1024, 3072]);
            vec![y.inner(), tx.grad(&grads).expect("the input's gradient"), dw]
        };
        check("linear", shape, run(true), run(false), &["x", "weight"])?;
        // The LM head's product and the per-token loss: the 0.6B model's tied head
        // (a transposed view of the embeddings) over enough rows for two slices of
        // the vocabulary, and an untied head over an odd vocabulary. The output is
        // each token's loss and target logit, weighted by a random upstream. Only
        // where the head is fused (CUDA): elsewhere both sides are the same path.
        let fused_head = crate::ops::head_nll::handles::<Autodiff<B>>();
        for (tied, [rows, d, vocab]) in [(true, [1024, 1024, 151_936]), (false, [256, 128, 1001])].into_iter().filter(|_| fused_head) {
            let shape = [2, rows / 2, 1, d];
            let h = Tensor::<B, 3>::random([2, rows / 2, d], Distribution::Normal(0.0, 1.0), &device);
            let w = match tied {
                true => Tensor::<B, 2>::random([vocab, d], Distribution::Normal(0.0, 0.05), &device),
                false => Tensor::<B, 2>::random([d, vocab], Distribution::Normal(0.0, 0.05), &device),
            };
            let ids: Vec<i64> = (0..rows).map(|i| ((i * 7919 + 13) % vocab) as i64).collect();
            let targets = Tensor::<Autodiff<B>, 2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(ids, [2, rows / 2]), &device);
            let dy = Tensor::<Autodiff<B>, 3>::random([2, rows / 2, 2], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let th = Tensor::<Autodiff<B>, 3>::from_inner(h.clone()).require_grad();
                let tw = Tensor::<Autodiff<B>, 2>::from_inner(w.clone()).require_grad();
                let head = if tied { tw.clone().transpose() } else { tw.clone() };
                let out = match fused {
                    true => crate::ops::head_nll::nll_and_picked(th.clone(), head, targets.clone()),
                    false => crate::ops::head_nll::from_logits(crate::ops::rows_product(th.clone(), head), targets.clone()),
                };
                let grads = (out.clone() * dy.clone()).sum().backward();
                let dw = tw.grad(&grads).expect("the weight's gradient");
                let [a, b] = dw.dims();
                vec![
                    out.inner().unsqueeze::<4>(),
                    th.grad(&grads).expect("the states' gradient").reshape(shape),
                    dw.reshape([1, 1, a, b]),
                ]
            };
            check(if tied { "head nll" } else { "head nll untied" }, [1, rows, d, vocab], run(true), run(false), &["h", "weight"])?;
        }
        // Two AdamW steps on an up_proj-sized weight with its gradient clipped by
        // norm (on CUDA inside the fused update) against burn's clipping, then
        // burn's AdamW. In f32 only: a bf16 weight's step is mostly below its
        // rounding. The output is the weight's change; then both moments.
        if self.dtype == crate::config::DType::F32 {
            use burn::optim::SimpleOptimizer;
            let shape = [1, 1, 1024, 3072];
            let weight = Tensor::<B, 2>::random([1024, 3072], Distribution::Normal(0.0, 0.05), &device);
            let grads = [0.5, 2.0].map(|s| Tensor::<B, 2>::random([1024, 3072], Distribution::Normal(0.0, s), &device));
            let fused = crate::train::adamw::AdamW::new(0.1).clipped(1.0);
            let burns = burn::optim::AdamWConfig::new().with_weight_decay(0.1).build();
            let clip = burn::optim::grad_clipping::GradientClippingConfig::Norm(1.0).init();
            let (mut p, mut state) = (weight.clone(), None);
            let (mut q, mut theirs) = (weight.clone(), None);
            for g in &grads {
                (p, state) = fused.step(1e-2, p, g.clone(), state);
                (q, theirs) = burns.step(1e-2, q, clip.clip_gradient(g.clone()), theirs);
            }
            let moments = |s: Option<burn::optim::AdamWState<B, 2>>| {
                let m = s.expect("a state after a step").momentum;
                [m.moment_1.reshape(shape), m.moment_2.reshape(shape)]
            };
            let [m, v] = moments(state);
            let [tm, tv] = moments(theirs);
            let got = vec![(p - weight.clone()).reshape(shape), m, v];
            let want = vec![(q - weight).reshape(shape), tm, tv];
            check("adamw clip", shape, got, want, &["moment_1", "moment_2"])?;
        }
        // A seed's initial WorldModel is the CPU backend's, parameter for parameter:
        // every weight is drawn on the host (`model::random`), none by this
        // backend's own generator.
        let here = initial_weights::<B>(&device)?;
        let host = initial_weights::<crate::backend::Cpu>(&Default::default())?;
        let shape = [1, 1, 1, here.len()];
        let on_device = |v: Vec<f32>| Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(v, shape), &device);
        check("init", shape, vec![on_device(here)], vec![on_device(host)], &[])?;
        Ok(checks)
    }
}

/// Every float parameter of a small WorldModel (a text stream of two layers, a WAT
/// stream of two segments, a copy head) built on `B` from seed 7, by path.
fn initial_weights<B: Backend>(device: &B::Device) -> anyhow::Result<Vec<f32>> {
    crate::backend::seed::<B>(device, 7);
    let text = crate::model::qwen3::Qwen3Config {
        vocab_size: 300,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: Some(16),
        max_position_embeddings: 64,
        rope_theta: Some(10_000.0),
        rope_parameters: None,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    };
    let wat = crate::model::wat_stream::WatStreamConfig {
        vocab_size: 200,
        hidden_size: 32,
        num_attention_heads: 4,
        intermediate_size: 64,
        layers_per_segment: 1,
        segments: 2,
        text_hidden_size: 64,
        max_tokens: 64,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
    };
    let model = crate::model::world::WorldModel::new(text.init::<B>(device), &wat, vec![0, 1], 4, 0.0, device).with_copy_head(device);
    let tensors = crate::model::world::named_tensors(&model)?;
    Ok(tensors.into_values().flat_map(|(_, values)| values).collect())
}

impl KernelCheck {
    /// The check as `wmx bench kernels` prints it.
    pub fn line(&self, backend: &str, dtype: crate::config::DType) -> String {
        // Gradients by their input's name; AdamW's state by its own.
        let grads: Vec<String> = self
            .grads
            .iter()
            .map(|(n, d)| match n.starts_with("moment") {
                true => format!("{n} {d:.2e}"),
                false => format!("d{n} {d:.2e}"),
            })
            .collect();
        format!(
            "{:<10} {:<18} {} {:?}: output {:.2e}, {} (bound {:.0e}) {}",
            self.op,
            format!("{:?}", self.shape),
            backend,
            dtype,
            self.output,
            grads.join(", "),
            self.bound,
            if self.pass { "pass" } else { "FAIL" }
        )
    }
}
