//! Importers for example files written elsewhere: JSONL with configurable field
//! names, and the original WorldModel text format. Every example is run; the
//! report says, example by example, what is wrong, and only valid ones are kept.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CurriculumError, Example, Split, Verifier, values_match};
use crate::sandbox::{Outcome, bind};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `User:` / `Assistant:` / `<wat_model>` / `<computed>` blocks.
    Worldmodel,
    /// One JSON object a line.
    Jsonl,
}

/// JSONL field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    pub question: String,
    pub program: String,
    pub value: String,
    pub answer: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            question: "question".into(),
            program: "program".into(),
            value: "value".into(),
            answer: "answer".into(),
        }
    }
}

/// Why an imported example was rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    MissingQuestion,
    MissingProgram,
    /// The WAT does not parse or validate.
    InvalidProgram(String),
    /// The program's parameters cannot take the question's arguments: a generic
    /// program standing in for the task.
    Placeholder(String),
    MissingValue,
    /// The stated value is not a number.
    UnreadableValue(String),
    /// The program trapped or was denied an import.
    Failed(String),
    /// The program computes another value than stated.
    WrongValue {
        stated: f64,
        computed: f64,
    },
}

impl Rejection {
    /// A short category name for counting.
    pub fn category(&self) -> &'static str {
        match self {
            Rejection::MissingQuestion => "missing question",
            Rejection::MissingProgram => "missing program",
            Rejection::InvalidProgram(_) => "invalid program",
            Rejection::Placeholder(_) => "placeholder program",
            Rejection::MissingValue => "missing value",
            Rejection::UnreadableValue(_) => "unreadable value",
            Rejection::Failed(_) => "program failed",
            Rejection::WrongValue { .. } => "wrong value",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MissingQuestion => write!(f, "no question"),
            Rejection::MissingProgram => write!(f, "no WAT program"),
            Rejection::InvalidProgram(msg) => write!(f, "the WAT is invalid: {msg}"),
            Rejection::Placeholder(msg) => write!(f, "placeholder program: {msg}"),
            Rejection::MissingValue => write!(f, "no <computed> value is stated"),
            Rejection::UnreadableValue(v) => write!(f, "the stated value {v:?} is not a number"),
            Rejection::Failed(msg) => write!(f, "the program failed: {msg}"),
            Rejection::WrongValue { stated, computed } => write!(
                f,
                "the WAT computes {} but the example states {}",
                crate::sandbox::format_value(*computed),
                crate::sandbox::format_value(*stated)
            ),
        }
    }
}

/// One rejected example and where it was.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// 1-based line where the example starts.
    pub line: usize,
    pub question: String,
    #[serde(flatten)]
    pub reason: Rejection,
}

/// The outcome of importing one file.
#[derive(Debug, Clone)]
pub struct Report {
    pub kept: Vec<Example>,
    pub rejected: Vec<Rejected>,
}

impl Report {
    /// Writes the kept examples to `dir/<stage>.jsonl` and the rejected ones, with
    /// why, to `dir/<stage>.rejected.jsonl`; returns both paths.
    pub fn write(&self, dir: &Path, stage: &str) -> Result<[PathBuf; 2], CurriculumError> {
        let failed = |path: &Path, e: &dyn std::fmt::Display| CurriculumError::Write { path: path.to_path_buf(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
        let kept = dir.join(format!("{stage}.jsonl"));
        super::write_jsonl(&kept, &self.kept)?;
        let rejected = dir.join(format!("{stage}.rejected.jsonl"));
        let mut lines = Vec::new();
        for r in &self.rejected {
            serde_json::to_writer(&mut lines, r).map_err(|e| failed(&rejected, &e))?;
            lines.push(b'\n');
        }
        crate::fs::write_atomic(&rejected, &lines).map_err(|e| failed(&rejected, &e))?;
        Ok([kept, rejected])
    }

    /// Rejections counted by category.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rejected {
            *counts.entry(r.reason.category()).or_insert(0) += 1;
        }
        counts
    }
}

/// An example as found in the file, before verification.
#[derive(Debug, Clone, Default)]
struct Raw {
    line: usize,
    question: Option<String>,
    program: Option<String>,
    value: Option<String>,
    answer: Option<String>,
}

