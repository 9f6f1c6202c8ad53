//! Answering a question through the whole path: prefill → one candidate program per
//! exit → run each in the sandbox → score and select → inject
//! `<computed>v</computed>` → decode the answer with fusion on. Every answer keeps
//! its provenance.

pub mod guide;

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::config::{Experiment, SelectionConfig};
use crate::model::world::{CopyAction, Decoded, Prefill, Restating, ValueVocab, TokenGuide, Unguided, WorldModel, rows_index};
use crate::sandbox::{Arg, Outcome, Sandbox, bind};
use crate::tokenize::wat::WatVocab;
use crate::tokenize::{TextTokenizer, TokenizeError};
use crate::prompt::{PromptTokens, computed_ids, prompt_tokens};

/// The score terms of one candidate, each in 0..=1.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    pub op_match: f64,
    pub layer_position: f64,
    pub reasonableness: f64,
    pub confidence: f64,
    /// The weighted sum the softmax runs over.
    pub total: f64,
}

/// One exit's candidate program and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub exit: usize,
    /// The text layer the exit's segment is fused before.
    pub layer: usize,
    pub program: String,
    /// Operations the program performs (`add`, `loop`, `system`, …).
    pub operations: Vec<String>,
    pub outcome: Outcome,
    pub scores: Scores,
    /// Selection probability (0 for candidates without a value).
    pub probability: f64,
}

/// An answer with its provenance.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub question: String,
    pub args: Vec<Arg>,
    pub candidates: Vec<Candidate>,
    /// Index into `candidates` of the selected one, if any computed a value.
    pub selected: Option<usize>,
    pub value: Option<f64>,
    pub text: String,
    /// Whether the text states the computed value.
    pub provenance: Provenance,
    /// How the copy head wrote the value into the text, when it did.
    pub copied: Option<CopyAction>,
    /// Where the time went, in milliseconds.
    pub timings: Timings,
}

/// Whether an answer states the value its computation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provenance {
    /// It states the computed value, and no other.
    Restated,
    /// A computation gave a value, but the answer states another one, or none.
    Differs,
    /// No candidate computed a value (or none was used): the answer is the text
    /// stream's alone.
    NoComputation,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Restated => "restated",
            Provenance::Differs => "differs",
            Provenance::NoComputation => "no-computation",
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `text` states `value`: it states at least one value, and each it states
/// — every number, at `places` decimals, and every yes/no or true/false, which
/// state 1 and 0 — equals the value.
pub fn provenance(text: &str, value: Option<f64>, places: u32) -> Provenance {
    let Some(value) = value else {
        return Provenance::NoComputation;
    };
    let shown = |v: f64| crate::sandbox::format_value_places(v, places);
    let mut stated = crate::sandbox::bind_spans(text)
        .into_iter()
        .filter_map(|(arg, _)| match arg {
            Arg::Number(n) => Some(shown(n)),
            Arg::Text(_) => None,
        })
        .collect::<Vec<_>>();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        match word.to_lowercase().as_str() {
            "yes" | "true" => stated.push(shown(1.0)),
            "no" | "false" => stated.push(shown(0.0)),
            _ => {}
        }
    }
    // A value that is not a finite number (a division by zero) is stated by its word.
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '-') {
        if matches!(word, "inf" | "-inf" | "NaN") {
            stated.push(word.to_string());
        }
    }
    let value = shown(value);
    if !stated.is_empty() && stated.iter().all(|s| *s == value) {
        Provenance::Restated
    } else {
        Provenance::Differs
    }
}

/// Milliseconds each part of answering took: the question's prefill, decoding
/// every exit's candidate program, running them in the sandbox, selection, and
/// decoding the answer. On a GPU, work is queued: a part's time includes what the
/// parts before it queued and the next read waited for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub prefill_ms: f64,
    pub candidates_ms: f64,
    pub sandbox_ms: f64,
    pub selection_ms: f64,
    pub answer_ms: f64,
    pub total_ms: f64,
}

fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The operations a WAT program performs, for op_match and specialization.
pub fn operations(program: &str) -> Vec<String> {
    let mut ops: Vec<String> = Vec::new();
    let mut add = |op: &str| {
        if !ops.iter().any(|o| o == op) {
            ops.push(op.to_string());
        }
    };
    for word in program.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        match word.rsplit('.').next().unwrap_or("") {
            "add" => add("add"),
            "sub" => add("sub"),
            "mul" => add("mul"),
            "div" | "div_s" | "div_u" => add("div"),
            "rem_s" | "rem_u" => add("rem"),
            "min" => add("min"),
            "max" => add("max"),
            "gt" | "lt" | "ge" | "le" | "gt_s" | "lt_s" | "ge_s" | "le_s" | "eq" => add("compare"),
            _ => {}
        }
        match word {
            "loop" => add("loop"),
            "if" => add("branch"),
            "call" => add("system"),
            "i32.load8_u" => add("text"),
            _ => {}
        }
    }
    ops
}

/// The operation a question asks for, from its wording and an intent table
/// (`[selection] intents`); `None` when no entry's word appears.
pub fn intent<'a>(question: &str, table: &'a [crate::config::Intent]) -> Option<&'a str> {
    let q = question.to_lowercase();
    table
        .iter()
        .find(|i| i.words.iter().any(|w| q.contains(&w.to_lowercase())))
        .map(|i| i.op.as_str())
}

fn scores(
    question: &str,
    candidate_ops: &[String],
    outcome: &Outcome,
    exit: usize,
    exits: usize,
    logprob: f64,
    w: &SelectionConfig,
) -> Scores {
    let op_match = match intent(question, &w.intents) {
        Some(op) if candidate_ops.iter().any(|o| o == op) => 1.0,
        Some(_) => 0.0,
        None => 0.5,
    };
    let layer_position = if exits > 1 {
        exit as f64 / (exits - 1) as f64
    } else {
        1.0
    };
    let reasonableness = match outcome {
        Outcome::Value(v) if !v.is_finite() => 0.0,
        Outcome::Value(v) => {
            let counts = question.to_lowercase().starts_with("how many")
                || question.to_lowercase().contains("count");
            let plausible = v.abs() < 1e15;
            f64::from(u8::from(plausible)) * if counts && v.fract() != 0.0 { 0.5 } else { 1.0 }
        }
        _ => 0.0,
    };
    let confidence = logprob.exp();
    let total = w.op_match * op_match
        + w.layer_position * layer_position
        + w.reasonableness * reasonableness
        + w.confidence * confidence;
    Scores {
        op_match,
        layer_position,
        reasonableness,
        confidence,
        total,
    }
}

/// Softmax over the candidates that computed a value; the others get 0.
fn select(candidates: &mut [Candidate], temperature: f64) -> Option<usize> {
    let valid: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].outcome.value().is_some())
        .collect();
    let best = valid
        .iter()
        .map(|&i| candidates[i].scores.total)
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = valid
        .iter()
        .map(|&i| ((candidates[i].scores.total - best) / temperature).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    for (&i, w) in valid.iter().zip(&weights) {
        candidates[i].probability = w / sum;
    }
    valid.into_iter().max_by(|&a, &b| {
        candidates[a]
            .probability
            .total_cmp(&candidates[b].probability)
            .then(b.cmp(&a))
    })
}

/// What an evaluation takes away from the whole path, to measure what each part adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ablation {
    /// The whole path.
    None,
    /// The text stream alone, from the prompt: no programs, no fusion, no execution.
    TextOnly,
    /// Programs are decoded and fused, but no computed value is injected.
    NoExec,
    /// Only exit `k`'s program may be selected.
    Exit(usize),
    /// Candidates decode without the signature guide (see [`guide`]): the
    /// parameter lists are the model's alone, even where the arguments cannot bind.
    Unguided,
}

impl std::str::FromStr for Ablation {
    type Err = String;

    fn from_str(s: &str) -> Result<Ablation, String> {
        match s {
            "none" => Ok(Ablation::None),
            "text-only" => Ok(Ablation::TextOnly),
            "no-exec" => Ok(Ablation::NoExec),
            "unguided" => Ok(Ablation::Unguided),
            _ => s
                .strip_prefix("exit=")
                .and_then(|k| k.parse().ok())
                .map(Ablation::Exit)
                .ok_or_else(|| {
                    format!("unknown ablation `{s}`: expected text-only, no-exec, unguided or exit=K")
                }),
        }
    }
}

