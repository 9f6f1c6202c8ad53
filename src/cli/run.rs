//! `wmx run` and `wmx sweep`: train experiments, resuming what is unfinished.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use wmx::config::{self, Backend};
use wmx::run::sweep::{self, SweepOutcome, SweepRecord};
use wmx::run::Outcome;

#[derive(clap::Args)]
pub struct RunArgs {
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
    backend: Option<Backend>,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let loaded = config::load(&args.file, &args.set)?;
    let backend = args.backend.unwrap_or(loaded.experiment.backend);
    Ok(match wmx::run::run(&loaded, Path::new("."), args.fresh, backend)? {
        Outcome::AlreadyComplete { dir, accuracy } => {
            println!(
                "{} is already complete (accuracy {}); use --fresh to train again",
                dir.display(),
                accuracy.map_or("unknown".into(), |a| format!("{a:.4}"))
            );
            ExitCode::SUCCESS
        }
        Outcome::Finished { dir, accuracy } => {
            println!("finished {}: accuracy {accuracy:.4}", dir.display());
            ExitCode::SUCCESS
        }
        Outcome::Interrupted { dir } => {
            println!("interrupted; {} keeps the checkpoint — run the same command to resume", dir.display());
            ExitCode::from(130)
        }
    })
}

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Experiment TOML file with a [sweep] table.
    file: PathBuf,
    /// Members run at once, each its own process.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run every member at this many seeds (the experiment's seed and the next ones):
    /// the comparison groups them and tests their differences.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: Option<u64>,
    /// Override a key in every member (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Backend [default: the experiment's].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

pub fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let (outcome, dir) = sweep::run_sweep(&args.file, &args.set, args.seeds.map(|n| n as usize), args.jobs, args.backend, Path::new("."))?;
    let record = SweepRecord::read(&dir)?;
    for m in &record.members {
        let values: Vec<String> = m.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<12} {:>9}  {}",
            m.status,
            m.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
            values.join(" ")
        );
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("sweep");
    println!("sweep recorded in {}; comparison in reports/{name}/", dir.display());
    Ok(match outcome {
        SweepOutcome::Complete => ExitCode::SUCCESS,
        SweepOutcome::Interrupted => {
            println!("not every member finished: run the same command to continue");
            ExitCode::from(130)
        }
        SweepOutcome::Failed => ExitCode::from(1),
    })
}
