//! The benchmark mode: answer a set of questions through the whole path (or with a
//! part taken away), score the answers, and measure how each exit specialises —
//! which operation it emits for which operation a question needs.
//!
//! Writes `predictions.parquet` / `.csv` (one row per question × exit),
//! `answers.jsonl` (every answer with its provenance) and `summary.json`.

mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use polars::prelude::{Column, DataFrame};
use serde_json::{Value, json};

use crate::curriculum::{Dataset, Split};
use crate::infer::{Ablation, Answer, Answerer, answer_matches, intent};
use crate::model::world::WorldModel;
use crate::rundir::summary::Summary;
use summary::summarize;
pub use summary::mutual_information;
use crate::sandbox::Outcome;

/// Evaluation input that cannot be used: a data file, a field, an ablation.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct EvalInputError {
    pub at: String,
    pub message: String,
}

fn input_error(at: impl Into<String>, message: impl Into<String>) -> anyhow::Error {
    EvalInputError {
        at: at.into(),
        message: message.into(),
    }
    .into()
}

/// One question to answer, with what a right answer says.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub id: String,
    /// Curriculum stage, or the data file's name.
    pub stage: String,
    pub question: String,
    pub expected: String,
    /// The operation the question needs (the task family, or its intent).
    pub op: String,
}

/// A curriculum split as questions.
pub fn curriculum_questions(dataset: &Dataset, split: Split) -> Vec<Question> {
    dataset
        .examples(split)
        .map(|x| Question {
            id: x.id.clone(),
            stage: x.stage.clone(),
            question: x.question.clone(),
            expected: x.answer.clone(),
            op: x.op.clone(),
        })
        .collect()
}

/// Which JSONL fields hold the question, the answer and (optionally) the operation.
#[derive(Debug, Clone)]
pub struct JsonlFields {
    pub question: String,
    pub answer: String,
    pub op: Option<String>,
}

/// Questions from a JSONL file; answers may be numbers or strings. Without an
/// operation field, the operation is the question's intent (or `unknown`).
pub fn jsonl_questions(
    path: &Path,
    fields: &JsonlFields,
    intents: &[crate::config::Intent],
) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(path.display().to_string(), format!("cannot read: {e}")))?;
    let stage = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("data")
        .to_string();
    let mut questions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let row: Value = serde_json::from_str(line)
            .map_err(|e| input_error(at(), format!("not JSON: {e}")))?;
        let field = |name: &str| -> Result<String> {
            match row.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n
                    .as_f64()
                    .map(crate::sandbox::format_value)
                    .unwrap_or_else(|| n.to_string())),
                Some(Value::Bool(b)) => Ok(if *b { "Yes." } else { "No." }.to_string()),
                Some(other) => Err(input_error(
                    at(),
                    format!("field `{name}` is {other}, not a string or number"),
                )),
                None => Err(input_error(
                    at(),
                    format!(
                        "no field `{name}` (fields: {})",
                        row.as_object()
                            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                )),
            }
        };
        let question = field(&fields.question)?;
        let op = match &fields.op {
            Some(name) => field(name)?,
            None => intent(&question, intents).unwrap_or("unknown").to_string(),
        };
        questions.push(Question {
            id: format!("{stage}/{i:05}"),
            stage: stage.clone(),
            expected: field(&fields.answer)?,
            question,
            op,
        });
    }
    if questions.is_empty() {
        return Err(input_error(path.display().to_string(), "holds no questions"));
    }
    Ok(questions)
}

/// A program's operation signature: its instructions without operands, locals or
/// constants, consecutive repeats collapsed (a min over 3 or 6 items reads the same).
pub fn signature(program: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for word in program.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        let keep = word.contains('.')
            && !word.starts_with('"')
            && !word.starts_with('$')
            && !word.starts_with("local.")
            && !word.ends_with(".const")
            || matches!(word, "loop" | "if" | "else" | "call" | "br_if" | "select");
        if keep && out.last() != Some(&word) {
            out.push(word);
        }
    }
    out.join(" ")
}