impl std::fmt::Display for Ablation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ablation::None => write!(f, "none"),
            Ablation::TextOnly => write!(f, "text-only"),
            Ablation::NoExec => write!(f, "no-exec"),
            Ablation::Exit(k) => write!(f, "exit={k}"),
            Ablation::Unguided => write!(f, "unguided"),
        }
    }
}

/// An answer's text and how the copy head wrote its value, or why it has none.
type Stated = Result<(String, Option<CopyAction>), TokenizeError>;

/// What answering needs besides the model.
pub struct Answerer<'a> {
    pub text: &'a TextTokenizer,
    pub wat: &'a WatVocab,
    pub sandbox: &'a Sandbox,
    pub selection: &'a SelectionConfig,
    pub max_wat_tokens: usize,
    pub max_new_tokens: usize,
    /// Positions the text stream has (`model.max_position_embeddings`): the prompt,
    /// computed span and answer fit in them.
    pub max_positions: usize,
    /// Whether the WAT stream reads the arguments' tokens (`wat.read_arguments`).
    pub read_arguments: bool,
    /// How the text stream reads the arguments (`model.arguments`).
    pub arguments: crate::config::ArgumentView,
    /// Decimals values are stated at (`eval.decimals`, else four).
    pub places: u32,
    /// Whether answers restate their values through the model's copy head
    /// (`model.answer = "copy"`).
    pub copy: bool,
    /// The text tokens as restating answers see them ([`value_vocab`]), built when
    /// first needed.
    value_vocab: std::sync::OnceLock<ValueVocab>,
}

/// The text tokens as restating answers see them (see [`ValueVocab`]): ids below
/// the model's `vocab` that the tokenizer lacks have no piece and are never written.
pub fn value_vocab(text: &TextTokenizer, vocab: usize) -> ValueVocab {
    let known = text.vocab_size().min(vocab);
    let pieces = (0..known).map(|id| text.decode(&[id as u32]).unwrap_or_default()).collect();
    ValueVocab::new(pieces, text.encode(" ").unwrap_or_default())
}

