//! `wmx report RUN`: one run's training curves and evaluation, drawn. Writes
//! `RUN/report/` with `index.html` (self-contained: charts inline as PNG data),
//! `report.md`, each chart as PNG and SVG under `charts/`, and the tables behind
//! them as parquet and CSV under `tables/`. `wmx run` writes it after evaluating.

pub mod charts;
mod evaluation;
mod page;
mod training;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use polars::prelude::{DataFrame, DataType};

use crate::rundir::summary::Summary;
use crate::rundir::{Meta, RunDir};
pub use charts::{Chart, Group, Series, smoothed};
pub(crate) use page::Table;

/// A run's per-step training metrics (`metrics.csv`), read through Polars.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub stage: Vec<String>,
    pub step: Vec<f64>,
    pub text_loss: Vec<f64>,
    /// One column per exit.
    pub wat_loss: Vec<Vec<f64>>,
    pub tokens_per_second: Vec<f64>,
    pub step_seconds: Vec<f64>,
    pub peak_rss_mib: Vec<f64>,
}

pub(crate) fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let column = frame.column(name).with_context(|| format!("no column `{name}`"))?;
    let cast = column.cast(&DataType::Float64)?;
    Ok(cast.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

pub(crate) fn strings(frame: &DataFrame, name: &str) -> Result<Vec<String>> {
    let column = frame.column(name).with_context(|| format!("no column `{name}`"))?;
    let cast = column.cast(&DataType::String)?;
    Ok(cast.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

impl Metrics {
    /// `RUN/metrics.csv`; `None` when the run has not logged a step yet.
    pub fn read(run: &Path) -> Result<Option<Metrics>> {
        let path = run.join("metrics.csv");
        if !path.exists() {
            return Ok(None);
        }
        let frame = crate::tables::read_csv(&path)?;
        if frame.height() == 0 {
            return Ok(None);
        }
        let context = || format!("{} is not a wmx metrics table", path.display());
        let mut wat_names: Vec<String> = frame
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .filter(|n| n.starts_with("wat_loss_"))
            .collect();
        wat_names.sort_by_key(|n| n["wat_loss_".len()..].parse::<usize>().unwrap_or(usize::MAX));
        Ok(Some(Metrics {
            stage: strings(&frame, "stage").with_context(context)?,
            step: floats(&frame, "step").with_context(context)?,
            text_loss: floats(&frame, "text_loss").with_context(context)?,
            wat_loss: wat_names
                .iter()
                .map(|n| floats(&frame, n))
                .collect::<Result<_>>()
                .with_context(context)?,
            tokens_per_second: floats(&frame, "tokens_per_second").with_context(context)?,
            step_seconds: floats(&frame, "step_seconds").with_context(context)?,
            peak_rss_mib: floats(&frame, "peak_rss_mib").with_context(context)?,
        }))
    }

    /// The mean WAT loss over exits at row `i`.
    pub fn mean_wat_loss(&self, i: usize) -> f64 {
        let values: Vec<f64> = self.wat_loss.iter().map(|c| c[i]).filter(|v| v.is_finite()).collect();
        if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
    }

    /// Where each stage starts: (first step, stage name), in training order.
    pub fn stage_starts(&self) -> Vec<(f64, String)> {
        let mut out: Vec<(f64, String)> = Vec::new();
        for (step, stage) in self.step.iter().zip(&self.stage) {
            if out.last().is_none_or(|(_, s)| s != stage) {
                out.push((*step, stage.clone()));
            }
        }
        out
    }
}

/// What `report` wrote.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub charts: Vec<String>,
    pub tables: Vec<String>,
}

/// Steps a curve's moving average spans: about 2% of the run, at least one.
pub fn smoothing_window(steps: usize) -> usize {
    (steps / 50).max(1)
}

/// A chart on the page, with the name its files take and its caption.
pub(crate) struct Figure {
    name: String,
    chart: Chart,
    caption: String,
}

/// What a report shows, in page order.
#[derive(Default)]
pub(crate) struct Contents {
    figures: Vec<Figure>,
    pub(crate) tables: Vec<Table>,
    /// Tables written to `tables/` only: too long for the page.
    files_only: Vec<(String, DataFrame)>,
    /// What the run lacks, said at the top of the page.
    pub(crate) notes: Vec<String>,
}

impl Contents {
    pub(crate) fn figure(&mut self, name: impl Into<String>, chart: Chart, caption: impl Into<String>) {
        self.figures.push(Figure { name: name.into(), chart, caption: caption.into() });
    }
}

/// A share or measurement in tables: three decimals, `-` where there is none.
pub(crate) fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

/// Writes `RUN/report/`. Works on a run at any point: what it lacks (no
/// evaluation yet, no steps yet) is left out and said so.
pub fn report(run: &Path) -> Result<Written> {
    let dir = RunDir::at(run);
    if !run.join("config.toml").exists() {
        return Err(crate::rundir::RunError::NotARun { path: run.to_path_buf() }.into());
    }
    let out = run.join("report");
    let meta = dir.meta();
    let summary = dir.summary();
    let metrics = Metrics::read(run)?;
    let mut contents = Contents::default();
    match &metrics {
        Some(m) => training::section(m, &mut contents)?,
        None => contents.notes.push("No training steps are logged yet (`metrics.csv` is missing or empty).".into()),
    }
    match &summary {
        Some(s) => evaluation::section(s, run, &mut contents)?,
        None => contents
            .notes
            .push("The run has not been evaluated yet (`eval/summary.json` is missing): `wmx eval RUN` writes it.".into()),
    }
    let label = dir.label();
    let facts = facts(&label, meta.as_ref(), metrics.as_ref(), summary.as_ref());
    write_page(&out, "Run report", &label, &facts, contents)
}

/// Writes a page of `contents` into `out`: `index.html` (self-contained),
/// `report.md`, each chart as PNG and SVG under `charts/` and each table as parquet
/// and CSV under `tables/`. `heading` opens the page ("Run report", "Comparison").
pub(crate) fn write_page(out: &Path, heading: &str, label: &str, facts: &[(String, String)], mut contents: Contents) -> Result<Written> {
    let chart_dir = out.join("charts");
    let table_dir = out.join("tables");
    for d in [&chart_dir, &table_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let pngs = write_charts(&contents, &chart_dir)?;
    let tables = write_tables(&mut contents, &table_dir)?;
    page::write(out, heading, label, facts, &contents, &pngs, &tables)?;
    let charts = contents.figures.iter().map(|f| f.name.clone()).collect();
    Ok(Written { dir: out.to_path_buf(), charts, tables })
}

/// Each chart as PNG and SVG; returns the PNGs, in order, for the page.
fn write_charts(contents: &Contents, dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut pngs = Vec::new();
    for Figure { name, chart, .. } in &contents.figures {
        let png = chart.png()?;
        let svg = chart.svg()?;
        crate::fs::write_atomic(&dir.join(format!("{name}.png")), &png)
            .with_context(|| format!("cannot write {}/{name}.png", dir.display()))?;
        crate::fs::write_atomic(&dir.join(format!("{name}.svg")), svg.as_bytes())
            .with_context(|| format!("cannot write {}/{name}.svg", dir.display()))?;
        pngs.push(png);
    }
    Ok(pngs)
}

/// Every table as parquet and CSV; returns their names.
fn write_tables(contents: &mut Contents, dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let files_only = contents.files_only.iter_mut().map(|(n, f)| (&*n, f));
    for (name, frame) in files_only.chain(contents.tables.iter_mut().map(|t| (&t.name, &mut t.frame))) {
        crate::tables::write_parquet(frame, &dir.join(format!("{name}.parquet")))?;
        crate::tables::write_csv(frame, &dir.join(format!("{name}.csv")))?;
        names.push(name.clone());
    }
    Ok(names)
}

/// The headline facts at the top of the page.
fn facts(label: &str, meta: Option<&Meta>, metrics: Option<&Metrics>, summary: Option<&Summary>) -> Vec<(String, String)> {
    let mut facts: Vec<(String, String)> = vec![("run".into(), label.to_string())];
    if let Some(m) = meta {
        facts.push(("status".into(), format!("{:?}", m.status).to_lowercase()));
        facts.push(("backend".into(), format!("{} ({})", m.backend, m.device)));
        facts.push(("seed".into(), m.seed.to_string()));
        facts.push(("started".into(), m.started.clone()));
        facts.push(("ended".into(), m.ended.clone().unwrap_or_else(|| "-".into())));
        if let Some(c) = &m.git_commit {
            facts.push(("commit".into(), format!("{c}{}", if m.git_dirty == Some(true) { " (dirty)" } else { "" })));
        }
    }
    if let Some(m) = metrics {
        facts.push(("optimizer steps".into(), m.step.len().to_string()));
        let seconds: f64 = m.step_seconds.iter().filter(|v| v.is_finite()).sum();
        facts.push(("training step time".into(), format!("{seconds:.0} s")));
    }
    if let Some(s) = summary {
        facts.push(("test accuracy".into(), format!("{:.3} ({}/{})", s.accuracy, s.correct, s.total)));
    }
    facts
}
