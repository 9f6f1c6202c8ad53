//! `wmx infer` (a trained run answers questions) and `wmx generate` (a Hugging Face
//! Qwen3 continues a prompt with its text stream alone).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use wmx::config::Backend;
use wmx::rundir::OpenedRun;

#[derive(clap::Args)]
pub struct InferArgs {
    /// Run directory (runs/<experiment>/<id>).
    run: PathBuf,
    /// Which checkpoint to load: latest, best (lowest validation loss) or step-N.
    #[arg(long, default_value = "latest", value_name = "latest|best|step-N")]
    checkpoint: wmx::rundir::checkpoint::Which,
    /// The question; without one, questions are read line by line from standard input.
    question: Option<String>,
    /// Print each answer as one JSON object.
    #[arg(long)]
    json: bool,
    /// Backend [default: the run's].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

pub fn infer(args: InferArgs) -> Result<ExitCode> {
    let opened = OpenedRun::open(&args.run, args.checkpoint)?;
    let backend = args.backend.unwrap_or(opened.experiment.backend);
    if backend != Backend::Cpu {
        wmx::run::signals::fail_fast_on_device_panics(None);
    }
    let task = wmx::infer::InferRun { run: &opened, question: args.question, json: args.json };
    wmx::backend::dispatch(backend, task)??;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct GenerateArgs {
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
    backend: Backend,
}

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let task = wmx::model::generate::Generate { dir: args.model, prompt: args.prompt, max_new_tokens: args.max_new_tokens };
    let generated = wmx::backend::dispatch(args.backend, task)??;
    if args.ids {
        let shown: Vec<String> = generated.ids.iter().map(u32::to_string).collect();
        println!("{}", shown.join(" "));
    } else {
        println!("{}", generated.text);
    }
    Ok(ExitCode::SUCCESS)
}
