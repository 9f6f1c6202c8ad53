//! `wmx bench`: measurements printed as a table. Speed targets are checked here,
//! never by timed assertions in tests.

use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::config::Experiment;
use crate::curriculum::tasks::{Slot, Task};
use crate::model::qwen3::Qwen3Config;
use crate::model::wat_stream::WatStreamConfig;
use crate::model::world::{Batch, WorldModel, masked_cross_entropy};
use crate::sandbox::{Arg, Outcome, Policy, Sandbox, SandboxError};

/// One measured row.
pub struct Row {
    pub name: String,
    pub value: String,
    pub note: String,
}

/// Sandbox throughput and compile latency, on the calling thread only.
pub fn sandbox(seconds: f64) -> Result<Vec<Row>, SandboxError> {
    let policy = Policy::default();
    let sandbox = Sandbox::new(&policy)?;
    let add = program(
        Task::Add,
        &[("a", Slot::Number(0.0)), ("b", Slot::Number(0.0))],
    );
    let args = [Arg::Number(12.0), Arg::Number(7.5)];
    if sandbox.run(&add, &args) != Outcome::Value(19.5) {
        return Err(SandboxError::Engine(
            "the benchmark program did not compute 19.5".into(),
        ));
    }
    // Warm up, then count executions (each with a fresh store) for `seconds`.
    for _ in 0..1_000 {
        sandbox.run(&add, &args);
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            std::hint::black_box(sandbox.run(&add, &args));
        }
        runs += 256;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_second = runs as f64 / elapsed;
    let mut rows = vec![Row {
        name: "cached two-argument program, fresh store per run".into(),
        value: format!("{} exec/s", group_thousands(per_second)),
        note: format!(
            "{:.2} µs each; 1 thread; target ≥ 200,000",
            1e6 / per_second
        ),
    }];
    let factorial = program(Task::Factorial, &[("n", Slot::Number(0.0))]);
    for (label, wat) in [
        ("add (two arguments)", &add),
        ("factorial (loop)", &factorial),
    ] {
        let mut times = Vec::new();
        for _ in 0..15 {
            let fresh = Sandbox::new(&policy)?;
            let t = Instant::now();
            let checked = fresh.check(wat);
            times.push(t.elapsed());
            if let Err(outcome) = checked {
                return Err(SandboxError::Engine(format!(
                    "benchmark program failed to compile: {outcome}"
                )));
            }
        }
        times.sort();
        rows.push(Row {
            name: format!("first compile: {label}"),
            value: format!("{:.2} ms", times[times.len() / 2].as_secs_f64() * 1e3),
            note: format!(
                "median of {}; parse + validate + cranelift + link",
                times.len()
            ),
        });
    }
    Ok(rows)
}

fn program(task: Task, slots: &[(&'static str, Slot)]) -> String {
    let sample = slots.iter().cloned().collect();
    let order: Vec<&str> = slots.iter().map(|(name, _)| *name).collect();
    task.program(&order, &sample)
}

fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let w0 = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    let w1 = rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("{:<w0$}  {:>w1$}  {}\n", "benchmark", "result", "notes");
    for r in rows {
        out.push_str(&format!("{:<w0$}  {:>w1$}  {}\n", r.name, r.value, r.note));
    }
    out
}

/// Shapes of the model benchmark's batch.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    pub batch: usize,
    pub seq: usize,
    pub wat_len: usize,
    pub repeats: usize,
}

/// Forward + backward time per batch of an experiment's model: the text stream
/// alone (what the PyTorch reference runs) and the whole WorldModel.
pub struct ModelBench<'a> {
    pub experiment: &'a Experiment,
    pub shape: StepShape,
}