impl<'a> Answerer<'a> {
    /// The answering path an experiment declares.
    pub fn from_experiment(
        e: &'a Experiment,
        tokenizer: &'a TextTokenizer,
        wat: &'a WatVocab,
        sandbox: &'a Sandbox,
    ) -> Answerer<'a> {
        Answerer {
            text: tokenizer,
            wat,
            sandbox,
            selection: &e.selection,
            max_wat_tokens: e.wat.max_tokens,
            max_new_tokens: e.eval.max_new_tokens,
            max_positions: e.model.max_position_embeddings,
            read_arguments: e.wat.read_arguments,
            arguments: e.model.arguments,
            places: e.eval.decimals.unwrap_or(4),
            copy: e.copy_places().is_some(),
            value_vocab: std::sync::OnceLock::new(),
        }
    }

    /// A prompt of `len` tokens leaves room for at least one answer token.
    fn fits(&self, len: usize) -> Result<(), TokenizeError> {
        if len < self.max_positions {
            return Ok(());
        }
        Err(TokenizeError::TooLong {
            what: "question (with its chat markers and computed value)",
            tokens: len,
            limit: self.max_positions.saturating_sub(1),
            key: "model.max_position_embeddings",
        })
    }

    /// The ids an answer stops after.
    fn stop(&self) -> Vec<u32> {
        self.text.token_id("<|im_end|>").into_iter().collect()
    }

    /// A question's prompt as the text stream reads it, and the positions the WAT
    /// stream leaves unread; an error when it leaves no room for an answer.
    fn prompt(&self, question: &str) -> Result<(Vec<u32>, Vec<usize>), TokenizeError> {
        let PromptTokens { ids, arguments, .. } = prompt_tokens(self.text, question, self.arguments, None)?;
        self.fits(ids.len())?;
        Ok((ids, if self.read_arguments { Vec::new() } else { arguments }))
    }

    /// The answer tokens that fit after a prefix of `len` tokens.
    fn budget(&self, len: usize) -> usize {
        self.max_new_tokens.min(self.max_positions.saturating_sub(len))
    }

    pub fn answer<B: Backend>(
        &self,
        model: &WorldModel<B>,
        question: &str,
        device: &B::Device,
    ) -> Result<Answer, TokenizeError> {
        self.answer_with(model, question, Ablation::None, device)
    }

    /// Answers with part of the path taken away (see [`Ablation`]).
    pub fn answer_with<B: Backend>(
        &self,
        model: &WorldModel<B>,
        question: &str,
        ablation: Ablation,
        device: &B::Device,
    ) -> Result<Answer, TokenizeError> {
        self.answer_all(model, &[question], ablation, device)
            .pop()
            .expect("one answer per question")
    }

    /// Answers `questions` together: one prefill, each exit's candidates decoded
    /// for every question at once, the sandbox running the programs on several
    /// threads, then every answer decoded together — the same answers as one
    /// question at a time. A question too long for the model gets its error
    /// alone. Each answer carries the batch's timings (what answering it took).
    pub fn answer_all<B: Backend>(
        &self,
        model: &WorldModel<B>,
        questions: &[&str],
        ablation: Ablation,
        device: &B::Device,
    ) -> Vec<Result<Answer, TokenizeError>> {
        let stop = self.stop();
        let mut results: Vec<Option<Result<Answer, TokenizeError>>> = questions.iter().map(|_| None).collect();
        let started = std::time::Instant::now();
        // The rows answered together: (index into `questions`, prompt, unread positions).
        let mut rows: Vec<(usize, Vec<u32>, Vec<usize>)> = Vec::new();
        for (i, question) in questions.iter().enumerate() {
            match self.prompt(question) {
                Err(e) => results[i] = Some(Err(e)),
                Ok((ids, unread)) => rows.push((i, ids, unread)),
            }
        }
        if ablation == Ablation::TextOnly {
            for (i, prompt, _) in rows {
                let mut ids = model.text.generate(&prompt, self.budget(prompt.len()), &stop, device);
                if ids.last().is_some_and(|t| stop.contains(t)) {
                    ids.pop();
                }
                results[i] = Some(self.text.decode(&ids).map(|text| Answer {
                    question: questions[i].to_string(),
                    args: bind(questions[i]),
                    candidates: Vec::new(),
                    selected: None,
                    value: None,
                    text: text.trim().to_string(),
                    provenance: Provenance::NoComputation,
                    copied: None,
                    timings: Timings { answer_ms: ms_since(started), total_ms: ms_since(started), ..Timings::default() },
                }));
            }
            return results.into_iter().map(|r| r.expect("every question answered")).collect();
        }
        if !rows.is_empty() {
            self.answer_rows(model, questions, &rows, ablation, &stop, started, &mut results, device);
        }
        results.into_iter().map(|r| r.expect("every question answered")).collect()
    }

    /// The whole path for the `rows` of [`answer_all`](Self::answer_all).
    #[allow(clippy::too_many_arguments)]
    fn answer_rows<B: Backend>(
        &self,
        model: &WorldModel<B>,
        questions: &[&str],
        rows: &[(usize, Vec<u32>, Vec<usize>)],
        ablation: Ablation,
        stop: &[u32],
        started: std::time::Instant,
        results: &mut [Option<Result<Answer, TokenizeError>>],
        device: &B::Device,
    ) {
        use rayon::prelude::*;
        let mut timings = Timings::default();
        let phase = std::time::Instant::now();
        let prompts: Vec<Vec<u32>> = rows.iter().map(|r| r.1.clone()).collect();
        let unread: Vec<Vec<usize>> = rows.iter().map(|r| r.2.clone()).collect();
        let prefill = model.prefill(&prompts, &unread, device);
        timings.prefill_ms = ms_since(phase);
        log::trace!("prefill of {} questions: {:.1} ms", rows.len(), timings.prefill_ms);
        let exits = model.fusion_layers.len();
        let args: Vec<Vec<Arg>> = rows.iter().map(|r| bind(questions[r.0])).collect();
        // programs[exit][row]; candidates[row][exit]
        let mut programs: Vec<Vec<Vec<u32>>> = Vec::new();
        let mut candidates: Vec<Vec<Candidate>> = rows.iter().map(|_| Vec::new()).collect();
        for exit in 0..exits {
            let phase = std::time::Instant::now();
            let mut signatures: Vec<guide::SignatureGuide> =
                args.iter().map(|a| guide::SignatureGuide::new(a, self.wat)).collect();
            let mut unguided: Vec<Unguided> = rows.iter().map(|_| Unguided).collect();
            let mut guides: Vec<&mut dyn TokenGuide> = if ablation == Ablation::Unguided {
                unguided.iter_mut().map(|g| g as &mut dyn TokenGuide).collect()
            } else {
                signatures.iter_mut().map(|g| g as &mut dyn TokenGuide).collect()
            };
            let decoded = model.decode_programs(&prefill, exit, self.max_wat_tokens, &mut guides);
            let texts: Vec<String> = decoded.iter().map(|(ids, _)| self.wat.decode(ids)).collect();
            timings.candidates_ms += ms_since(phase);
            let phase = std::time::Instant::now();
            let outcomes: Vec<Outcome> = texts
                .par_iter()
                .zip(&args)
                .map(|(program, args)| self.sandbox.run(program, args))
                .collect();
            timings.sandbox_ms += ms_since(phase);
            let mut ids = Vec::new();
            for (row, ((program, outcome), (tokens, logprob))) in
                texts.into_iter().zip(outcomes).zip(decoded).enumerate()
            {
                let operations = operations(&program);
                let scores = scores(
                    questions[rows[row].0],
                    &operations,
                    &outcome,
                    exit,
                    exits,
                    logprob,
                    self.selection,
                );
                candidates[row].push(Candidate {
                    exit,
                    layer: model.fusion_layers[exit],
                    program,
                    operations,
                    outcome,
                    scores,
                    probability: 0.0,
                });
                ids.push(tokens);
            }
            programs.push(ids);
        }
        let phase = std::time::Instant::now();
        let selected: Vec<Option<usize>> = candidates
            .iter_mut()
            .map(|candidates| match ablation {
                Ablation::NoExec => None,
                // Candidates are in exit order: selection runs over exit k's alone.
                Ablation::Exit(k) if k < candidates.len() => {
                    select(&mut candidates[k..=k], self.selection.temperature).map(|_| k)
                }
                Ablation::Exit(_) => None,
                _ => select(candidates, self.selection.temperature),
            })
            .collect();
        let values: Vec<Option<f64>> = selected
            .iter()
            .zip(&candidates)
            .map(|(s, c)| s.and_then(|i| c[i].outcome.value()))
            .collect();
        timings.selection_ms = ms_since(phase);
        let phase = std::time::Instant::now();
        let texts = self.state_values(model, &prefill, &prompts, &programs, &values, stop, device);
        timings.answer_ms = ms_since(phase);
        timings.total_ms = ms_since(started);
        let mut candidates: Vec<Option<Vec<Candidate>>> = candidates.into_iter().map(Some).collect();
        let mut args: Vec<Option<Vec<Arg>>> = args.into_iter().map(Some).collect();
        for (row, text) in texts.into_iter().enumerate() {
            let i = rows[row].0;
            results[i] = Some(text.map(|(text, copied)| Answer {
                question: questions[i].to_string(),
                args: args[row].take().unwrap_or_default(),
                candidates: candidates[row].take().unwrap_or_default(),
                selected: selected[row],
                value: values[row],
                provenance: provenance(&text, values[row], self.places),
                copied,
                text,
                timings: timings.clone(),
            }));
        }
    }

    /// The half of the path that states a value: each row's prompt with its
    /// computed value (`values`) injected, the answer decoded with fusion reading
    /// `programs[exit][row]` — restating through the copy head when answers do. A
    /// row whose prompt and computed span do not fit gets its error.
    #[allow(clippy::too_many_arguments)]
    fn state_values<B: Backend>(
        &self,
        model: &WorldModel<B>,
        prefill: &Prefill<B>,
        prompts: &[Vec<u32>],
        programs: &[Vec<Vec<u32>>],
        values: &[Option<f64>],
        stop: &[u32],
        device: &B::Device,
    ) -> Vec<Stated> {
        let mut out: Vec<Option<Stated>> = prompts.iter().map(|_| None).collect();
        let mut kept = Vec::new();
        let mut prefixes = Vec::new();
        let mut writes = Vec::new();
        for (row, value) in values.iter().enumerate() {
            let mut prefix = prompts[row].clone();
            let made = match value {
                Some(v) => computed_ids(self.text, *v).map(|c| prefix.extend(c)),
                None => Ok(()),
            }
            .and_then(|()| self.fits(prefix.len()))
            .and_then(|()| value.map(|v| crate::prompt::copy_writes(self.text, v, self.places)).transpose());
            match made {
                Ok(written) => {
                    kept.push(row);
                    prefixes.push(prefix);
                    writes.push(written);
                }
                Err(e) => out[row] = Some(Err(e)),
            }
        }
        if !kept.is_empty() {
            let index = rows_index::<B>(&kept, device);
            let prefill = Prefill {
                states: prefill.states.iter().map(|t| t.clone().select(0, index.clone())).collect(),
                ignore: prefill.ignore.clone().select(0, index),
            };
            let question_lens: Vec<usize> = kept.iter().map(|&r| prompts[r].len()).collect();
            let programs: Vec<Vec<Vec<u32>>> = programs
                .iter()
                .map(|exit| kept.iter().map(|&r| exit[r].clone()).collect())
                .collect();
            let budgets: Vec<usize> = prefixes.iter().map(|p| self.budget(p.len())).collect();
            let restating = (self.copy && model.copy.is_some()).then(|| {
                let vocab = model.text.model.embed_tokens.weight.dims()[0];
                Restating { rows: writes, vocab: self.value_vocab.get_or_init(|| value_vocab(self.text, vocab)) }
            });
            let decoded = model.decode_answers(&prefill, &prefixes, &question_lens, &programs, &budgets, stop, restating.as_ref());
            for (&row, Decoded { mut tokens, copied }) in kept.iter().zip(decoded) {
                if tokens.last().is_some_and(|t| stop.contains(t)) {
                    tokens.pop();
                }
                out[row] = Some(self.text.decode(&tokens).map(|t| (t.trim().to_string(), copied.map(|c| c.action))));
            }
        }
        out.into_iter().map(|r| r.expect("every row stated")).collect()
    }

    /// Answers each question as if its selected program had computed `values[i]`,
    /// with no candidate programs to read: the half of the path that states a
    /// value, to check what answers say about values of every shape.
    pub fn answer_values<B: Backend>(
        &self,
        model: &WorldModel<B>,
        questions: &[&str],
        values: &[Option<f64>],
        device: &B::Device,
    ) -> Result<Vec<Answer>, TokenizeError> {
        let stop = self.stop();
        let (prompts, unread): (Vec<Vec<u32>>, Vec<Vec<usize>>) =
            questions.iter().map(|q| self.prompt(q)).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
        let prefill = model.prefill(&prompts, &unread, device);
        let programs = vec![vec![Vec::new(); questions.len()]; model.fusion_layers.len()];
        let texts = self.state_values(model, &prefill, &prompts, &programs, values, &stop, device);
        questions
            .iter()
            .zip(values)
            .zip(texts)
            .map(|((question, &value), text)| {
                let (text, copied) = text?;
                Ok(Answer {
                    question: question.to_string(),
                    args: bind(question),
                    candidates: Vec::new(),
                    selected: None,
                    value,
                    provenance: provenance(&text, value, self.places),
                    copied,
                    text,
                    timings: Timings::default(),
                })
            })
            .collect()
    }
}

