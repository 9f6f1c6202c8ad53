//! `wmx bench`: measurements and checks printed as tables (or JSON lines), each
//! run on the backend named.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use wmx::backend::{BackendTask, dispatch};
use wmx::bench::{self, Measured};
use wmx::config::{self, Backend, DType};

#[derive(Subcommand)]
pub enum Command {
    /// Forward + backward time per batch of an experiment's model.
    Model {
        /// Experiment whose model shape is measured.
        #[arg(default_value = "experiments/base.toml")]
        experiment: PathBuf,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 64)]
        seq: usize,
        #[arg(long, default_value_t = 64)]
        wat_len: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Backend to measure on [default: the experiment's].
        #[arg(long, value_enum)]
        backend: Option<Backend>,
    },
    /// Training throughput of an experiment's text stream: forward, backward and AdamW step.
    Train {
        /// Experiment whose [model] shape and dtype are trained.
        #[arg(default_value = "experiments/base.toml")]
        experiment: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 512)]
        seq: usize,
        /// Untimed steps first (autotune, allocation).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Also time the forward pass with the loss, the backward pass and the
        /// optimizer step apart, the device synchronised after each (which adds
        /// idle time: the step's own time is measured without it).
        #[arg(long)]
        phases: bool,
        /// Sample the host's stacks over the timed steps and write them folded to
        /// this file (needs a build with `--features profile`; see src/profile.rs).
        #[arg(long, value_name = "FILE")]
        host_profile: Option<PathBuf>,
        #[command(flatten)]
        common: MeasureArgs,
    },
    /// Greedy generation latency of an experiment's text stream (batch 1, KV cache).
    Generate {
        #[arg(default_value = "experiments/base.toml")]
        experiment: PathBuf,
        /// Question length in tokens.
        #[arg(long, default_value_t = 32)]
        prompt: usize,
        /// New tokens generated (no early stop).
        #[arg(long, default_value_t = 48)]
        new: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[command(flatten)]
        common: MeasureArgs,
    },
    /// Logits and greedy tokens against transformers on Qwen3 fixtures, on any backend.
    Parity {
        /// Fixture directories [default: tests/fixtures/qwen3/tiny-tied and tiny-untied].
        fixtures: Vec<PathBuf>,
        /// Compute in this dtype: f32 (within 1e-4 relative) or bf16 (within 1e-2 of the logits' scale).
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DType,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// Instead, run each fixture's decoder step by step on the backend and on
        /// the CPU from the same inputs, and print how far each step differs.
        #[arg(long)]
        trace: bool,
        #[arg(long)]
        json: bool,
    },
    /// wmx's fused training operations (on CUDA, its own kernels) against burn's
    /// autodiff of the operations they replace: outputs and gradients.
    Kernels {
        /// Compute in this dtype: f32 (within 1e-5 of each tensor's scale) or bf16 (within 2e-2).
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DType,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        #[arg(long)]
        json: bool,
    },
    /// Executions per second of a cached program and first-compile time.
    Sandbox {
        /// Seconds to measure throughput for.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

/// What `bench train` and `bench generate` share: the experiment's overrides,
/// the backend and the output form.
#[derive(clap::Args)]
pub struct MeasureArgs {
    /// Override a key of the experiment (repeatable), e.g. model.init=random.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Backend to measure on [default: the experiment's].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl MeasureArgs {
    /// The experiment with its overrides, and the backend to measure on.
    fn load(&self, experiment: &Path) -> Result<(config::Loaded, Backend)> {
        let loaded = config::load(experiment, &self.set)?;
        let backend = self.backend.unwrap_or(loaded.experiment.backend);
        Ok((loaded, backend))
    }
}

pub fn exec(command: Command) -> Result<ExitCode> {
    match command {
        Command::Model { experiment, batch, seq, wat_len, repeats, backend } => {
            let loaded = config::load(&experiment, &[])?;
            let shape = bench::StepShape { batch, seq, wat_len, repeats: repeats.max(1) };
            let task = bench::ModelBench { experiment: &loaded.experiment, shape };
            let rows = dispatch(backend.unwrap_or(loaded.experiment.backend), task)?;
            print!("{}", bench::table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        Command::Train { experiment, batch, seq, warmup, repeats, phases, host_profile, common } => {
            if let Some(path) = &host_profile
                && !wmx::profile::AVAILABLE
            {
                anyhow::bail!(wmx::profile::unavailable(path));
            }
            let (loaded, backend) = common.load(&experiment)?;
            let task = bench::TrainBench {
                experiment: &loaded.experiment,
                batch,
                seq,
                warmup,
                repeats: repeats.max(1),
                phases,
                host_profile: host_profile.as_deref(),
                backend: backend.name(),
            };
            measure(backend, task, common.json)
        }
        Command::Generate { experiment, prompt, new, warmup, repeats, common } => {
            let (loaded, backend) = common.load(&experiment)?;
            let task = bench::GenerateBench {
                experiment: &loaded.experiment,
                prompt,
                new,
                warmup,
                repeats: repeats.max(1),
                backend: backend.name(),
            };
            measure(backend, task, common.json)
        }
        Command::Parity { fixtures, dtype, backend, trace, json } => parity(fixtures, dtype, backend, trace, json),
        Command::Kernels { dtype, backend, json } => {
            let checks = dispatch(backend, bench::KernelsBench { dtype })??;
            for c in &checks {
                match json {
                    true => println!("{}", serde_json::json!({ "backend": backend.name(), "dtype": dtype, "check": c })),
                    false => println!("{}", c.line(backend.name(), dtype)),
                }
            }
            Ok(passed(checks.iter().all(|c| c.pass)))
        }
        Command::Sandbox { seconds } => {
            print!("{}", bench::table(&bench::sandbox(seconds)?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parity(fixtures: Vec<PathBuf>, dtype: DType, backend: Backend, trace: bool, json: bool) -> Result<ExitCode> {
    let fixtures = match fixtures.is_empty() {
        true => ["tiny-tied", "tiny-untied"].map(|f| Path::new("tests/fixtures/qwen3").join(f)).to_vec(),
        false => fixtures,
    };
    if trace {
        for (fixture, steps) in dispatch(backend, bench::ParityTrace { fixtures: &fixtures, dtype })?? {
            match json {
                true => println!("{}", serde_json::json!({ "fixture": fixture, "backend": backend.name(), "dtype": dtype, "steps": steps })),
                false => print!("{}", bench::trace_table(&fixture, backend.name(), dtype, &steps)),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let checked = dispatch(backend, bench::ParityBench { fixtures: &fixtures, dtype })??;
    for (p, ok) in &checked {
        match json {
            true => println!("{}", serde_json::json!({ "backend": backend.name(), "dtype": dtype, "pass": ok, "parity": p })),
            false => println!("{}", bench::parity_line(p, *ok, backend.name(), dtype)),
        }
    }
    Ok(passed(checked.iter().all(|(_, ok)| *ok)))
}

fn passed(all: bool) -> ExitCode {
    if all { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Runs a timing task on `backend` and prints what it measured.
fn measure<T>(backend: Backend, task: T, json: bool) -> Result<ExitCode>
where
    T: BackendTask<Output = Result<Measured, String>>,
{
    let measured = dispatch(backend, task)?.map_err(anyhow::Error::msg)?;
    match json {
        true => println!("{}", serde_json::to_string(&measured)?),
        false => print!("{}", bench::table(&measured.rows())),
    }
    Ok(ExitCode::SUCCESS)
}
