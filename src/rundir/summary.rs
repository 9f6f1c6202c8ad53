//! `eval/summary.json`: what an evaluation measured, written by `eval` and read by
//! `wmx ls`, reports and comparisons through this one type.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Right answers out of a group of questions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
}

impl Tally {
    pub fn new(correct: usize, total: usize) -> Tally {
        Tally { accuracy: share(correct, total), correct, total }
    }
}

/// `n / d`, 0 for an empty group.
pub fn share(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// How the selection among exits did, against choosing the right exit every time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Share of questions whose selected candidate computed the right value.
    pub accuracy: f64,
    /// Share of questions where some exit computed the right value.
    pub oracle: f64,
    pub best_single_exit: Option<BestExit>,
}

/// The exit that alone would have answered most questions right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestExit {
    pub exit: usize,
    pub accuracy: f64,
}

/// What one exit (fusion layer) did across the questions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitSummary {
    pub exit: usize,
    /// The text layer the exit's segment reads.
    pub layer: Option<usize>,
    /// Share of questions whose candidate from this exit computed the right value.
    pub value_accuracy: f64,
    /// Share whose candidate used the operation the question needs.
    pub operation_accuracy: f64,
    /// Share whose candidate ran to a value.
    pub ran: f64,
    /// Share where selection chose this exit.
    pub selected: f64,
    /// Between the operation needed and the one emitted: how much the exit's
    /// choice tells of the question's operation.
    pub mutual_information_bits: f64,
    pub per_operation: BTreeMap<String, Tally>,
    /// Needed operation → emitted operation → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

/// `eval/summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
    /// The split or file evaluated.
    pub data: String,
    /// What the evaluation took away from the path (`none`, `text-only`, …).
    pub ablation: String,
    pub stages: BTreeMap<String, Tally>,
    pub operations: BTreeMap<String, Tally>,
    pub selection: Selection,
    pub exits: Vec<ExitSummary>,
    /// Traps of every exit's candidates, by kind.
    pub traps: BTreeMap<String, usize>,
    /// Whether the answers state their computed values (absent in summaries
    /// written before it was measured).
    #[serde(default)]
    pub restatement: Restatement,
}

/// How many answers state the value their computation gave (see
/// `infer::Provenance`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Restatement {
    /// Answers that state the computed value, and no other.
    pub restated: usize,
    /// Answers with a computed value that state another one, or none.
    pub differs: usize,
    /// Answers without a computed value.
    pub no_computation: usize,
    /// `restated / (restated + differs)`: the share of answers with a computed
    /// value that state it (1 when there are none).
    pub rate: f64,
}

impl Restatement {
    pub fn new(restated: usize, differs: usize, no_computation: usize) -> Restatement {
        let rate = if restated + differs == 0 { 1.0 } else { share(restated, restated + differs) };
        Restatement { restated, differs, no_computation, rate }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "restated {:.4}: {} of {} answers with a computed value state it ({} differ; {} without a computation)",
            self.rate,
            self.restated,
            self.restated + self.differs,
            self.differs,
            self.no_computation
        )
    }
}

impl Summary {
    /// The summary in `dir` (`summary.json`), if there is a readable one.
    pub fn read(dir: &Path) -> Option<Summary> {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).ok()?).ok()
    }

    /// Writes `dir/summary.json` atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::fs::write_atomic(&dir.join("summary.json"), text.as_bytes())
    }

    /// The per-exit measurements, the selection and each stage, as terminal lines.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if !self.exits.is_empty() {
            out += "exit  layer  value right  op right  ran   selected  MI (bits)\n";
            for e in &self.exits {
                out += &format!(
                    "{:>4}  {:>5}  {:>11.3}  {:>8.3}  {:>4.2}  {:>8.3}  {:>9.3}\n",
                    e.exit,
                    e.layer.map_or("null".into(), |l| l.to_string()),
                    e.value_accuracy,
                    e.operation_accuracy,
                    e.ran,
                    e.selected,
                    e.mutual_information_bits,
                );
            }
            let s = &self.selection;
            out += &format!(
                "selection: {:.3} right (oracle {:.3}, best single exit {:.3})\n",
                s.accuracy,
                s.oracle,
                s.best_single_exit.map_or(0.0, |b| b.accuracy),
            );
        }
        for (name, s) in &self.stages {
            out += &format!("{name}: {:.3} ({}/{})\n", s.accuracy, s.correct, s.total);
        }
        out += &self.restatement.describe();
        out.push('\n');
        out
    }
}