/// Names the operation an emitted program performs, by matching its signature
/// against the programs of a curriculum's families.
#[derive(Debug, Clone, Default)]
pub struct OperationTable {
    by_signature: HashMap<String, String>,
}

impl OperationTable {
    /// From a curriculum's training examples: each family's program signatures.
    pub fn from_dataset(dataset: &Dataset) -> OperationTable {
        let mut by_signature = HashMap::new();
        for x in dataset.examples(Split::Train) {
            by_signature
                .entry(signature(&x.program))
                .or_insert_with(|| x.op.clone());
        }
        OperationTable { by_signature }
    }

    /// The family whose programs this one matches; `invalid` when it did not run,
    /// `other` when it runs but matches no family.
    pub fn classify(&self, program: &str, outcome: &Outcome) -> String {
        if matches!(outcome, Outcome::Invalid(_)) {
            return "invalid".into();
        }
        self.by_signature
            .get(&signature(program))
            .cloned()
            .unwrap_or_else(|| "other".into())
    }
}

/// Whether a computed value is the expected answer (yes/no answers are 1 / 0).
pub fn value_matches(value: f64, expected: &str, decimals: Option<u32>) -> bool {
    match expected.trim().trim_end_matches('.').to_lowercase().as_str() {
        "yes" => value == 1.0,
        "no" => value == 0.0,
        _ => answer_matches(&crate::sandbox::format_value(value), expected, decimals),
    }
}

/// How an evaluation runs and where it writes.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub ablation: Ablation,
    /// Answers match after rounding to this many decimals (default: the expected answer's).
    pub decimals: Option<u32>,
    /// Name of the data (`test`, or the JSONL file's stem).
    pub data: String,
    pub out: PathBuf,
    /// Questions answered together.
    pub batch: usize,
}

/// One question's answer and how it scored.
struct Scored {
    question: Question,
    answer: Answer,
    correct: bool,
    exit_correct: Vec<bool>,
    emitted: Vec<String>,
}

/// The evaluation was asked to stop (a signal) before its last question.
#[derive(Debug, thiserror::Error)]
#[error("evaluation stopped after {done} of {total} questions")]
pub struct Stopped {
    pub done: usize,
    pub total: usize,
}

/// Answers every question, writes the tables and `summary.json` into `options.out`,
/// and returns the summary. `progress` hears of each answered question and says
/// whether to go on; when it says no, nothing is written and the error is
/// [`Stopped`].
pub fn evaluate<B: Backend>(
    model: &WorldModel<B>,
    answerer: &Answerer<'_>,
    questions: &[Question],
    table: &OperationTable,
    options: &EvalOptions,
    device: &B::Device,
    mut progress: impl FnMut(usize, usize) -> bool,
) -> Result<Summary> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let mut scored = Vec::with_capacity(questions.len());
    let batches: Vec<&[Question]> = questions.chunks(options.batch.max(1)).collect();
    // On the CPU, batches are answered side by side, each on one thread of its own
    // (a batch's decoding steps are too small to share well between threads); a
    // batch's answers are the same on any thread. A GPU answers one at a time.
    let together = if crate::backend::runs_on_host::<B>() { rayon::current_num_threads().max(1) } else { 1 };
    for group in batches.chunks(together) {
        let answered = crate::backend::on_threads(group.len(), |i| {
            let wordings: Vec<&str> = group[i].iter().map(|q| q.question.as_str()).collect();
            answerer.answer_all(model, &wordings, options.ablation, device)
        });
        for (q, answer) in group.iter().flat_map(|batch| batch.iter()).zip(answered.into_iter().flatten()) {
            let answer = answer.with_context(|| format!("answering {}", q.id))?;
            let correct = answer_matches(&answer.text, &q.expected, options.decimals);
            let exit_correct = answer
                .candidates
                .iter()
                .map(|c| {
                    c.outcome
                        .value()
                        .is_some_and(|v| value_matches(v, &q.expected, options.decimals))
                })
                .collect();
            let emitted = answer
                .candidates
                .iter()
                .map(|c| table.classify(&c.program, &c.outcome))
                .collect();
            scored.push(Scored {
                question: q.clone(),
                answer,
                correct,
                exit_correct,
                emitted,
            });
        }
        let done = scored.len();
        if !progress(done, questions.len()) && done < questions.len() {
            return Err(Stopped { done, total: questions.len() }.into());
        }
    }
    write_predictions(&scored, &options.out)?;
    let lines: Vec<String> = scored
        .iter()
        .map(|s| {
            json!({ "id": s.question.id, "expected": s.question.expected, "correct": s.correct, "answer": s.answer })
                .to_string()
        })
        .collect();
    crate::fs::write_atomic(
        &options.out.join("answers.jsonl"),
        (lines.join("\n") + "\n").as_bytes(),
    )?;
    let summary = summarize(&scored, model, options);
    summary
        .write(&options.out)
        .with_context(|| format!("cannot write {}/summary.json", options.out.display()))?;
    Ok(summary)
}

fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Value(_) => "value",
        Outcome::Trap(_) => "trap",
        Outcome::Invalid(_) => "invalid",
        Outcome::Mismatch(_) => "mismatch",
        Outcome::Denied(_) => "denied",
    }
}

/// `predictions.parquet` and `.csv`: one row per question × exit (one row per
/// question, with null program columns, when no exit ran).
fn write_predictions(scored: &[Scored], out: &Path) -> Result<()> {
    let mut id = Vec::new();
    let mut stage = Vec::new();
    let mut question = Vec::new();
    let mut expected = Vec::new();
    let mut needed = Vec::new();
    let mut exit: Vec<Option<u32>> = Vec::new();
    let mut layer: Vec<Option<u32>> = Vec::new();
    let mut program: Vec<Option<String>> = Vec::new();
    let mut operations: Vec<Option<String>> = Vec::new();
    let mut emitted: Vec<Option<String>> = Vec::new();
    let mut outcome: Vec<Option<String>> = Vec::new();
    let mut detail: Vec<Option<String>> = Vec::new();
    let mut value: Vec<Option<f64>> = Vec::new();
    let mut score: [Vec<Option<f64>>; 5] = Default::default();
    let mut probability: Vec<Option<f64>> = Vec::new();
    let mut selected = Vec::new();
    let mut correct: Vec<Option<bool>> = Vec::new();
    let mut answer = Vec::new();
    let mut answer_correct = Vec::new();
    let mut provenance = Vec::new();
    for s in scored {
        let mut push_question = || {
            id.push(s.question.id.clone());
            stage.push(s.question.stage.clone());
            question.push(s.question.question.clone());
            expected.push(s.question.expected.clone());
            needed.push(s.question.op.clone());
            answer.push(s.answer.text.clone());
            answer_correct.push(s.correct);
            provenance.push(s.answer.provenance.as_str());
        };
        if s.answer.candidates.is_empty() {
            push_question();
            exit.push(None);
            layer.push(None);
            program.push(None);
            operations.push(None);
            emitted.push(None);
            outcome.push(None);
            detail.push(None);
            value.push(None);
            for column in &mut score {
                column.push(None);
            }
            probability.push(None);
            selected.push(false);
            correct.push(None);
            continue;
        }
        for (k, c) in s.answer.candidates.iter().enumerate() {
            push_question();
            exit.push(Some(c.exit as u32));
            layer.push(Some(c.layer as u32));
            program.push(Some(c.program.clone()));
            operations.push(Some(c.operations.join(" ")));
            emitted.push(Some(s.emitted[k].clone()));
            outcome.push(Some(outcome_kind(&c.outcome).to_string()));
            detail.push(match &c.outcome {
                Outcome::Value(_) => None,
                other => Some(other.to_string()),
            });
            value.push(c.outcome.value());
            let terms = [
                c.scores.op_match,
                c.scores.layer_position,
                c.scores.reasonableness,
                c.scores.confidence,
                c.scores.total,
            ];
            for (column, t) in score.iter_mut().zip(terms) {
                column.push(Some(t));
            }
            probability.push(Some(c.probability));
            selected.push(s.answer.selected == Some(k));
            correct.push(Some(s.exit_correct[k]));
        }
    }
    let [op_match, layer_position, reasonableness, confidence, total] = score;
    let mut frame = DataFrame::new_infer_height(vec![
        Column::new("id".into(), id),
        Column::new("stage".into(), stage),
        Column::new("question".into(), question),
        Column::new("expected".into(), expected),
        Column::new("needed_op".into(), needed),
        Column::new("exit".into(), exit),
        Column::new("layer".into(), layer),
        Column::new("program".into(), program),
        Column::new("operations".into(), operations),
        Column::new("emitted_op".into(), emitted),
        Column::new("outcome".into(), outcome),
        Column::new("detail".into(), detail),
        Column::new("value".into(), value),
        Column::new("op_match".into(), op_match),
        Column::new("layer_position".into(), layer_position),
        Column::new("reasonableness".into(), reasonableness),
        Column::new("confidence".into(), confidence),
        Column::new("score".into(), total),
        Column::new("probability".into(), probability),
        Column::new("selected".into(), selected),
        Column::new("correct".into(), correct),
        Column::new("answer".into(), answer),
        Column::new("answer_correct".into(), answer_correct),
        Column::new("provenance".into(), provenance),
    ])?;
    crate::tables::write_parquet(&mut frame, &out.join("predictions.parquet"))?;
    crate::tables::write_csv(&mut frame, &out.join("predictions.csv"))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_ignore_operands_and_list_length() {
        let sub = |a: &str, b: &str| format!("(module (func (export \"compute\") (param ${a} f64) (param ${b} f64) (result f64) local.get $a local.get $b f64.sub))");
        assert_eq!(signature(&sub("a", "b")), "f64.sub");
        assert_eq!(signature(&sub("b", "a")), signature(&sub("a", "b")));
        let min = |n: usize| {
            let mut p = String::from("(module (func (export \"compute\") (result f64) local.get $x0");
            for i in 1..n {
                p.push_str(&format!(" local.get $x{i} f64.min"));
            }
            p + "))"
        };
        assert_eq!(signature(&min(3)), signature(&min(6)));
        assert_ne!(signature(&min(3)), signature(&sub("a", "b")));
    }

    #[test]
    fn mutual_information_is_zero_for_independent_and_full_for_identical_labels() {
        let same = [("add", "add"), ("sub", "sub"), ("add", "add"), ("sub", "sub")];
        assert!((mutual_information(&same) - 1.0).abs() < 1e-12);
        let independent = [("add", "add"), ("add", "sub"), ("sub", "add"), ("sub", "sub")];
        assert!(mutual_information(&independent).abs() < 1e-12);
    }

    #[test]
    fn values_match_numbers_and_yes_no() {
        assert!(value_matches(1.0, "Yes.", None));
        assert!(!value_matches(0.0, "Yes.", None));
        assert!(value_matches(160.77999999999997, "The answer is 160.78.", None));
        assert!(!value_matches(160.7, "The answer is 160.78.", None));
    }

    #[test]
    fn jsonl_questions_name_the_missing_field_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quiz.jsonl");
        std::fs::write(&path, "{\"q\": \"What is 2 + 3?\", \"a\": 5}\n{\"q\": \"What is 7 - 1?\"}\n").unwrap();
        let fields = JsonlFields { question: "q".into(), answer: "a".into(), op: None };
        let table = crate::config::default_intents();
        let err = jsonl_questions(&path, &fields, &table).unwrap_err().to_string();
        assert!(err.contains("quiz.jsonl:2") && err.contains("`a`"), "{err}");
        std::fs::write(&path, "{\"q\": \"What is 2 + 3?\", \"a\": 5}\n").unwrap();
        let qs = jsonl_questions(&path, &fields, &table).unwrap();
        assert_eq!((qs[0].expected.as_str(), qs[0].op.as_str(), qs[0].stage.as_str()), ("5", "add", "quiz"));
    }
}

