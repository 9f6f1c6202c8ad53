//! Comparing runs: the config keys that differ, final metrics side by side,
//! accuracy per operation, per-exit specialization, and the loss curves as one
//! long table. Runs that differ only in seed form a group: mean ± sd and bootstrap
//! intervals per group, loss curves as a mean with a band, and paired tests between
//! groups on the same questions ([`stats`]). Written as `reports/<name>/`: a
//! self-contained `index.html` and `report.md` (like a run's report), charts and
//! tables, and `comparison.parquet`/`losses.parquet` (with CSVs) beside them.

pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame};

mod groups;

use crate::rundir::summary::Summary;
use crate::report::fmt3;

/// What a finished (or partial) run contributes to a comparison.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub path: PathBuf,
    /// `experiment/id`.
    pub label: String,
    /// The resolved config, flattened to dotted keys.
    pub config: BTreeMap<String, String>,
    pub summary: Option<Summary>,
    pub status: String,
    /// (step, stage, text loss, mean WAT loss) per optimizer step.
    pub losses: Vec<(i64, String, f64, f64)>,
    /// Question id → whether the final answer was right (`eval/answers.jsonl`).
    pub answers: BTreeMap<String, bool>,
}

/// The fields of an `answers.jsonl` line a comparison reads.
#[derive(serde::Deserialize)]
struct AnswerLine {
    id: String,
    correct: bool,
}

/// `eval/answers.jsonl` of `run`: question id → right or not (empty when absent).
fn read_answers(run: &Path) -> Result<BTreeMap<String, bool>> {
    let path = run.join("eval/answers.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(BTreeMap::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let a: AnswerLine = serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))?;
            Ok((a.id, a.correct))
        })
        .collect()
}

/// A TOML table's leaves as dotted keys (`train.batch_size`) and their values as TOML.
pub(crate) fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

impl RunFacts {
    pub fn read(path: &Path) -> Result<RunFacts> {
        let config_path = path.join("config.toml");
        let text = std::fs::read_to_string(&config_path).map_err(|_| crate::rundir::RunError::NotARun {
            path: path.to_path_buf(),
        })?;
        let table: toml::Value = toml::from_str(&text)
            .with_context(|| format!("cannot parse {}", config_path.display()))?;
        let mut config = BTreeMap::new();
        flatten("", &table, &mut config);
        let dir = crate::rundir::RunDir::at(path);
        let summary = dir.summary();
        let status = dir
            .meta()
            .map_or_else(|| "unknown".into(), |m| format!("{:?}", m.status).to_lowercase());
        let losses = match crate::report::Metrics::read(path)? {
            Some(m) => (0..m.step.len())
                .map(|i| (m.step[i] as i64, m.stage[i].clone(), m.text_loss[i], m.mean_wat_loss(i)))
                .collect(),
            None => Vec::new(),
        };
        Ok(RunFacts {
            label: dir.label(),
            path: path.to_path_buf(),
            config,
            summary,
            status,
            losses,
            answers: read_answers(path)?,
        })
    }
}

/// Config keys whose values are not the same in every run (a key missing from
/// some runs counts as differing).
pub fn differing_keys(runs: &[RunFacts]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let first = runs[0].config.get(*k);
            runs.iter().any(|r| r.config.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// The numeric columns of the comparison: per run, in run order.
type Numbers = Vec<(String, Vec<Option<f64>>)>;

/// Writes the comparison into `out`; returns the `report.md` it wrote.
pub fn compare(runs: &[RunFacts], out: &Path) -> Result<String> {
    anyhow::ensure!(!runs.is_empty(), "nothing to compare");
    // A run named twice (two sweep members resolving to it, say) is compared once.
    let mut unique: Vec<RunFacts> = Vec::new();
    for r in runs {
        if !unique.iter().any(|u| u.path == r.path) {
            unique.push(r.clone());
        }
    }
    let runs = &unique[..];
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let keys = differing_keys(runs);
    let ops: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r.summary.as_ref())
        .flat_map(|s| s.operations.keys().cloned())
        .collect();
    let exits = runs
        .iter()
        .filter_map(|r| r.summary.as_ref().map(|s| s.exits.len()))
        .max()
        .unwrap_or(0);
    let numbers = run_table(runs, &keys, &ops, exits, out)?;
    loss_table(runs, out)?;
    let mut contents = crate::report::Contents::default();
    if keys.is_empty() {
        contents.notes.push("The runs share every config key.".into());
    }
    contents.figure("losses", loss_chart(runs, &keys), "Each run's curves, smoothed over about 2% of its steps; `losses.parquet` has every step.");
    // Seed groups first: what the comparison concludes, then the runs one by one.
    let groups = Group::of(runs, &keys);
    if groups.iter().any(|g| g.members.len() > 1) {
        groups::section(runs, &groups, &mut contents)?;
    }
    page_tables(runs, &keys, &ops, exits, &numbers, &mut contents)?;
    let label = out.file_name().and_then(|n| n.to_str()).unwrap_or("compare").to_string();
    let facts = vec![
        ("runs".to_string(), runs.len().to_string()),
        ("differing keys".to_string(), if keys.is_empty() { "none".into() } else { keys.join(", ") }),
    ];
    crate::report::write_page(out, "Comparison", &label, &facts, contents)?;
    std::fs::read_to_string(out.join("report.md")).with_context(|| format!("cannot read {}/report.md", out.display()))
}

/// Runs that differ only in seed: one group, named by the other differing keys.
pub struct Group {
    pub label: String,
    /// Indices into the compared runs.
    pub members: Vec<usize>,
}

impl Group {
    /// The runs grouped by every differing key but `seed`, in first-seen order.
    pub fn of(runs: &[RunFacts], keys: &[String]) -> Vec<Group> {
        let others: Vec<String> = keys.iter().filter(|k| *k != "seed").cloned().collect();
        let mut groups: Vec<Group> = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let label = if others.is_empty() { "all runs".to_string() } else { short_label(r, &others) };
            match groups.iter_mut().find(|g| g.label == label) {
                Some(g) => g.members.push(i),
                None => groups.push(Group { label, members: vec![i] }),
            }
        }
        groups
    }
}