/// An answer with its provenance, for people: each exit's program, outcome and
/// score terms (weighted as `selection` weighs them), the choice, the final text.
pub fn render(answer: &Answer, selection: &SelectionConfig) -> String {
    let mut out = format!("question: {}\n", answer.question);
    if !answer.args.is_empty() {
        let args: Vec<String> = answer
            .args
            .iter()
            .map(|a| match a {
                Arg::Number(n) => crate::sandbox::format_value(*n),
                Arg::Text(t) => format!("{t:?}"),
            })
            .collect();
        out += &format!("arguments: {}\n", args.join(", "));
    }
    for c in &answer.candidates {
        let s = &c.scores;
        out += &format!(
            "\nexit {} (text layer {}): {}\n  score {:.3} = op_match {:.2}×{} + layer_position {:.2}×{} + reasonableness {:.2}×{} + confidence {:.2}×{}   p = {:.3}{}\n  operations: {}\n",
            c.exit,
            c.layer,
            c.outcome,
            s.total,
            s.op_match,
            selection.op_match,
            s.layer_position,
            selection.layer_position,
            s.reasonableness,
            selection.reasonableness,
            s.confidence,
            selection.confidence,
            c.probability,
            if answer.selected == Some(c.exit) { "   ← selected" } else { "" },
            if c.operations.is_empty() { "-".to_string() } else { c.operations.join(" ") },
        );
        for line in c.program.lines() {
            out += &format!("  | {line}\n");
        }
    }
    out += "\n";
    match (answer.selected, answer.value) {
        (Some(k), Some(v)) => {
            out += &format!("selected: exit {k} → computed {}\n", crate::sandbox::format_value(v))
        }
        _ if answer.candidates.is_empty() => out += "selected: nothing (text stream only)\n",
        _ => out += "selected: nothing computed a value; answering without one\n",
    }
    out += &format!("answer: {}\n", answer.text);
    let how = match answer.copied {
        Some(CopyAction::Value) => ", the number copied in by the copy head",
        Some(CopyAction::Truth) => ", as yes/no by the copy head",
        None => "",
    };
    out += &format!("provenance: {}{how}\n", answer.provenance);
    out
}