impl crate::backend::BackendTask for ModelBench<'_> {
    type Output = Vec<Row>;

    fn run<B: Backend>(self, device: B::Device) -> Vec<Row> {
        type A<B> = Autodiff<B>;
        let e = self.experiment;
        let StepShape {
            batch,
            seq,
            wat_len,
            repeats,
        } = self.shape;
        A::<B>::seed(&device, 0);
        let text_config = Qwen3Config::from_experiment(&e.model);
        let wat_vocab = crate::tokenize::wat::WatVocab::new().len();
        let wat = WatStreamConfig {
            vocab_size: wat_vocab,
            hidden_size: e.wat.hidden_size,
            num_attention_heads: e.wat.num_attention_heads,
            intermediate_size: e.wat.intermediate_size,
            layers_per_segment: e.wat.layers_per_segment,
            segments: e.fusion.layers.len(),
            text_hidden_size: e.model.hidden_size,
            max_tokens: e.wat.max_tokens.max(wat_len),
            rms_norm_eps: e.model.rms_norm_eps,
            rope_theta: 10_000.0,
        };
        let model = WorldModel::<A<B>>::new(
            text_config.init(&device),
            &wat,
            e.fusion.layers.clone(),
            e.fusion.num_attention_heads,
            0.1,
            &device,
        );
        let ids = |n: usize, vocab: usize| {
            let data: Vec<i32> = (0..batch * n)
                .map(|i| ((i * 7919 + 13) % vocab) as i32)
                .collect();
            Tensor::<A<B>, 2, Int>::from_data(TensorData::new(data, [batch, n]), &device)
        };
        let question: Vec<bool> = (0..batch * seq).map(|i| i % seq < seq / 2).collect();
        let b = Batch {
            text_ids: ids(seq, text_config.vocab_size),
            text_targets: ids(seq, text_config.vocab_size),
            text_loss_mask: Tensor::ones([batch, seq], &device),
            question: Tensor::<A<B>, 2, Bool>::from_data(
                TensorData::new(question.clone(), [batch, seq]),
                &device,
            ),
            wat_reads: Tensor::<A<B>, 2, Bool>::from_data(
                TensorData::new(question, [batch, seq]),
                &device,
            ),
            wat_ids: ids(wat_len, wat_vocab),
            wat_targets: ids(wat_len, wat_vocab),
            wat_loss_mask: Tensor::ones([batch, wat_len], &device),
        };
        let time = |f: &dyn Fn()| {
            f();
            f();
            let mut times: Vec<f64> = (0..repeats)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        let text_only = time(&|| {
            let logits = model.text.forward(b.text_ids.clone(), None);
            let loss =
                masked_cross_entropy(logits, b.text_targets.clone(), b.text_loss_mask.clone());
            let grads = loss.backward();
            std::hint::black_box(grads);
        });
        let whole = time(&|| {
            let (text, wat) = model.losses(&b);
            let loss = wat.into_iter().fold(text, |acc, l| acc + l);
            let grads = loss.backward();
            std::hint::black_box(grads);
        });
        let tokens = (batch * seq) as f64;
        let shape =
            format!("batch {batch} × {seq} text tokens, {wat_len} WAT tokens; median of {repeats}");
        vec![
            Row {
                name: format!(
                    "text stream fwd+bwd ({} layers × {})",
                    e.model.num_hidden_layers, e.model.hidden_size
                ),
                value: format!("{text_only:.1} ms"),
                note: format!("{:.0} tokens/s; {shape}", tokens / text_only * 1e3),
            },
            Row {
                name: format!("WorldModel fwd+bwd ({} exits)", e.fusion.layers.len()),
                value: format!("{whole:.1} ms"),
                note: format!("{:.0} text tokens/s; {shape}", tokens / whole * 1e3),
            },
        ]
    }
}

/// What a training-throughput or generation measurement found; printed as a
/// table row or as JSON for `bench/gpu.sh`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub what: String,
    pub backend: String,
    pub dtype: String,
    pub parameters: u64,
    pub batch: usize,
    pub seq: usize,
    /// Seconds per repetition after warm-up, in order.
    pub seconds: Vec<f64>,
    pub median_s: f64,
    /// Tokens per second at the median (training only).
    pub tokens_per_s: Option<f64>,
    /// Each phase of a training step timed apart (`wmx bench train --phases`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases_s: Option<Phases>,
}

/// Median seconds of each phase of a training step, the device synchronised
/// after each.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Phases {
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Training throughput of the experiment's text stream (what the PyTorch
/// reference trains): forward, cross-entropy over every position, backward and
/// an AdamW step, timed from the host with the device synchronised.
pub struct TrainBench<'a> {
    pub experiment: &'a Experiment,
    pub batch: usize,
    pub seq: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Also time the step's phases apart ([`Phases`]).
    pub phases: bool,
    /// Sample the host's stacks over the timed steps into this file ([`crate::profile`]).
    pub host_profile: Option<&'a std::path::Path>,
    pub backend: &'static str,
}