/// `comparison.parquet`/`.csv`: one row per run, the differing keys and the metrics.
fn run_table(runs: &[RunFacts], keys: &[String], ops: &BTreeSet<String>, exits: usize, out: &Path) -> Result<Numbers> {
    let mut columns: Vec<(String, Vec<Option<String>>)> = Vec::new();
    let mut numbers: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    columns.push(("run".into(), runs.iter().map(|r| Some(r.label.clone())).collect()));
    columns.push(("status".into(), runs.iter().map(|r| Some(r.status.clone())).collect()));
    for k in keys {
        columns.push((k.clone(), runs.iter().map(|r| r.config.get(k).cloned()).collect()));
    }
    let from_summary = |f: &dyn Fn(&Summary) -> Option<f64>| -> Vec<Option<f64>> {
        runs.iter().map(|r| r.summary.as_ref().and_then(f)).collect()
    };
    numbers.push(("accuracy".into(), from_summary(&|s| Some(s.accuracy))));
    numbers.push(("selection".into(), from_summary(&|s| Some(s.selection.accuracy))));
    numbers.push(("oracle".into(), from_summary(&|s| Some(s.selection.oracle))));
    for k in 0..exits {
        numbers.push((format!("exit{k}_value"), from_summary(&|s| s.exits.get(k).map(|e| e.value_accuracy))));
        numbers.push((format!("exit{k}_selected"), from_summary(&|s| s.exits.get(k).map(|e| e.selected))));
        numbers.push((format!("exit{k}_mi_bits"), from_summary(&|s| s.exits.get(k).map(|e| e.mutual_information_bits))));
    }
    for op in ops {
        numbers.push((format!("op_{op}"), from_summary(&|s| s.operations.get(op).map(|t| t.accuracy))));
    }
    numbers.push((
        "final_text_loss".into(),
        runs.iter().map(|r| r.losses.last().map(|l| l.2)).collect(),
    ));
    numbers.push((
        "final_wat_loss".into(),
        runs.iter().map(|r| r.losses.last().map(|l| l.3)).collect(),
    ));
    let mut frame = DataFrame::new_infer_height(
        columns
            .iter()
            .map(|(n, v)| Column::new(n.as_str().into(), v.clone()))
            .chain(numbers.iter().map(|(n, v)| Column::new(n.as_str().into(), v.clone())))
            .collect(),
    )?;
    crate::tables::write_parquet(&mut frame, &out.join("comparison.parquet"))?;
    crate::tables::write_csv(&mut frame, &out.join("comparison.csv"))?;

    Ok(numbers)
}

/// `losses.parquet`/`.csv`: the loss curves, one row per run × step.
fn loss_table(runs: &[RunFacts], out: &Path) -> Result<()> {
    let (mut run, mut step, mut stage, mut text, mut wat) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in runs {
        for (s, st, t, w) in &r.losses {
            run.push(r.label.clone());
            step.push(*s);
            stage.push(st.clone());
            text.push(*t);
            wat.push(*w);
        }
    }
    let mut curves = DataFrame::new_infer_height(vec![
        Column::new("run".into(), run),
        Column::new("step".into(), step),
        Column::new("stage".into(), stage),
        Column::new("text_loss".into(), text),
        Column::new("wat_loss".into(), wat),
    ])?;
    crate::tables::write_parquet(&mut curves, &out.join("losses.parquet"))?;
    crate::tables::write_csv(&mut curves, &out.join("losses.csv"))?;

    Ok(())
}

