//! The verbs of `wmx`, one file per group, each with its arguments (`Args`) and an
//! `exec` that calls the library and prints what it returns.

mod bench;
mod data;
mod eval;
mod exec;
mod export;
mod infer;
mod report;
mod run;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use wmx::config::ConfigError;
use wmx::curriculum::CurriculumError;
use wmx::model::ModelError;
use wmx::sandbox::SandboxError;
use wmx::tokenize::TokenizeError;

#[derive(Parser)]
#[command(
    name = "wmx",
    version,
    about = "Experiments with WASM WorldModels: language models that compute through a wasmtime sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only warnings and errors, not progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: -v for details, -vv for everything wmx logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl Cli {
    /// Progress and status lines go to standard output at the level -q/-v choose;
    /// `RUST_LOG` (e.g. `RUST_LOG=wmx=debug,burn=info`) overrides both.
    pub fn init_logging(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "warn,wmx=info",
            (false, 1) => "warn,wmx=debug",
            (false, _) => "info,wmx=trace",
        };
        env_logger::Builder::new()
            .parse_filters(level)
            .parse_env("RUST_LOG")
            .target(env_logger::Target::Stdout)
            .format(|out, record| match record.level() {
                log::Level::Info => writeln!(out, "{}", record.args()),
                level => writeln!(out, "{}: {}", level.as_str().to_lowercase(), record.args()),
            })
            .init();
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Check an experiment file (and its curriculum) or a curriculum file without running anything.
    Validate(validate::Args),
    /// Generate a curriculum's verified train/validation/test JSONL, or import and verify example files.
    Data(data::Args),
    /// Run a WAT program's `compute` in the sandbox.
    Exec(exec::Args),
    /// Train an experiment through its curriculum, checkpointing and resuming by itself, then evaluate it.
    Run(run::RunArgs),
    /// Answer a question with a trained run, showing each exit's program, outcome and score.
    Infer(infer::InferArgs),
    /// Evaluate a trained run on its test split or a JSONL file, with per-exit specialization.
    Eval(eval::Args),
    /// Export a run's checkpoint: the text stream as a Hugging Face directory, the WorldModel as safetensors.
    Export(export::Args),
    /// Draw a run's report: RUN/report/index.html, report.md, charts (PNG, SVG) and tables.
    Report(report::ReportArgs),
    /// Run every member of an experiment's [sweep] (unfinished ones only), then compare them.
    Sweep(run::SweepArgs),
    /// Compare runs (or a sweep's members) into reports/<name>/: differing config keys, metrics, curves.
    Compare(report::CompareArgs),
    /// List the runs under ./runs with their status, steps and test accuracy.
    Ls(report::LsArgs),
    /// Greedy generation with the text stream alone from a Hugging Face Qwen3 directory.
    Generate(infer::GenerateArgs),
    /// Print benchmark tables.
    Bench {
        #[command(subcommand)]
        what: bench::Command,
    },
}

/// Runs one verb.
pub fn exec(command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate(args) => validate::exec(args),
        Command::Data(args) => data::exec(args),
        Command::Exec(args) => exec::exec(args),
        Command::Run(args) => run::run(args),
        Command::Infer(args) => infer::infer(args),
        Command::Eval(args) => eval::exec(args),
        Command::Export(args) => export::exec(args),
        Command::Report(args) => report::report(args),
        Command::Sweep(args) => run::sweep(args),
        Command::Compare(args) => report::compare(args),
        Command::Ls(args) => report::ls(args),
        Command::Generate(args) => infer::generate(args),
        Command::Bench { what } => bench::exec(what),
    }
}

/// Input a verb refuses (a file it cannot read, say): exit 2 with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The exit code of a failed command: 2 for bad input (files that are missing,
/// malformed or out of range), 1 for anything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(is_bad_input) { 2 } else { 1 }
}

fn is_bad_input(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.downcast_ref::<ConfigError>().is_some()
        || cause.downcast_ref::<BadInput>().is_some()
        || matches!(
            cause.downcast_ref::<CurriculumError>(),
            Some(CurriculumError::Read { .. } | CurriculumError::Invalid { .. } | CurriculumError::Import { .. })
        )
        || matches!(
            cause.downcast_ref::<SandboxError>(),
            Some(SandboxError::Policy { .. } | SandboxError::Files { .. })
        )
        || matches!(cause.downcast_ref::<ModelError>(), Some(e) if !matches!(e, ModelError::Tensor(_)))
        || matches!(cause.downcast_ref::<TokenizeError>(), Some(TokenizeError::Load { .. } | TokenizeError::TooLong { .. }))
        || cause.downcast_ref::<wmx::backend::MissingBackend>().is_some()
        || cause.downcast_ref::<wmx::rundir::RunError>().is_some()
        || cause.downcast_ref::<wmx::eval::EvalInputError>().is_some()
}
