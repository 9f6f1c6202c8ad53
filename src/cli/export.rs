//! `wmx export`: a trained run's checkpoint as a Hugging Face directory (the text
//! stream) beside the whole WorldModel's safetensors and its description.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use wmx::rundir::OpenedRun;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory (runs/<experiment>/<id>).
    run: PathBuf,
    /// Directory to write: config.json, model.safetensors and tokenizer.json (the
    /// text stream, for transformers), worldmodel.safetensors and worldmodel.json.
    #[arg(long)]
    out: PathBuf,
    /// Which checkpoint to export: latest, best (lowest validation loss) or step-N.
    #[arg(long, default_value = "latest", value_name = "latest|best|step-N")]
    checkpoint: wmx::rundir::checkpoint::Which,
}

pub fn exec(args: Args) -> Result<ExitCode> {
    let opened = OpenedRun::open(&args.run, args.checkpoint)?;
    let exported = wmx::rundir::export::export(&opened, &args.out)?;
    println!(
        "exported {} at step {} to {}: the text stream as a Hugging Face directory, and the WorldModel \
         ({} tensors, {} parameters) as worldmodel.safetensors",
        opened.dir.label(),
        exported.step,
        exported.dir.display(),
        exported.tensors,
        exported.parameters
    );
    Ok(ExitCode::SUCCESS)
}
