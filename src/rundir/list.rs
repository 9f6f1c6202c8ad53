//! `wmx ls`: the runs under a directory, with status, steps and accuracy.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{RunDir, Status, name_of};
use crate::tables::TextTable;

/// One row of `wmx ls`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub path: PathBuf,
    pub experiment: String,
    pub id: String,
    pub status: Option<Status>,
    /// `running` in `meta.json` while no process holds the run's lock: the process
    /// that ran it was killed or aborted before it could record a final status.
    pub died: bool,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// Optimizer steps in `metrics.csv`.
    pub steps: usize,
    /// Test accuracy from `eval/summary.json`.
    pub accuracy: Option<f64>,
}

/// Every run under `root/runs/`, by experiment, then start time.
pub fn list_runs(root: &Path) -> Vec<RunRow> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    };
    let mut rows = Vec::new();
    for experiment in dirs(&root.join("runs")) {
        for run in dirs(&experiment) {
            if !run.join("config.toml").is_file() {
                continue;
            }
            let dir = RunDir::at(&run);
            let meta = dir.meta();
            let steps = std::fs::read_to_string(run.join("metrics.csv"))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0);
            let accuracy = dir.summary().map(|s| s.accuracy);
            rows.push(RunRow {
                experiment: name_of(&experiment),
                id: name_of(&run),
                status: meta.as_ref().map(|m| m.status),
                died: dir.died(meta.as_ref()),
                started: meta.as_ref().map(|m| m.started.clone()),
                ended: meta.and_then(|m| m.ended),
                steps,
                accuracy,
                path: run,
            });
        }
    }
    rows.sort_by(|a, b| (&a.experiment, &a.started).cmp(&(&b.experiment, &b.started)));
    rows
}

/// `wmx ls` as a table.
pub fn runs_table(rows: &[RunRow]) -> String {
    let mut table = TextTable::new(["experiment", "run", "status", "steps", "accuracy", "started"]).right(&[3, 4]);
    for r in rows {
        table.row([
            r.experiment.clone(),
            r.id.clone(),
            match (r.status, r.died) {
                (_, true) => "died".to_string(),
                (Some(s), false) => format!("{s:?}").to_lowercase(),
                (None, false) => "unknown".to_string(),
            },
            r.steps.to_string(),
            r.accuracy.map_or("-".to_string(), |a| format!("{a:.4}")),
            r.started.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.terminal()
}
