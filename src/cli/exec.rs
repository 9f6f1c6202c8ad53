//! `wmx exec`: one WAT program's `compute` in the sandbox.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;

use wmx::sandbox::{Arg, Outcome, Policy, Sandbox};

#[derive(clap::Args)]
pub struct Args {
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
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyKind {
    None,
    System,
}

impl Args {
    fn policy(&self) -> Policy {
        let mut policy = Policy::default();
        if let PolicyKind::System = self.policy {
            policy = policy.with_system();
        }
        policy.system.files = self.files.clone();
        if let Some(clock) = &self.clock {
            policy.system.clock = clock.clone();
        }
        if let Some(fuel) = self.fuel {
            policy.fuel = fuel;
        }
        if let Some(ms) = self.deadline_ms {
            policy.deadline_ms = ms;
        }
        policy
    }
}

pub fn exec(args: Args) -> Result<ExitCode> {
    let wat = std::fs::read_to_string(&args.program)
        .map_err(|e| super::BadInput(format!("{}: cannot read: {e}", args.program.display())))?;
    let bound: Vec<Arg> = match &args.question {
        Some(q) => wmx::sandbox::bind(q),
        None => args.args.iter().map(|a| Arg::parse_cli(a)).collect(),
    };
    let sandbox = Sandbox::new(&args.policy())?;
    let started = std::time::Instant::now();
    let outcome = sandbox.run(&wat, &bound);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if args.json {
        println!("{}", serde_json::json!({ "program": args.program, "args": bound, "outcome": outcome, "ms": ms }));
    } else {
        let shown: Vec<String> = bound.iter().map(ToString::to_string).collect();
        println!("args     [{}]", shown.join(", "));
        println!("outcome  {outcome}");
        println!("time     {ms:.3} ms");
    }
    // A program that does not compute a value (malformed, denied, trapped, out of
    // time) is bad input to `exec`: exit 2, naming the file.
    Ok(if matches!(outcome, Outcome::Value(_)) {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {}: {outcome}", args.program.display());
        ExitCode::from(2)
    })
}
