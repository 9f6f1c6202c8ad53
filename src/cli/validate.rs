//! `wmx validate`: checks an experiment (and its curriculum) or a curriculum file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use wmx::config;
use wmx::curriculum::Curriculum;

#[derive(clap::Args)]
pub struct Args {
    /// Experiment or curriculum TOML file.
    file: PathBuf,
    /// Override a key of an experiment: `--set train.batch_size=16` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn exec(args: Args) -> Result<ExitCode> {
    let file = &args.file;
    if wmx::curriculum::is_curriculum_file(file) {
        let curriculum = Curriculum::load(file)?;
        print!("{}", curriculum.describe());
        println!("ok: {} is a valid curriculum", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = config::load(file, &args.set)?;
    let prepared = wmx::run::preflight(&loaded)?;
    print!("{}", loaded.describe());
    print!("{}", prepared.curriculum.describe());
    println!("ok: {} is a valid experiment", file.display());
    Ok(ExitCode::SUCCESS)
}