/// `wmx infer`: answers with a run's model and shows where each answer came from;
/// without a question, reads questions line by line from standard input.
pub struct InferRun<'a> {
    pub run: &'a crate::rundir::OpenedRun,
    pub question: Option<String>,
    pub json: bool,
}

impl crate::backend::BackendTask for InferRun<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        use std::io::{BufRead, IsTerminal, Write};
        let e = &self.run.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype).map_err(anyhow::Error::msg)?;
        let model = self.run.model::<B>(&device)?;
        let sandbox = Sandbox::new(&e.sandbox)?;
        let wat = WatVocab::new();
        let answerer = crate::infer::Answerer::from_experiment(e, &self.run.tokenizer, &wat, &sandbox);
        let show = |question: &str| -> anyhow::Result<()> {
            let answer = answerer.answer(&model, question, &device)?;
            if self.json {
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                print!("{}", render(&answer, &e.selection));
            }
            Ok(())
        };
        if let Some(q) = &self.question {
            return show(q);
        }
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        if interactive {
            eprintln!("step {} of {}; one question per line, Ctrl-D to quit", self.run.step, self.run.dir.path.display());
        }
        loop {
            if interactive {
                eprint!("> ");
                std::io::stderr().flush().ok();
            }
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                return Ok(());
            }
            let q = line.trim();
            if !q.is_empty() {
                show(q)?;
            }
        }
    }
}

