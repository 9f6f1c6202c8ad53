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
    /// Start from another run's weights (and tokenizer), with a fresh optimizer and
    /// schedule: RUN or RUN:CHECKPOINT (latest, best or step-N). Sets [train.init_from].
    #[arg(long, value_name = "RUN[:CHECKPOINT]", conflicts_with = "continue_run")]
    init_from: Option<String>,
    /// Continue a run (a finished one too) from its latest checkpoint: weights,
    /// optimizer, place in the curriculum and metrics, under this experiment's epochs
    /// (raise train.epoch_scale for more). Sets [train.init_from] with state = "all".
    #[arg(long = "continue", value_name = "RUN")]
    continue_run: Option<PathBuf>,
    /// Train on this many GPUs of this host, one process each, their gradients
    /// summed through NCCL (CUDA). Sets train.devices.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    devices: Option<u64>,
}

/// `--init-from RUN[:CHECKPOINT]` and `--continue RUN` as the `--set` overrides of
/// `[train.init_from]` they stand for.
fn init_overrides(args: &RunArgs) -> Result<Vec<String>> {
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    Ok(match (&args.init_from, &args.continue_run) {
        (Some(spec), _) => {
            // RUN:CHECKPOINT when what follows the last colon names a checkpoint.
            let (run, which) = match spec.rsplit_once(':') {
                Some((run, which)) if which.parse::<wmx::rundir::checkpoint::Which>().is_ok() => (run, which),
                _ => (spec.as_str(), "latest"),
            };
            vec![
                format!("train.init_from.run={}", quoted(Path::new(run))),
                format!("train.init_from.checkpoint=\"{which}\""),
                "train.init_from.state=\"weights\"".into(),
            ]
        }
        (None, Some(run)) => vec![
            format!("train.init_from.run={}", quoted(run)),
            "train.init_from.checkpoint=\"latest\"".into(),
            "train.init_from.state=\"all\"".into(),
        ],
        (None, None) => Vec::new(),
    })
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let mut set = args.set.clone();
    set.extend(init_overrides(&args)?);
    if let Some(n) = args.devices {
        set.push(format!("train.devices={n}"));
    }
    let loaded = config::load(&args.file, &set)?;
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
        Outcome::Rank { dir, rank, finished } => {
            eprintln!("rank {rank} of {} {}", dir.display(), if finished { "finished training" } else { "stopped" });
            if finished { ExitCode::SUCCESS } else { ExitCode::from(130) }
        }
    })
}

/// Where a sweep's members run.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LauncherKind {
    /// Here, each member its own process (`--jobs` at once).
    Local,
    /// A Slurm job array (`sbatch`), one task per unfinished member.
    Slurm,
}

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Experiment TOML file with a [sweep] table.
    file: PathBuf,
    /// Members run at once, each its own process (local launcher).
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
    /// Where the members run.
    #[arg(long, value_enum, default_value = "local")]
    launcher: LauncherKind,
    /// Slurm partition (slurm launcher).
    #[arg(long)]
    partition: Option<String>,
    /// GPUs each member asks Slurm for (slurm launcher).
    #[arg(long, value_name = "N")]
    gpus_per_member: Option<u32>,
    /// Each member's time limit on Slurm, HH:MM; SIGTERM two minutes before it
    /// checkpoints the run (slurm launcher).
    #[arg(long, value_name = "HH:MM")]
    time: Option<String>,
    /// Show each member's state (run directory and scheduler) instead of running;
    /// once every member is complete, write the comparison.
    #[arg(long)]
    status: bool,
}

pub fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let spec = sweep::SweepSpec {
        file: &args.file,
        overrides: &args.set,
        seeds: args.seeds.map(|n| n as usize),
        backend: args.backend,
        root: Path::new("."),
    };
    if args.status {
        let (states, complete) = sweep::sweep_status(&spec)?;
        let mut table = wmx::tables::TextTable::new(["member", "status", "scheduler", "accuracy", "run"]).right(&[3]);
        for s in &states {
            table.row([
                s.label.clone(),
                s.status.clone(),
                s.scheduler.clone(),
                s.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
                s.run.display().to_string(),
            ]);
        }
        print!("{}", table.terminal());
        if complete {
            println!("every member is complete; comparison written");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let launcher = match args.launcher {
        LauncherKind::Local => sweep::Launcher::Local { jobs: args.jobs },
        LauncherKind::Slurm => sweep::Launcher::Slurm(wmx::run::slurm::SlurmOptions {
            partition: args.partition.clone(),
            gpus_per_member: args.gpus_per_member,
            time: args.time.clone(),
        }),
    };
    let (outcome, dir) = sweep::run_sweep(&spec, &launcher)?;
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
    Ok(match outcome {
        SweepOutcome::Submitted { job } => {
            println!("submitted as Slurm job {job}; `wmx sweep {} --status` follows it and compares the members once all are complete", args.file.display());
            ExitCode::SUCCESS
        }
        SweepOutcome::Complete => {
            println!("sweep recorded in {}; comparison in reports/{name}/", dir.display());
            ExitCode::SUCCESS
        }
        SweepOutcome::Interrupted => {
            println!("sweep recorded in {}; comparison in reports/{name}/", dir.display());
            println!("not every member finished: run the same command to continue");
            ExitCode::from(130)
        }
        SweepOutcome::Failed => ExitCode::from(1),
    })
}