/// Imports and verifies every example of `path`; `stage` names where they go.
pub fn import_file(
    path: &Path,
    format: Format,
    fields: &Fields,
    stage: &str,
    verifier: &Verifier,
) -> Result<Report, CurriculumError> {
    let text = std::fs::read_to_string(path).map_err(|e| CurriculumError::Import {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let raws = match format {
        Format::Worldmodel => parse_worldmodel(&text),
        Format::Jsonl => parse_jsonl(&text, fields).map_err(|message| CurriculumError::Import {
            path: path.to_path_buf(),
            message,
        })?,
    };
    let mut report = Report {
        kept: Vec::new(),
        rejected: Vec::new(),
    };
    for raw in raws {
        let question = raw.question.clone().unwrap_or_default();
        match check(&raw, verifier) {
            Ok((value, system)) => {
                let id = format!("{stage}/imported/{:05}", report.kept.len());
                let program = raw.program.unwrap_or_default();
                let answer = raw
                    .answer
                    .unwrap_or_else(|| format!("The answer is {}.", crate::sandbox::format_value(value)));
                report.kept.push(Example {
                    id,
                    stage: stage.to_string(),
                    family: "imported".into(),
                    op: primary_op(&program),
                    split: Split::Train,
                    args: bind(&question),
                    question,
                    program,
                    value,
                    answer,
                    system,
                    frame: None,
                });
            }
            Err(reason) => report.rejected.push(Rejected {
                line: raw.line,
                question,
                reason,
            }),
        }
    }
    Ok(report)
}

/// Checks one raw example: returns its value and whether it needed `system`.
fn check(raw: &Raw, verifier: &Verifier) -> Result<(f64, bool), Rejection> {
    let question = raw
        .question
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .ok_or(Rejection::MissingQuestion)?;
    let program = raw
        .program
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .ok_or(Rejection::MissingProgram)?;
    let args = bind(question);
    let mut system = false;
    let mut outcome = verifier.pure.run(program, &args);
    if matches!(outcome, Outcome::Denied(_)) {
        system = true;
        outcome = verifier.system.run(program, &args);
    }
    // Problems of the program come first, then problems of the stated value.
    let computed = match outcome {
        Outcome::Value(v) => v,
        Outcome::Invalid(msg) => return Err(Rejection::InvalidProgram(msg)),
        Outcome::Mismatch(msg) => return Err(Rejection::Placeholder(msg)),
        other => return Err(Rejection::Failed(other.to_string())),
    };
    let stated_text = raw.value.as_deref().ok_or(Rejection::MissingValue)?;
    let stated = crate::sandbox::args::parse_number(stated_text)
        .ok_or_else(|| Rejection::UnreadableValue(stated_text.to_string()))?;
    if !values_match(computed, stated) {
        return Err(Rejection::WrongValue { stated, computed });
    }
    Ok((stated, system))
}

/// The main arithmetic operation of a program, for imported examples' `op`.
fn primary_op(program: &str) -> String {
    let ops = ["add", "sub", "mul", "div"];
    let found: Vec<&str> = ops
        .iter()
        .copied()
        .filter(|op| {
            program.split_whitespace().any(|t| {
                t.trim_matches(|c| c == '(' || c == ')')
                    .ends_with(&format!(".{op}"))
            })
        })
        .collect();
    match found.as_slice() {
        [one] => one.to_string(),
        _ => "mixed".into(),
    }
}

/// Parses the original WorldModel text format: blocks starting at `User:` lines.
fn parse_worldmodel(text: &str) -> Vec<Raw> {
    let mut raws: Vec<Raw> = Vec::new();
    let mut in_program = false;
    let mut program = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(question) = line.strip_prefix("User:") {
            raws.push(Raw {
                line: i + 1,
                question: Some(question.trim().to_string()),
                ..Raw::default()
            });
            in_program = false;
            continue;
        }
        let Some(raw) = raws.last_mut() else { continue };
        let mut rest = line;
        if !in_program && let Some(at) = rest.find("<wat_model>") {
            in_program = true;
            program.clear();
            rest = &rest[at + "<wat_model>".len()..];
        }
        if in_program {
            if let Some(end) = rest.find("</wat_model>") {
                program.push_str(&rest[..end]);
                raw.program = Some(program.trim().to_string());
                in_program = false;
                rest = &rest[end + "</wat_model>".len()..];
            } else {
                program.push_str(rest);
                program.push('\n');
                continue;
            }
        }
        if let Some(start) = rest.find("<computed>") {
            let after = &rest[start + "<computed>".len()..];
            let value = after.split("</computed>").next().unwrap_or(after);
            raw.value = Some(value.trim().to_string());
            let tail = after
                .split_once("</computed>")
                .map(|(_, t)| t.trim())
                .unwrap_or("");
            if !tail.is_empty() {
                raw.answer = Some(tail.to_string());
            }
        }
    }
    raws
}

/// Parses JSONL with the given field names; values may be numbers or strings.
fn parse_jsonl(text: &str, fields: &Fields) -> Result<Vec<Raw>, String> {
    let mut raws = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let get = |name: &str| match object.get(name) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        raws.push(Raw {
            line: i + 1,
            question: get(&fields.question),
            program: get(&fields.program),
            value: get(&fields.value),
            answer: get(&fields.answer),
        });
    }
    Ok(raws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worldmodel_blocks_parse_question_program_and_value() {
        let text = "User: Calculate 2 + 3\nAssistant: <think>add</think>\n<wat_model>\n(module)\n</wat_model>\n<computed>5</computed>\n\nUser: Evaluate: True\nAssistant: x\n";
        let raws = parse_worldmodel(text);
        assert_eq!(raws.len(), 2);
        assert_eq!(raws[0].question.as_deref(), Some("Calculate 2 + 3"));
        assert_eq!(raws[0].program.as_deref(), Some("(module)"));
        assert_eq!(raws[0].value.as_deref(), Some("5"));
        assert_eq!(raws[1].line, 8);
        assert_eq!(raws[1].program, None);
    }

    #[test]
    fn primary_op_names_a_single_arithmetic_operation() {
        assert_eq!(primary_op("(module (func f64.add))"), "add");
        assert_eq!(
            primary_op("local.get 0 local.get 1 f64.add f64.mul"),
            "mixed"
        );
    }
}
