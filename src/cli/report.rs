//! `wmx report`, `wmx compare` and `wmx ls`: what runs produced, drawn, set side by
//! side and listed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use wmx::compare::RunFacts;
use wmx::rundir::list::{list_runs, runs_table};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Run directory (runs/<experiment>/<id>).
    run: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let written = wmx::report::report(&args.run)?;
    println!("{} charts ({}), {} tables", written.charts.len(), written.charts.join(", "), written.tables.len());
    println!("wrote {}", written.dir.join("index.html").display());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Run directories, or one sweep directory (sweeps/<name>).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Report name [default: the sweep's name, else `compare`].
    #[arg(long)]
    name: Option<String>,
}

pub fn compare(args: CompareArgs) -> Result<ExitCode> {
    let mut dirs = Vec::new();
    for r in &args.runs {
        dirs.extend(wmx::run::sweep::runs_of(r)?);
    }
    let facts = dirs.iter().map(|d| RunFacts::read(d)).collect::<Result<Vec<_>>>()?;
    let name = args.name.unwrap_or_else(|| match args.runs.as_slice() {
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

#[derive(clap::Args)]
pub struct LsArgs {
    /// Directory holding `runs/` [default: the current one].
    #[arg(default_value = ".")]
    root: PathBuf,
    /// One JSON object per run.
    #[arg(long)]
    json: bool,
}

pub fn ls(args: LsArgs) -> Result<ExitCode> {
    let rows = list_runs(&args.root);
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else if rows.is_empty() {
        println!("no runs under {}", args.root.join("runs").display());
    } else {
        print!("{}", runs_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
