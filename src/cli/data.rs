//! `wmx data`: a curriculum's verified splits as JSONL, or example files imported
//! and verified.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use wmx::curriculum::import::{self, Fields, Format};
use wmx::curriculum::{self, Curriculum, Split};
use wmx::sandbox::{Policy, Sandbox};
use wmx::tables::TextTable;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn exec(args: Args) -> Result<ExitCode> {
    let curriculum = args.curriculum.as_deref().map(Curriculum::load).transpose()?;
    match &args.import {
        Some(path) => import(&args, path, curriculum.as_ref()),
        None => generate(curriculum, args.out),
    }
}

fn import(args: &Args, path: &Path, curriculum: Option<&Curriculum>) -> Result<ExitCode> {
    let format = args.format.context("--import needs --format worldmodel|jsonl")?;
    let fields = parse_fields(&args.fields)?;
    let verifier = match curriculum {
        Some(c) => c.sandboxes()?,
        None => {
            let policy = Policy::default();
            curriculum::Verifier { pure: Sandbox::new(&policy)?, system: Sandbox::new(&policy.with_system())? }
        }
    };
    let stage = args.stage.clone().unwrap_or_else(|| wmx::fs::file_stem(path));
    let report = import::import_file(path, format, &fields, &stage, &verifier)?;
    for rejected in &report.rejected {
        println!("{}:{}: rejected: {} — {:?}", path.display(), rejected.line, rejected.reason, rejected.question);
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("data/imported"));
    let [kept_path, rejected_path] = report.write(&out, &stage)?;
    let counts: Vec<String> = report.counts().iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "{}: {} examples, kept {}, rejected {}{}",
        path.display(),
        report.kept.len() + report.rejected.len(),
        report.kept.len(),
        report.rejected.len(),
        if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) }
    );
    println!("wrote {} and {}", kept_path.display(), rejected_path.display());
    Ok(ExitCode::SUCCESS)
}

fn parse_fields(raw: &[String]) -> Result<Fields> {
    let mut fields = Fields::default();
    for item in raw {
        let (name, field) = item
            .split_once('=')
            .with_context(|| format!("--field {item}: expected NAME=FIELD, e.g. question=prompt"))?;
        let slot = match name {
            "question" => &mut fields.question,
            "program" => &mut fields.program,
            "value" => &mut fields.value,
            "answer" => &mut fields.answer,
            other => anyhow::bail!("--field {item}: unknown name `{other}`; use question, program, value or answer"),
        };
        *slot = field.to_string();
    }
    Ok(fields)
}

fn generate(curriculum: Option<Curriculum>, out: Option<PathBuf>) -> Result<ExitCode> {
    let curriculum = curriculum.context("give a curriculum file, or --import FILE --format worldmodel|jsonl")?;
    let dataset = curriculum.generate()?;
    let out = out.unwrap_or_else(|| PathBuf::from("data").join(&curriculum.name));
    let written = curriculum::write_dataset(&out, &dataset)?;
    let mut table = TextTable::new(["stage", "train", "validation", "test", "epochs", "replay"]).right(&[1, 2, 3, 4, 5]);
    for stage in &dataset.stages {
        table.row([
            stage.name.clone(),
            stage.train.len().to_string(),
            stage.validation.len().to_string(),
            stage.test.len().to_string(),
            stage.epochs.to_string(),
            format!("{:.2}", stage.replay),
        ]);
    }
    print!("{}", table.terminal());
    for (path, split) in written.iter().zip(Split::ALL) {
        println!("wrote {} ({} examples, all verified)", path.display(), dataset.examples(split).count());
    }
    Ok(ExitCode::SUCCESS)
}