/// Whether an answer text matches the expected one: yes/no answers by word,
/// numeric ones by their first number rounded to the expected answer's decimals.
pub fn answer_matches(got: &str, expected: &str, decimals: Option<u32>) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('.').to_lowercase();
    if matches!(norm(expected).as_str(), "yes" | "no") {
        return norm(got) == norm(expected);
    }
    let first_number = |s: &str| {
        bind(s).into_iter().find_map(|a| match a {
            Arg::Number(n) => Some(n),
            Arg::Text(_) => None,
        })
    };
    let (Some(g), Some(e)) = (first_number(got), first_number(expected)) else {
        return norm(got) == norm(expected);
    };
    let places = decimals.unwrap_or_else(|| {
        let text = crate::sandbox::format_value(e);
        text.split_once('.').map_or(0, |(_, f)| f.len() as u32)
    });
    let scale = 10f64.powi(places as i32);
    (g * scale).round() == (e * scale).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_intents_line_up() {
        assert_eq!(
            operations("(module (func local.get $a local.get $b f64.add))"),
            vec!["add"]
        );
        assert!(
            operations("block $done loop $next i64.mul br_if $done end end")
                .contains(&"loop".to_string())
        );
        let table = crate::config::default_intents();
        assert_eq!(intent("What is 12 * 7?", &table), Some("mul"));
        assert_eq!(intent("Subtract 5 from 9.", &table), Some("sub"));
        assert_eq!(
            intent("How many bytes are in the file \"notes.txt\"?", &table),
            Some("system")
        );
        assert_eq!(intent("Is 97 prime?", &table), Some("loop"));
        let custom = vec![crate::config::Intent { op: "div".into(), words: vec!["per".into()] }];
        assert_eq!(intent("Miles PER hour of 120 over 2", &custom), Some("div"));
        assert_eq!(intent("What is 2 + 2?", &custom), None);
    }

    #[test]
    fn answers_match_by_number_or_word() {
        assert!(answer_matches(
            "The answer is 84.",
            "The answer is 84.",
            None
        ));
        assert!(answer_matches(
            "The answer is 1.77262",
            "The answer is 1.7726.",
            None
        ));
        assert!(!answer_matches(
            "The answer is 85.",
            "The answer is 84.",
            None
        ));
        assert!(answer_matches("Yes.", "Yes.", None));
        assert!(!answer_matches("No.", "Yes.", None));
        assert!(answer_matches(
            "about 3.14159",
            "The answer is 3.1416.",
            Some(2)
        ));
    }

    #[test]
    fn provenance_compares_every_value_an_answer_states() {
        let p = |text: &str, value: f64| provenance(text, Some(value), 4);
        assert_eq!(p("The answer is -2223.", -2223.0), Provenance::Restated);
        assert_eq!(p("The answer is .2223.", -2223.0), Provenance::Differs);
        assert_eq!(p("The answer is 2223.", -2223.0), Provenance::Differs);
        assert_eq!(p("The answer is 0.6667.", 2.0 / 3.0), Provenance::Restated);
        assert_eq!(p("The answer is 0.67.", 2.0 / 3.0), Provenance::Differs);
        assert_eq!(provenance("The answer is 0.67.", Some(2.0 / 3.0), 2), Provenance::Restated);
        assert_eq!(p("The answer is 123456789012.", 123456789012.0), Provenance::Restated);
        assert_eq!(p("Yes.", 1.0), Provenance::Restated);
        assert_eq!(p("No.", 1.0), Provenance::Differs);
        assert_eq!(p("Yes, 1.", 1.0), Provenance::Restated);
        assert_eq!(p("It is 4, not 5.", 4.0), Provenance::Differs);
        assert_eq!(p("I cannot say.", 5.0), Provenance::Differs);
        assert_eq!(provenance("The answer is 5.", None, 4), Provenance::NoComputation);
        assert_eq!(p("The answer is inf.", f64::INFINITY), Provenance::Restated);
        assert_eq!(p("The answer is -inf.", f64::NEG_INFINITY), Provenance::Restated);
        assert_eq!(p("The answer is inf.", 4.0), Provenance::Differs);
    }

    #[test]
    fn selection_prefers_the_higher_score_among_values() {
        let w = SelectionConfig::default();
        let mk = |exit: usize, outcome: Outcome, total: f64| Candidate {
            exit,
            layer: exit,
            program: String::new(),
            operations: vec![],
            outcome,
            scores: Scores {
                op_match: 0.0,
                layer_position: 0.0,
                reasonableness: 0.0,
                confidence: 0.0,
                total,
            },
            probability: 0.0,
        };
        let mut c = vec![
            mk(0, Outcome::Value(1.0), 1.0),
            mk(1, Outcome::Trap(crate::sandbox::TrapKind::OutOfFuel), 9.0),
            mk(2, Outcome::Value(2.0), 2.0),
        ];
        assert_eq!(select(&mut c, w.temperature), Some(2));
        assert_eq!(c[1].probability, 0.0);
        assert!((c[0].probability + c[2].probability - 1.0).abs() < 1e-12);
        let mut none = vec![mk(0, Outcome::Invalid("x".into()), 1.0)];
        assert_eq!(select(&mut none, 1.0), None);
    }
}