fn random_ids<B: Backend>(batch: usize, n: usize, vocab: usize, salt: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i32> = (0..batch * n)
        .map(|i| (((i + salt) * 7919 + 13 * salt + 1) % vocab) as i32)
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, n]), device)
}

impl crate::backend::BackendTask for TrainBench<'_> {
    type Output = Result<Measured, String>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Measured, String> {
        use burn::module::Module;
        use burn::optim::{GradientsParams, Optimizer};
        type A<B> = Autodiff<B>;
        let e = self.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype)?;
        A::<B>::seed(&device, 0);
        let config = Qwen3Config::from_experiment(&e.model);
        let mut model = config.init::<A<B>>(&device);
        let parameters = model.num_params() as u64;
        let mut optim = crate::backend::adamw::AdamW::new(e.train.weight_decay as f32)
            .init::<A<B>, crate::model::qwen3::Qwen3ForCausalLM<A<B>>>(None);
        let (batch, seq) = (self.batch, self.seq);
        let mask = Tensor::<A<B>, 2>::ones([batch, seq], &device);
        let sync = || B::sync(&device).map_err(|e| format!("{e:?}"));
        // Warm-up steps, timed steps, then (with `phases`) as many again with the
        // device synchronised after each phase.
        let timed = self.warmup + self.repeats;
        let steps = timed + if self.phases { self.repeats } else { 0 };
        let mut seconds = Vec::new();
        let mut each: [Vec<f64>; 3] = Default::default();
        let mut profile = None;
        for i in 0..steps {
            let split = i >= timed;
            if i == self.warmup
                && let Some(path) = self.host_profile
            {
                profile = Some(crate::profile::HostProfile::start(path)?);
            }
            if i == timed
                && let Some(p) = profile.take()
            {
                p.finish()?;
            }
            let ids = random_ids::<A<B>>(batch, seq, config.vocab_size, i, &device);
            let targets = random_ids::<A<B>>(batch, seq, config.vocab_size, i + 1, &device);
            sync()?;
            let t = Instant::now();
            let loss = masked_cross_entropy(model.forward(ids, None), targets, mask.clone());
            if split {
                sync()?;
            }
            let forward = t.elapsed().as_secs_f64();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            if split {
                sync()?;
            }
            let backward = t.elapsed().as_secs_f64();
            model = optim.step(e.train.learning_rate, model, grads);
            sync()?;
            let step = t.elapsed().as_secs_f64();
            if split {
                for (v, s) in each.iter_mut().zip([forward, backward - forward, step - backward]) {
                    v.push(s);
                }
            } else if i >= self.warmup {
                seconds.push(step);
            }
        }
        if let Some(p) = profile.take() {
            p.finish()?;
        }
        let median_s = median(&seconds);
        let phases_s = self.phases.then(|| Phases {
            forward: median(&each[0]),
            backward: median(&each[1]),
            optimizer: median(&each[2]),
        });
        Ok(Measured {
            what: "train".into(),
            backend: self.backend.into(),
            dtype: format!("{:?}", e.model.dtype).to_lowercase(),
            parameters,
            batch,
            seq,
            tokens_per_s: Some((batch * seq) as f64 / median_s),
            seconds,
            median_s,
            phases_s,
        })
    }
}

/// Greedy generation latency of the experiment's text stream: a `prompt`-token
/// question, then `new` tokens through the KV cache (batch 1, no early stop).
pub struct GenerateBench<'a> {
    pub experiment: &'a Experiment,
    pub prompt: usize,
    pub new: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub backend: &'static str,
}

impl crate::backend::BackendTask for GenerateBench<'_> {
    type Output = Result<Measured, String>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Measured, String> {
        use burn::module::Module;
        let e = self.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype)?;
        B::seed(&device, 0);
        let config = Qwen3Config::from_experiment(&e.model);
        let model = config.init::<B>(&device);
        let prompt: Vec<u32> = (0..self.prompt)
            .map(|i| ((i * 7919 + 13) % config.vocab_size) as u32)
            .collect();
        let mut seconds = Vec::new();
        for i in 0..self.warmup + self.repeats {
            B::sync(&device).map_err(|e| format!("{e:?}"))?;
            let t = Instant::now();
            let out = model.generate(&prompt, self.new, &[], &device);
            B::sync(&device).map_err(|e| format!("{e:?}"))?;
            if out.len() != self.new {
                return Err(format!("generated {} tokens, not {}", out.len(), self.new));
            }
            if i >= self.warmup {
                seconds.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(Measured {
            what: "generate".into(),
            backend: self.backend.into(),
            dtype: format!("{:?}", e.model.dtype).to_lowercase(),
            parameters: model.num_params() as u64,
            batch: 1,
            seq: self.prompt + self.new,
            median_s: median(&seconds),
            seconds,
            tokens_per_s: None,
            phases_s: None,
        })
    }
}

