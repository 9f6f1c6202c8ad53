//! The `wmx` command line: parses arguments, calls the library, prints `{:#}`
//! errors, and maps outcomes to exit codes (0 ok, 1 failed, 2 bad input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use wmx::config::{self, ConfigError};
use wmx::curriculum::import::{self, Fields, Format};
use wmx::curriculum::{self, Curriculum, CurriculumError, Split};
use wmx::model::ModelError;
use wmx::sandbox::{Arg, Outcome, Policy, Sandbox};
use wmx::tokenize::TokenizeError;

#[derive(Parser)]
#[command(
    name = "wmx",
    version,
    about = "Experiments with WASM WorldModels: language models that compute through a wasmtime sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an experiment file (and its curriculum) or a curriculum file without running anything.
    Validate {
        /// Experiment or curriculum TOML file.
        file: PathBuf,
        /// Override a key of an experiment: `--set train.batch_size=16` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Generate a curriculum's verified train/validation/test JSONL, or import and verify example files.
    Data {
        /// Curriculum TOML file (optional with --import).
        curriculum: Option<PathBuf>,
        /// Output directory [default: data/<curriculum name>, or data/imported].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Example file to import and verify instead of generating.
        #[arg(long, value_name = "FILE")]
        import: Option<PathBuf>,
        /// Format of the imported file.
        #[arg(long, value_enum, requires = "import")]
        format: Option<Format>,
        /// JSONL field names: `--field question=q --field program=wat --field value=v --field answer=a`.
        #[arg(long = "field", value_name = "NAME=FIELD", requires = "import")]
        fields: Vec<String>,
        /// Stage name recorded on imported examples [default: the file stem].
        #[arg(long, requires = "import")]
        stage: Option<String>,
    },
    /// Run a WAT program's `compute` in the sandbox.
    Exec {
        /// WAT file exporting `compute`.
        program: PathBuf,
        /// Bind the arguments from a question (numbers and quoted strings, in order).
        #[arg(long, conflicts_with = "args")]
        question: Option<String>,
        /// Arguments given directly: numbers, or text (quote it in the shell).
        #[arg(long, num_args = 1.., allow_negative_numbers = true)]
        args: Vec<String>,
        /// Capabilities: `none` (pure computation) or `system` (WASI with read-only files and a clock).
        #[arg(long, value_enum, default_value = "none")]
        policy: PolicyKind,
        /// Directory the `system` policy exposes read-only as /data.
        #[arg(long)]
        files: Option<PathBuf>,
        /// Clock for the `system` policy: `real` or a fixed UTC time like 2026-06-15T12:00:00Z.
        #[arg(long)]
        clock: Option<String>,
        /// Fuel per execution.
        #[arg(long)]
        fuel: Option<u64>,
        /// Wall-clock deadline in milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train an experiment through its curriculum, checkpointing and resuming by itself, then evaluate it.
    Run {
        /// Experiment TOML file.
        file: PathBuf,
        /// Start a new run even if one exists for this config (the old one is moved aside).
        #[arg(long)]
        fresh: bool,
        /// Override a key: `--set train.epoch_scale=0.1` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Backend [default: the experiment's].
        #[arg(long, value_enum)]
        backend: Option<config::Backend>,
    },
    /// Answer a question with a trained run, showing each exit's program, outcome and score.
    Infer {
        /// Run directory (runs/<experiment>/<id>).
        run: PathBuf,
        /// The question; without one, questions are read line by line from standard input.
        question: Option<String>,
        /// Print each answer as one JSON object.
        #[arg(long)]
        json: bool,
        /// Backend [default: the run's].
        #[arg(long, value_enum)]
        backend: Option<config::Backend>,
    },
    /// Evaluate a trained run on its test split or a JSONL file, with per-exit specialization.
    Eval {
        /// Run directory (runs/<experiment>/<id>).
        run: PathBuf,
        /// Questions from a JSONL file instead of the curriculum's test split.
        #[arg(long, value_name = "FILE.jsonl")]
        data: Option<PathBuf>,
        /// A split of the run's curriculum [default: test].
        #[arg(long, value_enum, conflicts_with = "data")]
        split: Option<SplitArg>,
        /// JSONL field holding the question.
        #[arg(long, default_value = "question", requires = "data")]
        question_field: String,
        /// JSONL field holding the answer (a number or a string).
        #[arg(long, default_value = "answer", requires = "data")]
        answer_field: String,
        /// JSONL field naming the operation a question needs [default: its intent, from the wording].
        #[arg(long, requires = "data")]
        op_field: Option<String>,
        /// Take part of the path away: text-only, no-exec, unguided or exit=K.
        #[arg(long, value_name = "ABLATION")]
        ablate: Option<wmx::infer::Ablation>,
        /// Compare numbers after rounding to this many decimals [default: the expected answer's].
        #[arg(long)]
        decimals: Option<u32>,
        /// Output directory [default: RUN/eval/, or RUN/eval/<data>[-<ablation>]/].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Backend [default: the run's].
        #[arg(long, value_enum)]
        backend: Option<config::Backend>,
    },
    /// Draw a run's report: RUN/report/index.html, report.md, charts (PNG, SVG) and tables.
    Report {
        /// Run directory (runs/<experiment>/<id>).
        run: PathBuf,
    },
    /// Run every member of an experiment's [sweep] (unfinished ones only), then compare them.
    Sweep {
        /// Experiment TOML file with a [sweep] table.
        file: PathBuf,
        /// Members run at once, each its own process.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Override a key in every member (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Backend [default: the experiment's].
        #[arg(long, value_enum)]
        backend: Option<config::Backend>,
    },
    /// Compare runs (or a sweep's members) into reports/<name>/: differing config keys, metrics, curves.
    Compare {
        /// Run directories, or one sweep directory (sweeps/<name>).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Report name [default: the sweep's name, else `compare`].
        #[arg(long)]
        name: Option<String>,
    },
    /// List the runs under ./runs with their status, steps and test accuracy.
    Ls {
        /// Directory holding `runs/` [default: the current one].
        #[arg(default_value = ".")]
        root: PathBuf,
        /// One JSON object per run.
        #[arg(long)]
        json: bool,
    },
    /// Greedy generation with the text stream alone from a Hugging Face Qwen3 directory.
    Generate {
        /// Directory with config.json, *.safetensors and tokenizer.json.
        #[arg(long)]
        model: PathBuf,
        /// The prompt, passed to the tokenizer as is (chat markup included).
        prompt: String,
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
        /// Print the generated token ids, one line, space-separated.
        #[arg(long)]
        ids: bool,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: config::Backend,
    },
    /// Print benchmark tables.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
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
        backend: Option<config::Backend>,
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
        dtype: config::DType,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: config::Backend,
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
        dtype: config::DType,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: config::Backend,
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
struct MeasureArgs {
    /// Override a key of the experiment (repeatable), e.g. model.init=random.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Backend to measure on [default: the experiment's].
    #[arg(long, value_enum)]
    backend: Option<config::Backend>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Validation,
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyKind {
    None,
    System,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Bad input (files that are missing, malformed or out of range) exits 2.
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<ConfigError>().is_some()
            || matches!(
                cause.downcast_ref::<CurriculumError>(),
                Some(
                    CurriculumError::Read { .. }
                        | CurriculumError::Invalid { .. }
                        | CurriculumError::Import { .. }
                )
            )
            || matches!(
                cause.downcast_ref::<wmx::sandbox::SandboxError>(),
                Some(
                    wmx::sandbox::SandboxError::Policy { .. }
                        | wmx::sandbox::SandboxError::Files { .. }
                )
            )
            || matches!(
                cause.downcast_ref::<ModelError>(),
                Some(e) if !matches!(e, ModelError::Tensor(_))
            )
            || matches!(
                cause.downcast_ref::<TokenizeError>(),
                Some(TokenizeError::Load { .. })
            )
            || cause
                .downcast_ref::<wmx::backend::MissingBackend>()
                .is_some()
            || cause.downcast_ref::<wmx::run::RunError>().is_some()
            || cause.downcast_ref::<wmx::eval::EvalInputError>().is_some()
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { file, set } => validate(&file, &set),
        Command::Data {
            curriculum,
            out,
            import,
            format,
            fields,
            stage,
        } => data(
            curriculum.as_deref(),
            out,
            import.as_deref(),
            format,
            &fields,
            stage,
        ),
        Command::Exec {
            program,
            question,
            args,
            policy,
            files,
            clock,
            fuel,
            deadline_ms,
            json,
        } => {
            let mut p = Policy::default();
            if let PolicyKind::System = policy {
                p = p.with_system();
            }
            p.system.files = files;
            if let Some(clock) = clock {
                p.system.clock = clock;
            }
            if let Some(fuel) = fuel {
                p.fuel = fuel;
            }
            if let Some(ms) = deadline_ms {
                p.deadline_ms = ms;
            }
            exec(&program, question.as_deref(), &args, &p, json)
        }
        Command::Run {
            file,
            fresh,
            set,
            backend,
        } => {
            let loaded = config::load(&file, &set)?;
            let backend = backend.unwrap_or(loaded.experiment.backend);
            match wmx::run::run(&loaded, Path::new("."), fresh, backend)? {
                wmx::run::Outcome::AlreadyComplete { dir, accuracy } => {
                    println!(
                        "{} is already complete (accuracy {}); use --fresh to train again",
                        dir.display(),
                        accuracy.map_or("unknown".into(), |a| format!("{a:.4}"))
                    );
                    Ok(ExitCode::SUCCESS)
                }
                wmx::run::Outcome::Finished { dir, accuracy } => {
                    println!("finished {}: accuracy {accuracy:.4}", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
                wmx::run::Outcome::Interrupted { dir } => {
                    println!(
                        "interrupted; {} keeps the checkpoint — run the same command to resume",
                        dir.display()
                    );
                    Ok(ExitCode::from(130))
                }
            }
        }
        Command::Infer {
            run,
            question,
            json,
            backend,
        } => {
            let opened = wmx::run::OpenedRun::open(&run)?;
            let backend = backend.unwrap_or(opened.experiment.backend);
            let task = wmx::infer::InferRun {
                run: &opened,
                question,
                json,
            };
            wmx::backend::dispatch(backend, task)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            run,
            data,
            split,
            question_field,
            answer_field,
            op_field,
            ablate,
            decimals,
            out,
            backend,
        } => {
            let opened = wmx::run::OpenedRun::open(&run)?;
            let backend = backend.unwrap_or(opened.experiment.backend);
            let data = match data {
                Some(path) => wmx::eval::EvalData::Jsonl {
                    path,
                    fields: wmx::eval::JsonlFields {
                        question: question_field,
                        answer: answer_field,
                        op: op_field,
                    },
                },
                None => wmx::eval::EvalData::Split(match split {
                    Some(SplitArg::Train) => Split::Train,
                    Some(SplitArg::Validation) => Split::Validation,
                    Some(SplitArg::Test) | None => Split::Test,
                }),
            };
            let task = wmx::eval::EvalRun {
                run: &opened,
                data,
                ablation: ablate.unwrap_or(wmx::infer::Ablation::None),
                decimals,
                out,
            };
            let (summary, out) = wmx::backend::dispatch(backend, task)??;
            print!("{}", wmx::eval::describe(&summary));
            println!("wrote {}", out.display());
            println!(
                "accuracy {:.4} ({}/{})",
                summary["accuracy"].as_f64().unwrap_or(0.0),
                summary["correct"],
                summary["total"]
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run } => {
            let written = wmx::report::report(&run)?;
            println!(
                "{} charts ({}), {} tables",
                written.charts.len(),
                written.charts.join(", "),
                written.tables.len()
            );
            println!("wrote {}", written.dir.join("index.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep {
            file,
            jobs,
            set,
            backend,
        } => {
            let (outcome, dir) = wmx::sweep::run_sweep(&file, &set, jobs, backend, Path::new("."))?;
            let record = wmx::sweep::SweepRecord::read(&dir)?;
            for m in &record.members {
                println!(
                    "{:<12} {:>9}  {}",
                    m.status,
                    m.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
                    m.values
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("sweep");
            println!("sweep recorded in {}; comparison in reports/{name}/", dir.display());
            Ok(match outcome {
                wmx::sweep::SweepOutcome::Complete => ExitCode::SUCCESS,
                wmx::sweep::SweepOutcome::Interrupted => {
                    println!("not every member finished: run the same command to continue");
                    ExitCode::from(130)
                }
                wmx::sweep::SweepOutcome::Failed => ExitCode::from(1),
            })
        }
        Command::Compare { runs, name } => {
            let mut dirs = Vec::new();
            for r in &runs {
                dirs.extend(wmx::sweep::runs_of(r)?);
            }
            let facts = dirs
                .iter()
                .map(|d| wmx::compare::RunFacts::read(d))
                .collect::<Result<Vec<_>>>()?;
            let name = name.unwrap_or_else(|| match runs.as_slice() {
                [one] if one.join("sweep.json").is_file() => {
                    one.file_name().and_then(|n| n.to_str()).unwrap_or("compare").to_string()
                }
                _ => "compare".to_string(),
            });
            let out = Path::new("reports").join(&name);
            let md = wmx::compare::compare(&facts, &out)?;
            print!("{md}");
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { root, json } => {
            let rows = wmx::run::list_runs(&root);
            if json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row)?);
                }
            } else if rows.is_empty() {
                println!("no runs under {}", root.join("runs").display());
            } else {
                print!("{}", wmx::run::runs_table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            ids,
            backend,
        } => {
            let task = GenerateTask {
                dir: model,
                prompt,
                max_new_tokens,
            };
            let generated = wmx::backend::dispatch(backend, task)??;
            if ids {
                let shown: Vec<String> = generated.ids.iter().map(u32::to_string).collect();
                println!("{}", shown.join(" "));
            } else {
                println!("{}", generated.text);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchCommand::Model {
                    experiment,
                    batch,
                    seq,
                    wat_len,
                    repeats,
                    backend,
                },
        } => {
            let loaded = config::load(&experiment, &[])?;
            let shape = wmx::bench::StepShape {
                batch,
                seq,
                wat_len,
                repeats: repeats.max(1),
            };
            let task = wmx::bench::ModelBench {
                experiment: &loaded.experiment,
                shape,
            };
            let rows = wmx::backend::dispatch(backend.unwrap_or(loaded.experiment.backend), task)?;
            print!("{}", wmx::bench::table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: BenchCommand::Train { experiment, batch, seq, warmup, repeats, phases, host_profile, common },
        } => {
            if let Some(path) = &host_profile
                && !wmx::profile::AVAILABLE
            {
                anyhow::bail!(wmx::profile::unavailable(path));
            }
            let loaded = config::load(&experiment, &common.set)?;
            let backend = common.backend.unwrap_or(loaded.experiment.backend);
            let task = wmx::bench::TrainBench {
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
        Command::Bench {
            what: BenchCommand::Generate { experiment, prompt, new, warmup, repeats, common },
        } => {
            let loaded = config::load(&experiment, &common.set)?;
            let backend = common.backend.unwrap_or(loaded.experiment.backend);
            let task = wmx::bench::GenerateBench {
                experiment: &loaded.experiment,
                prompt,
                new,
                warmup,
                repeats: repeats.max(1),
                backend: backend.name(),
            };
            measure(backend, task, common.json)
        }
        Command::Bench {
            what: BenchCommand::Parity { fixtures, dtype, backend, trace, json },
        } => {
            let fixtures = if fixtures.is_empty() {
                ["tiny-tied", "tiny-untied"].map(|f| Path::new("tests/fixtures/qwen3").join(f)).to_vec()
            } else {
                fixtures
            };
            if trace {
                let task = wmx::bench::ParityTrace { fixtures: &fixtures, dtype };
                for (fixture, steps) in wmx::backend::dispatch(backend, task)?? {
                    if json {
                        println!("{}", serde_json::json!({ "fixture": fixture, "backend": backend.name(), "dtype": dtype, "steps": steps }));
                        continue;
                    }
                    println!("{fixture}: {} against cpu, {dtype:?}, each step from the cpu's input", backend.name());
                    for s in &steps {
                        println!(
                            "  {:<36} scaled {:.2e}  max |Δ| {:.2e}  differing {:5.1}%",
                            s.name,
                            s.distance.max_scaled,
                            s.distance.max_abs,
                            100.0 * s.differing
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let task = wmx::bench::ParityBench { fixtures: &fixtures, dtype };
            let checked = wmx::backend::dispatch(backend, task)??;
            let mut pass = true;
            for (p, ok) in &checked {
                pass &= ok;
                if json {
                    println!("{}", serde_json::json!({ "backend": backend.name(), "dtype": dtype, "pass": ok, "parity": p }));
                } else {
                    println!(
                        "{:<12} {} {:?}: vs f32 max |Δlogit| {:.2e} (scaled {:.2e}, f32 excess {:+.2e}); vs bf16 scaled {}; greedy tokens {} → {}",
                        p.fixture,
                        backend.name(),
                        dtype,
                        p.logits.max_abs,
                        p.logits.max_scaled,
                        p.logits.f32_excess,
                        p.logits_bf16.map_or("-".into(), |d| format!("{:.2e}", d.max_scaled)),
                        if p.greedy_equal { "equal" } else { "differ" },
                        if *ok { "pass" } else { "FAIL" }
                    );
                }
            }
            Ok(if pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Bench {
            what: BenchCommand::Kernels { dtype, backend, json },
        } => {
            let checks = wmx::backend::dispatch(backend, wmx::bench::KernelsBench { dtype })??;
            let mut pass = true;
            for c in &checks {
                pass &= c.pass;
                if json {
                    println!("{}", serde_json::json!({ "backend": backend.name(), "dtype": dtype, "check": c }));
                    continue;
                }
                let grads: Vec<String> = c.grads.iter().map(|(n, d)| format!("d{n} {d:.2e}")).collect();
                println!(
                    "{:<10} {:<18} {} {:?}: output {:.2e}, {} (bound {:.0e}) {}",
                    c.op,
                    format!("{:?}", c.shape),
                    backend.name(),
                    dtype,
                    c.output,
                    grads.join(", "),
                    c.bound,
                    if c.pass { "pass" } else { "FAIL" }
                );
            }
            Ok(if pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Bench {
            what: BenchCommand::Sandbox { seconds },
        } => {
            let rows = wmx::bench::sandbox(seconds)?;
            print!("{}", wmx::bench::table(&rows));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a timing task on `backend` and prints what it measured.
fn measure<T>(backend: config::Backend, task: T, json: bool) -> Result<ExitCode>
where
    T: wmx::backend::BackendTask<Output = Result<wmx::bench::Measured, String>>,
{
    let measured = wmx::backend::dispatch(backend, task)?.map_err(anyhow::Error::msg)?;
    print_measured(&measured, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_measured(m: &wmx::bench::Measured, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(m)?);
        return Ok(());
    }
    let mut rows = vec![wmx::bench::Row {
        name: format!("{} ({}, {}, {:.0}M parameters)", m.what, m.backend, m.dtype, m.parameters as f64 / 1e6),
        value: format!("{:.2} ms", m.median_s * 1e3),
        note: format!("median of {}; batch {} × {} tokens", m.seconds.len(), m.batch, m.seq),
    }];
    if let Some(t) = m.tokens_per_s {
        rows.push(wmx::bench::Row { name: "training throughput".into(), value: format!("{t:.0} tok/s"), note: String::new() });
    }
    if let Some(p) = &m.phases_s {
        let note = "median; the device synchronised after each phase".to_string();
        for (name, s) in [("forward + loss", p.forward), ("backward", p.backward), ("optimizer step", p.optimizer)] {
            rows.push(wmx::bench::Row { name: name.into(), value: format!("{:.2} ms", s * 1e3), note: note.clone() });
        }
    }
    print!("{}", wmx::bench::table(&rows));
    Ok(())
}

struct GenerateTask {
    dir: PathBuf,
    prompt: String,
    max_new_tokens: usize,
}

struct Generated {
    ids: Vec<u32>,
    text: String,
}

impl wmx::backend::BackendTask for GenerateTask {
    type Output = Result<Generated>;

    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Result<Generated> {
        use wmx::model::qwen3::Qwen3ForCausalLM;
        let (model, config) = Qwen3ForCausalLM::<B>::from_hf_dir(&self.dir, &device)?;
        let tokenizer = wmx::tokenize::TextTokenizer::from_file(&self.dir.join("tokenizer.json"))?;
        let prompt = tokenizer.encode(&self.prompt)?;
        let ids = model.generate(&prompt, self.max_new_tokens, &config.eos_ids(), &device);
        let text = tokenizer.decode(&ids)?;
        Ok(Generated { ids, text })
    }
}

fn is_curriculum_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("stages"))
}

fn validate(file: &Path, set: &[String]) -> Result<ExitCode> {
    if is_curriculum_file(file) {
        let curriculum = Curriculum::load(file)?;
        print_curriculum(&curriculum);
        println!("ok: {} is a valid curriculum", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = config::load(file, set)?;
    let e = &loaded.experiment;
    let curriculum = Curriculum::load(&e.curriculum).with_context(|| {
        format!(
            "{}: key `curriculum` names {}",
            loaded.path.display(),
            e.curriculum.display()
        )
    })?;
    let m = &e.model;
    println!("experiment  {}", loaded.name());
    if loaded.files.len() > 1 {
        let chain: Vec<String> = loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        println!("files       {}", chain.join(" extends "));
    }
    println!("backend     {:?}", e.backend);
    println!(
        "text        {:?} Qwen3, {} layers × {} hidden, {} heads ({} kv), {:?}",
        m.init,
        m.num_hidden_layers,
        m.hidden_size,
        m.num_attention_heads,
        m.num_key_value_heads,
        m.dtype
    );
    if let Some(checkpoint) = &m.checkpoint {
        let state = if checkpoint.join("config.json").is_file() {
            "found"
        } else {
            "not present on this machine"
        };
        println!("checkpoint  {} ({state})", checkpoint.display());
    }
    println!(
        "wat stream  {} segments × {} layers × {} hidden",
        e.fusion.layers.len(),
        e.wat.layers_per_segment,
        e.wat.hidden_size
    );
    println!(
        "fusion      before text layers {:?}, gate init {}",
        e.fusion.layers, e.fusion.gate_init
    );
    println!(
        "selection   op_match {} · layer_position {} · reasonableness {} · confidence {} (T = {})",
        e.selection.op_match,
        e.selection.layer_position,
        e.selection.reasonableness,
        e.selection.confidence,
        e.selection.temperature
    );
    println!(
        "sandbox     fuel {}, {} pages, {} ms, {} KiB stack, capabilities {:?}",
        e.sandbox.fuel,
        e.sandbox.memory_pages,
        e.sandbox.deadline_ms,
        e.sandbox.stack_kib,
        e.sandbox.capabilities
    );
    if !e.sweep.is_empty() {
        let members: usize = e.sweep.values().map(Vec::len).product();
        println!(
            "sweep       {} members over {}",
            members,
            e.sweep.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    print_curriculum(&curriculum);
    println!("ok: {} is a valid experiment", file.display());
    Ok(ExitCode::SUCCESS)
}

fn print_curriculum(c: &Curriculum) {
    println!("curriculum  {} ({})", c.name, c.path.display());
    for stage in &c.file.stages {
        let families: Vec<String> = stage.families.iter().map(|f| f.task.name()).collect();
        println!(
            "  stage {:<18} {:>5} examples × {:>2} epochs, replay {:.2}: {}",
            stage.name,
            stage.count,
            stage.epochs,
            stage.replay,
            families.join(", ")
        );
    }
}

fn parse_fields(raw: &[String]) -> Result<Fields> {
    let mut fields = Fields::default();
    for item in raw {
        let (name, field) = item.split_once('=').with_context(|| {
            format!("--field {item}: expected NAME=FIELD, e.g. question=prompt")
        })?;
        let slot = match name {
            "question" => &mut fields.question,
            "program" => &mut fields.program,
            "value" => &mut fields.value,
            "answer" => &mut fields.answer,
            other => anyhow::bail!(
                "--field {item}: unknown name `{other}`; use question, program, value or answer"
            ),
        };
        *slot = field.to_string();
    }
    Ok(fields)
}

fn data(
    curriculum: Option<&Path>,
    out: Option<PathBuf>,
    import_path: Option<&Path>,
    format: Option<Format>,
    fields: &[String],
    stage: Option<String>,
) -> Result<ExitCode> {
    let curriculum = curriculum.map(Curriculum::load).transpose()?;
    if let Some(path) = import_path {
        let format = format.context("--import needs --format worldmodel|jsonl")?;
        let fields = parse_fields(fields)?;
        let verifier = match &curriculum {
            Some(c) => c.sandboxes()?,
            None => {
                let policy = Policy::default();
                curriculum::Verifier {
                    pure: Sandbox::new(&policy)?,
                    system: Sandbox::new(&policy.with_system())?,
                }
            }
        };
        let stage = stage.unwrap_or_else(|| wmx::file_stem(path));
        let report = import::import_file(path, format, &fields, &stage, &verifier)?;
        for rejected in &report.rejected {
            println!(
                "{}:{}: rejected: {} — {:?}",
                path.display(),
                rejected.line,
                rejected.reason,
                rejected.question
            );
        }
        let out = out.unwrap_or_else(|| PathBuf::from("data/imported"));
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let kept_path = out.join(format!("{stage}.jsonl"));
        curriculum::write_jsonl(&kept_path, &report.kept)?;
        let rejected_path = out.join(format!("{stage}.rejected.jsonl"));
        let mut lines = Vec::new();
        for r in &report.rejected {
            serde_json::to_writer(&mut lines, r)?;
            lines.push(b'\n');
        }
        wmx::write_atomic(&rejected_path, &lines)
            .with_context(|| format!("cannot write {}", rejected_path.display()))?;
        let counts: Vec<String> = report
            .counts()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "{}: {} examples, kept {}, rejected {}{}",
            path.display(),
            report.kept.len() + report.rejected.len(),
            report.kept.len(),
            report.rejected.len(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts.join(", "))
            }
        );
        println!(
            "wrote {} and {}",
            kept_path.display(),
            rejected_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let curriculum =
        curriculum.context("give a curriculum file, or --import FILE --format worldmodel|jsonl")?;
    let dataset = curriculum.generate()?;
    let out = out.unwrap_or_else(|| PathBuf::from("data").join(&curriculum.name));
    let written = curriculum::write_dataset(&out, &dataset)?;
    println!(
        "{:<20} {:>6} {:>11} {:>6} {:>7} {:>7}",
        "stage", "train", "validation", "test", "epochs", "replay"
    );
    for stage in &dataset.stages {
        println!(
            "{:<20} {:>6} {:>11} {:>6} {:>7} {:>7.2}",
            stage.name,
            stage.train.len(),
            stage.validation.len(),
            stage.test.len(),
            stage.epochs,
            stage.replay
        );
    }
    for (path, split) in written.iter().zip(Split::ALL) {
        println!(
            "wrote {} ({} examples, all verified)",
            path.display(),
            dataset.examples(split).count()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(
    program: &Path,
    question: Option<&str>,
    raw_args: &[String],
    policy: &Policy,
    json: bool,
) -> Result<ExitCode> {
    let wat = std::fs::read_to_string(program)
        .with_context(|| format!("cannot read {}", program.display()))?;
    let args: Vec<Arg> = match question {
        Some(q) => wmx::sandbox::bind(q),
        None => raw_args.iter().map(|a| Arg::parse_cli(a)).collect(),
    };
    let sandbox = Sandbox::new(policy)?;
    let started = std::time::Instant::now();
    let outcome = sandbox.run(&wat, &args);
    let elapsed = started.elapsed();
    if json {
        let value = serde_json::json!({ "program": program, "args": args, "outcome": outcome, "ms": elapsed.as_secs_f64() * 1e3 });
        println!("{value}");
    } else {
        let shown: Vec<String> = args.iter().map(ToString::to_string).collect();
        println!("args     [{}]", shown.join(", "));
        println!("outcome  {outcome}");
        println!("time     {:.3} ms", elapsed.as_secs_f64() * 1e3);
    }
    Ok(if matches!(outcome, Outcome::Value(_)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