/// Every run's loss curves overlaid (the page's `losses` chart).
fn loss_chart(runs: &[RunFacts], keys: &[String]) -> crate::report::Chart {
    let mut series = Vec::new();
    for r in runs {
        let name = short_label(r, keys);
        let window = crate::report::smoothing_window(r.losses.len());
        let text: Vec<(f64, f64)> = r.losses.iter().map(|l| (l.0 as f64, l.2)).collect();
        let wat: Vec<(f64, f64)> = r.losses.iter().map(|l| (l.0 as f64, l.3)).collect();
        series.push(crate::report::Series::line(format!("{name} text"), crate::report::smoothed(&text, window)));
        series.push(crate::report::Series::line(format!("{name} WAT"), crate::report::smoothed(&wat, window)));
    }
    crate::report::Chart::Lines {
        title: "Loss per step (moving average): text and mean WAT, per run".into(),
        x_label: "optimizer step".into(),
        y_label: "cross-entropy (log scale)".into(),
        series,
        markers: Vec::new(),
        log_y: true,
    }
}

/// The page's tables: the runs side by side, then per exit and per operation.
fn page_tables(
    runs: &[RunFacts],
    keys: &[String],
    ops: &BTreeSet<String>,
    exits: usize,
    numbers: &Numbers,
    contents: &mut crate::report::Contents,
) -> Result<()> {
    let number = |name: &str, i: usize| numbers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v[i]);
    let metrics = ["accuracy", "selection", "oracle"];
    let mut header = vec!["run".to_string(), "status".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(metrics.map(String::from));
    let rows = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut cells = vec![r.label.clone(), r.status.clone()];
            cells.extend(keys.iter().map(|k| r.config.get(k).cloned().unwrap_or_else(|| "-".into())));
            cells.extend(metrics.map(|name| fmt3(number(name, i))));
            cells
        })
        .collect();
    contents.tables.push(text_table("runs", "The runs, with only the config keys that differ", header, rows)?);
    if exits > 0 {
        let header = std::iter::once("run".to_string()).chain((0..exits).map(|k| format!("exit {k}"))).collect();
        let rows = runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut cells = vec![r.label.clone()];
                for k in 0..exits {
                    let [value, selected, mi] = ["value", "selected", "mi_bits"].map(|m| fmt3(number(&format!("exit{k}_{m}"), i)));
                    cells.push(format!("{value} / {selected} / {mi}"));
                }
                cells
            })
            .collect();
        let caption = "Per-exit specialization: value accuracy / share selected / mutual information (bits) between the operation needed and the one emitted";
        contents.tables.push(text_table("exits", caption, header, rows)?);
    }
    if !ops.is_empty() {
        let header = std::iter::once("operation".to_string()).chain(runs.iter().map(|r| r.label.clone())).collect();
        let rows = ops
            .iter()
            .map(|op| {
                let mut cells = vec![op.clone()];
                cells.extend((0..runs.len()).map(|i| fmt3(number(&format!("op_{op}"), i))));
                cells
            })
            .collect();
        contents.tables.push(text_table("operations", "Accuracy per operation", header, rows)?);
    }
    Ok(())
}

/// A page table whose parquet and CSV hold the same cells as text.
fn text_table(name: &str, caption: &str, header: Vec<String>, rows: Vec<Vec<String>>) -> Result<crate::report::Table> {
    // Column names are unique in a frame: a repeated header gets its position.
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(c, h)| if header[..c].contains(h) { format!("{h} ({})", c + 1) } else { h.clone() })
        .collect();
    let frame = DataFrame::new_infer_height(
        names
            .iter()
            .enumerate()
            .map(|(c, h)| Column::new(h.as_str().into(), rows.iter().map(|r| r[c].clone()).collect::<Vec<_>>()))
            .collect(),
    )?;
    Ok(crate::report::Table { name: name.into(), caption: caption.into(), header, rows, frame })
}

/// A run's name in legends: the values of the differing keys, else its label.
fn short_label(run: &RunFacts, keys: &[String]) -> String {
    if keys.is_empty() {
        return run.label.clone();
    }
    keys.iter()
        .map(|k| format!("{}={}", k.rsplit('.').next().unwrap_or(k), run.config.get(k).map_or("-", String::as_str)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(config: &str) -> RunFacts {
        let mut map = BTreeMap::new();
        flatten("", &toml::from_str(config).unwrap(), &mut map);
        RunFacts {
            path: PathBuf::new(),
            label: String::new(),
            config: map,
            summary: None,
            status: "complete".into(),
            losses: Vec::new(),
            answers: BTreeMap::new(),
        }
    }

    #[test]
    fn only_differing_keys_are_kept() {
        let a = facts("seed = 0\n[fusion]\nlayers = [1, 2]\ngate_init = 0.0\n");
        let b = facts("seed = 0\n[fusion]\nlayers = [3]\ngate_init = 0.0\n");
        let c = facts("seed = 0\n[fusion]\nlayers = [1, 2]\ngate_init = 0.0\nextra = 1\n");
        assert_eq!(differing_keys(&[a.clone(), b]), vec!["fusion.layers".to_string()]);
        assert_eq!(differing_keys(&[a, c]), vec!["fusion.extra".to_string()]);
    }
}