/// `wmx bench parity`: each fixture's logits and greedy tokens against
/// transformers, in `dtype`. f32 passes within 1e-4 relative per logit with equal
/// greedy tokens; bf16 within 1e-2 of the logits' scale of transformers' own bf16
/// logits (bf16 alone moves them ~1.5e-2 from the f32 ones).
pub struct ParityBench<'a> {
    pub fixtures: &'a [std::path::PathBuf],
    pub dtype: crate::config::DType,
}

impl crate::backend::BackendTask for ParityBench<'_> {
    type Output = anyhow::Result<Vec<(crate::model::parity::Parity, bool)>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        crate::backend::set_float_dtype::<B>(&device, self.dtype).map_err(anyhow::Error::msg)?;
        self.fixtures
            .iter()
            .map(|dir| {
                let p = crate::model::parity::check::<B>(dir, &device)?;
                let ok = match self.dtype {
                    crate::config::DType::F32 => p.logits.f32_excess <= 0.0 && p.greedy_equal,
                    _ => p.logits_bf16.is_some_and(|d| d.max_scaled <= 1e-2),
                };
                Ok((p, ok))
            })
            .collect()
    }
}

/// `wmx bench parity --trace`: each fixture's decoder run step by step on the
/// backend and on the CPU in `dtype` ([`crate::model::parity::trace`]), to find
/// where a backend's rounding departs from the CPU's.
pub struct ParityTrace<'a> {
    pub fixtures: &'a [std::path::PathBuf],
    pub dtype: crate::config::DType,
}

impl crate::backend::BackendTask for ParityTrace<'_> {
    type Output = anyhow::Result<Vec<(String, Vec<crate::model::parity::Step>)>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use crate::backend::Cpu;
        let cpu = Default::default();
        crate::backend::set_float_dtype::<Cpu>(&cpu, self.dtype).map_err(anyhow::Error::msg)?;
        if std::any::TypeId::of::<B>() != std::any::TypeId::of::<Cpu>() {
            crate::backend::set_float_dtype::<B>(&device, self.dtype).map_err(anyhow::Error::msg)?;
        }
        self.fixtures
            .iter()
            .map(|dir| {
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                Ok((name, crate::model::parity::trace::<Cpu, B>(dir, &cpu, &device)?))
            })
            .collect()
    }
}

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
                    true => crate::backend::rms_norm::tracked::<B, 4>(tx.clone(), tw.clone(), 1e-6),
                    false => crate::backend::rms_norm::norm(tx.clone(), tw.clone(), 1e-6).0,
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
                true => crate::backend::rotary::tracked::<B>(tx.clone(), cos.inner(), sin.inner(), 100),
                false => crate::backend::rotary::composed(tx.clone(), cos, sin, rotary.rotate.clone(), 100),
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
                    true => crate::backend::softmax::tracked::<B>(ts.clone(), 128f64.sqrt(), masked.then_some((queries, 0))),
                    false => crate::backend::softmax::composed(ts.clone(), 128f64.sqrt(), masked.then_some(mask.mask())),
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
                true => crate::backend::swiglu::tracked::<B, 4>(tg.clone(), tu.clone()),
                false => crate::backend::swiglu::composed(tg.clone(), tu.clone()),
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
                true => crate::backend::rows_product(tx.clone(), tw.clone()),
                false => crate::backend::rows_composed(tx.clone(), tw.clone()),
            };
            let grads = (y.clone() * dy.clone()).sum().backward();
            let dw = tw.grad(&grads).expect("the weight's gradient").reshape([1, 1, 1024, 3072]);
            vec![y.inner(), tx.grad(&grads).expect("the input's gradient"), dw]
        };
        check("linear", shape, run(true), run(false), &["x", "weight"])?;
        Ok(checks)
    }
}