/// Where `wmx eval` reads its questions.
#[derive(Debug, Clone)]
pub enum EvalData {
    /// A split of the run's curriculum.
    Split(Split),
    /// A JSONL file.
    Jsonl { path: PathBuf, fields: JsonlFields },
}

/// `wmx eval`: a run's model over a curriculum split or a JSONL file.
pub struct EvalRun<'a> {
    pub run: &'a crate::rundir::OpenedRun,
    pub data: EvalData,
    pub ablation: Ablation,
    pub decimals: Option<u32>,
    /// Default: `RUN/eval/` for the run's own evaluation split with nothing ablated,
    /// else `RUN/eval/<data>[-<ablation>]/`.
    pub out: Option<PathBuf>,
    /// Questions answered together [default: `eval.batch_size`, else by backend].
    pub batch: Option<usize>,
}

impl crate::backend::BackendTask for EvalRun<'_> {
    /// The summary and the directory it was written to.
    type Output = Result<(Summary, PathBuf)>;

    fn run<B: Backend>(self, device: B::Device) -> Result<(Summary, PathBuf)> {
        let e = &self.run.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype).map_err(anyhow::Error::msg)?;
        let dataset = crate::curriculum::Curriculum::load(&e.curriculum)?.generate()?;
        let (questions, name) = match &self.data {
            EvalData::Split(split) => (curriculum_questions(&dataset, *split), split.name().to_string()),
            EvalData::Jsonl { path, fields } => (
                jsonl_questions(path, fields, &e.selection.intents)?,
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("data")
                    .to_string(),
            ),
        };
        let exits = e.fusion.layers.len();
        if let Ablation::Exit(k) = self.ablation
            && k >= exits
        {
            return Err(input_error(
                format!("--ablate exit={k}"),
                format!("the model has exits 0 to {}", exits - 1),
            ));
        }
        let own_split = matches!(self.data, EvalData::Split(s) if s.name() == e.eval.split);
        let out = self.out.clone().unwrap_or_else(|| {
            let eval = self.run.dir.path.join("eval");
            match (own_split, self.ablation) {
                (true, Ablation::None) => eval,
                (_, Ablation::None) => eval.join(&name),
                (_, ablation) => eval.join(format!("{name}-{}", ablation.to_string().replace('=', "-"))),
            }
        });
        let model = self.run.model::<B>(&device)?;
        let sandbox = crate::sandbox::Sandbox::new(&e.sandbox)?;
        let wat = crate::tokenize::wat::WatVocab::new();
        let answerer = crate::infer::Answerer::from_experiment(e, &self.run.tokenizer, &wat, &sandbox);
        let options = EvalOptions {
            ablation: self.ablation,
            decimals: self.decimals.or(e.eval.decimals),
            data: name,
            out: out.clone(),
            batch: self.batch.unwrap_or_else(|| e.eval.batch(crate::backend::runs_on_host::<B>())),
        };
        let bar = indicatif::ProgressBar::new(questions.len() as u64);
        let summary = evaluate(
            &model,
            &answerer,
            &questions,
            &OperationTable::from_dataset(&dataset),
            &options,
            &device,
            |done, _| {
                bar.set_position(done as u64);
                true
            },
        )?;
        bar.finish_and_clear();
        Ok((summary, out))
    }
}
