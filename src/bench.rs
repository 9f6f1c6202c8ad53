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
