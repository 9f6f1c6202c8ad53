//! `wmx eval`: a trained run through the whole path on a split or a JSONL file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;

use wmx::config::Backend;
use wmx::curriculum::Split;
use wmx::eval::{EvalData, EvalRun, JsonlFields};
use wmx::infer::Ablation;
use wmx::rundir::OpenedRun;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory (runs/<experiment>/<id>).
    run: PathBuf,
    /// Which checkpoint to load: latest, best (lowest validation loss) or step-N.
    #[arg(long, default_value = "latest", value_name = "latest|best|step-N")]
    checkpoint: wmx::rundir::checkpoint::Which,
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
    ablate: Option<Ablation>,
    /// Compare numbers after rounding to this many decimals [default: the expected answer's].
    #[arg(long)]
    decimals: Option<u32>,
    /// Output directory [default: RUN/eval/, or RUN/eval/<data>[-<ablation>]/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Questions answered together [default: the experiment's eval.batch_size; unset, 16 on the CPU, 128 on a GPU].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Backend [default: the run's].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Validation,
    Test,
}

pub fn exec(args: Args) -> Result<ExitCode> {
    let opened = OpenedRun::open(&args.run, args.checkpoint)?;
    let backend = args.backend.unwrap_or(opened.experiment.backend);
    if backend != Backend::Cpu {
        wmx::run::signals::fail_fast_on_device_panics(None);
    }
    let data = match args.data {
        Some(path) => EvalData::Jsonl {
            path,
            fields: JsonlFields { question: args.question_field, answer: args.answer_field, op: args.op_field },
        },
        None => EvalData::Split(match args.split {
            Some(SplitArg::Train) => Split::Train,
            Some(SplitArg::Validation) => Split::Validation,
            Some(SplitArg::Test) | None => Split::Test,
        }),
    };
    let task = EvalRun {
        run: &opened,
        data,
        ablation: args.ablate.unwrap_or(Ablation::None),
        decimals: args.decimals,
        out: args.out,
        batch: args.batch.map(|b| b as usize),
    };
    let (summary, out) = wmx::backend::dispatch(backend, task)??;
    print!("{}", summary.describe());
    println!("wrote {}", out.display());
    println!("accuracy {:.4} ({}/{})", summary.accuracy, summary.correct, summary.total);
    Ok(ExitCode::SUCCESS)
}
