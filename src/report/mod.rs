//! `wmx report RUN`: one run's training curves and evaluation, drawn. Writes
//! `RUN/report/` with `index.html` (self-contained: charts inline as PNG data),
//! `report.md`, each chart as PNG and SVG under `charts/`, and the tables behind
//! them as parquet and CSV under `tables/`. `wmx run` writes it after evaluating.

pub mod charts;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use polars::prelude::{Column, DataFrame, DataType};
use serde_json::Value;

use crate::run::RunDir;
pub use charts::{Chart, Group, Series, smoothed};

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

fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let column = frame.column(name).with_context(|| format!("no column `{name}`"))?;
    let cast = column.cast(&DataType::Float64)?;
    Ok(cast.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn strings(frame: &DataFrame, name: &str) -> Result<Vec<String>> {
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

/// One row per question × exit from `eval/predictions.parquet`: (exit, outcome
/// category), where a trap's category names its kind.
fn outcomes(run: &Path) -> Result<Vec<(i64, String)>> {
    let path = run.join("eval/predictions.parquet");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let frame = crate::tables::read_parquet(&path)?;
    let exit = floats(&frame, "exit")?;
    let outcome = strings(&frame, "outcome")?;
    let detail = strings(&frame, "detail")?;
    Ok(exit
        .iter()
        .zip(outcome.iter().zip(&detail))
        .filter(|(e, (o, _))| e.is_finite() && !o.is_empty())
        .map(|(e, (o, d))| {
            let category = match o.as_str() {
                "trap" => format!("trap: {}", d.strip_prefix("trap: ").unwrap_or(d)),
                other => other.to_string(),
            };
            (*e as i64, category)
        })
        .collect())
}

/// Steps a curve's moving average spans: about 2% of the run, at least one.
pub fn smoothing_window(steps: usize) -> usize {
    (steps / 50).max(1)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A table for the report: markdown and HTML from the same rows, and a
/// DataFrame for parquet and CSV.
struct Table {
    name: String,
    caption: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    frame: DataFrame,
}

impl Table {
    fn markdown(&self) -> String {
        let mut md = format!("| {} |\n|{}|\n", self.header.join(" | "), vec!["---"; self.header.len()].join("|"));
        for row in &self.rows {
            md += &format!("| {} |\n", row.join(" | "));
        }
        md
    }

    fn html(&self) -> String {
        let mut html = format!("<table id=\"table-{}\"><thead><tr>", self.name);
        for h in &self.header {
            html += &format!("<th>{}</th>", escape(h));
        }
        html += "</tr></thead><tbody>";
        for row in &self.rows {
            html += "<tr>";
            for c in row {
                html += &format!("<td>{}</td>", escape(c));
            }
            html += "</tr>";
        }
        html + "</tbody></table>"
    }
}

fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

/// Writes `RUN/report/`. Works on a run at any point: what it lacks (no
/// evaluation yet, no steps yet) is left out and said so.
pub fn report(run: &Path) -> Result<Written> {
    let dir = RunDir::at(run);
    if !run.join("config.toml").exists() {
        return Err(crate::run::RunError::NotARun { path: run.to_path_buf() }.into());
    }
    let out = run.join("report");
    let chart_dir = out.join("charts");
    let table_dir = out.join("tables");
    for d in [&chart_dir, &table_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let meta = dir.meta();
    let summary = dir.summary();
    let metrics = Metrics::read(run)?;
    let label = dir.label();

    let mut charts: Vec<(String, Chart, String)> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    // Tables written outside `tables` (too long for the page).
    let mut table_names: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if let Some(m) = &metrics {
        let markers = m.stage_starts();
        let window = smoothing_window(m.step.len());
        let curve = |ys: &[f64]| smoothed(&m.step.iter().copied().zip(ys.iter().copied()).collect::<Vec<_>>(), window);
        let mut series = vec![Series { name: "text".into(), points: curve(&m.text_loss) }];
        for (k, column) in m.wat_loss.iter().enumerate() {
            series.push(Series { name: format!("WAT exit {k}"), points: curve(column) });
        }
        charts.push((
            "loss".into(),
            Chart::Lines {
                title: "Training loss per step, by stage".into(),
                x_label: "optimizer step".into(),
                y_label: "cross-entropy (log scale)".into(),
                series,
                markers: markers.clone(),
                log_y: true,
            },
            format!("Text-stream and per-exit WAT cross-entropy per optimizer step, as a moving average over {window} steps (raw values in metrics.parquet); rules mark where each curriculum stage starts."),
        ));
        charts.push((
            "throughput".into(),
            Chart::Lines {
                title: "Training throughput".into(),
                x_label: "optimizer step".into(),
                y_label: "tokens / s".into(),
                series: vec![Series { name: "tokens/s".into(), points: curve(&m.tokens_per_second) }],
                markers: markers.clone(),
                log_y: false,
            },
            format!("Tokens (text + WAT) processed per second of step time, as a moving average over {window} steps."),
        ));
        charts.push((
            "memory".into(),
            Chart::Lines {
                title: "Peak memory".into(),
                x_label: "optimizer step".into(),
                y_label: "peak RSS (MiB)".into(),
                series: vec![Series {
                    name: "peak RSS".into(),
                    points: m.step.iter().copied().zip(m.peak_rss_mib.iter().copied()).collect(),
                }],
                markers,
                log_y: false,
            },
            "The process's peak resident memory so far; it should step up only where a stage brings longer sequences.".into(),
        ));
        // Per stage: steps, time, mean throughput, final losses.
        let mut stage_rows: Vec<(String, usize, f64, f64, f64, f64)> = Vec::new();
        for (i, stage) in m.stage.iter().enumerate() {
            if stage_rows.last().is_none_or(|r| &r.0 != stage) {
                stage_rows.push((stage.clone(), 0, 0.0, 0.0, f64::NAN, f64::NAN));
            }
            let r = stage_rows.last_mut().expect("pushed above");
            r.1 += 1;
            r.2 += m.step_seconds[i];
            r.3 += m.tokens_per_second[i];
            r.4 = m.text_loss[i];
            r.5 = m.mean_wat_loss(i);
        }
        let frame = DataFrame::new_infer_height(vec![
            Column::new("stage".into(), stage_rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
            Column::new("steps".into(), stage_rows.iter().map(|r| r.1 as u64).collect::<Vec<_>>()),
            Column::new("step_seconds".into(), stage_rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            Column::new("mean_tokens_per_second".into(), stage_rows.iter().map(|r| r.3 / r.1 as f64).collect::<Vec<_>>()),
            Column::new("final_text_loss".into(), stage_rows.iter().map(|r| r.4).collect::<Vec<_>>()),
            Column::new("final_wat_loss".into(), stage_rows.iter().map(|r| r.5).collect::<Vec<_>>()),
        ])?;
        tables.push(Table {
            name: "training".into(),
            caption: "Training per stage".into(),
            header: ["stage", "steps", "step time (s)", "tokens/s", "final text loss", "final WAT loss"].map(String::from).to_vec(),
            rows: stage_rows
                .iter()
                .map(|r| {
                    vec![r.0.clone(), r.1.to_string(), format!("{:.0}", r.2), format!("{:.0}", r.3 / r.1 as f64), format!("{:.4}", r.4), format!("{:.4}", r.5)]
                })
                .collect(),
            frame,
        });
    } else {
        notes.push("No training steps are logged yet (`metrics.csv` is missing or empty).".into());
    }

    if let Some(s) = &summary {
        let exits = s["exits"].as_array().cloned().unwrap_or_default();
        // Accuracy by stage.
        let stages: Vec<(String, Value)> = s["stages"].as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default();
        charts.push((
            "accuracy-stage".into(),
            Chart::Bars {
                title: "Answer accuracy by stage".into(),
                x_label: "share of test questions answered right".into(),
                categories: stages.iter().map(|(n, v)| format!("{n} ({})", v["total"])).collect(),
                groups: vec![Group { name: "answer".into(), values: stages.iter().map(|(_, v)| v["accuracy"].as_f64()).collect() }],
                x_max: Some(1.0),
            },
            "The final answer (after selection and injection) against the expected one.".into(),
        ));
        tables.push(Table {
            name: "accuracy_by_stage".into(),
            caption: "Accuracy by stage".into(),
            header: ["stage", "right", "total", "accuracy"].map(String::from).to_vec(),
            rows: stages.iter().map(|(n, v)| vec![n.clone(), v["correct"].to_string(), v["total"].to_string(), fmt3(v["accuracy"].as_f64())]).collect(),
            frame: DataFrame::new_infer_height(vec![
                Column::new("stage".into(), stages.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
                Column::new("correct".into(), stages.iter().map(|(_, v)| v["correct"].as_u64()).collect::<Vec<_>>()),
                Column::new("total".into(), stages.iter().map(|(_, v)| v["total"].as_u64()).collect::<Vec<_>>()),
                Column::new("accuracy".into(), stages.iter().map(|(_, v)| v["accuracy"].as_f64()).collect::<Vec<_>>()),
            ])?,
        });

        // Accuracy by operation: the answer, and each exit's value.
        let ops: Vec<(String, Value)> = s["operations"].as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default();
        // Each group with its table column's name.
        let mut groups = vec![(
            "answer_accuracy".to_string(),
            Group { name: "answer".into(), values: ops.iter().map(|(_, v)| v["accuracy"].as_f64()).collect() },
        )];
        for e in &exits {
            groups.push((
                format!("exit{}_value_accuracy", e["exit"]),
                Group {
                    name: format!("exit {} value (layer {})", e["exit"], e["layer"]),
                    values: ops.iter().map(|(op, _)| e["per_operation"][op]["accuracy"].as_f64()).collect(),
                },
            ));
        }
        let mut columns = vec![
            Column::new("operation".into(), ops.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
            Column::new("total".into(), ops.iter().map(|(_, v)| v["total"].as_u64()).collect::<Vec<_>>()),
        ];
        let mut header = vec!["operation".to_string(), "total".into()];
        for (column, g) in &groups {
            header.push(g.name.clone());
            columns.push(Column::new(column.as_str().into(), g.values.clone()));
        }
        let groups: Vec<Group> = groups.into_iter().map(|(_, g)| g).collect();
        tables.push(Table {
            name: "accuracy_by_operation".into(),
            caption: "Accuracy by operation: the answer, and the value each exit computed".into(),
            rows: ops
                .iter()
                .enumerate()
                .map(|(i, (n, v))| {
                    let mut row = vec![n.clone(), v["total"].to_string()];
                    row.extend(groups.iter().map(|g| fmt3(g.values[i])));
                    row
                })
                .collect(),
            header,
            frame: DataFrame::new_infer_height(columns)?,
        });
        charts.push((
            "accuracy-operation".into(),
            Chart::Bars {
                title: "Accuracy by operation: answer, and each exit's value".into(),
                x_label: "share right".into(),
                categories: ops.iter().map(|(n, v)| format!("{n} ({})", v["total"])).collect(),
                groups,
                x_max: Some(1.0),
            },
            "Per operation the question needs: how often the final answer is right, and how often each exit's program computed the right value. An exit that is right where others are not has specialised.".into(),
        ));

        // Selection against the oracle.
        let sel = &s["selection"];
        let mut categories: Vec<String> = exits.iter().map(|e| format!("exit {} alone (layer {})", e["exit"], e["layer"])).collect();
        let mut values: Vec<Option<f64>> = exits.iter().map(|e| e["value_accuracy"].as_f64()).collect();
        categories.extend(["selection".to_string(), "oracle (any exit right)".into(), "answer".into()]);
        values.extend([sel["accuracy"].as_f64(), sel["oracle"].as_f64(), s["accuracy"].as_f64()]);
        tables.push(Table {
            name: "selection".into(),
            caption: "Selection against the oracle".into(),
            header: vec!["what".into(), "accuracy".into()],
            rows: categories.iter().zip(&values).map(|(c, v)| vec![c.clone(), fmt3(*v)]).collect(),
            frame: DataFrame::new_infer_height(vec![
                Column::new("what".into(), categories.clone()),
                Column::new("accuracy".into(), values.clone()),
            ])?,
        });
        charts.push((
            "selection".into(),
            Chart::Bars {
                title: "Selection against the oracle".into(),
                x_label: "share of questions whose value is right".into(),
                categories,
                groups: vec![Group { name: "accuracy".into(), values }],
                x_max: Some(1.0),
            },
            "Each exit on its own, the selected candidate, the oracle (some exit is right), and the final answer.".into(),
        ));

        // Per-layer confusion: the operation needed against the one emitted.
        let mut long: (Vec<u64>, Vec<String>, Vec<String>, Vec<u64>) = Default::default();
        let mut spec_rows = Vec::new();
        for e in &exits {
            let k = e["exit"].as_u64().unwrap_or(0);
            let confusion = e["confusion"].as_object().cloned().unwrap_or_default();
            let rows: Vec<String> = confusion.keys().cloned().collect();
            let columns: BTreeSet<String> = confusion
                .values()
                .filter_map(|v| v.as_object())
                .flat_map(|o| o.keys().cloned())
                .collect();
            // Needed operations first, in the rows' order, then anything else emitted.
            let mut cols: Vec<String> = rows.iter().filter(|r| columns.contains(*r)).cloned().collect();
            cols.extend(columns.iter().filter(|c| !rows.contains(c)).cloned());
            let counts: Vec<Vec<u64>> = rows
                .iter()
                .map(|r| cols.iter().map(|c| confusion[r][c].as_u64().unwrap_or(0)).collect())
                .collect();
            for (r, row) in rows.iter().zip(&counts) {
                for (c, &n) in cols.iter().zip(row) {
                    if n > 0 {
                        long.0.push(k);
                        long.1.push(r.clone());
                        long.2.push(c.clone());
                        long.3.push(n);
                    }
                }
            }
            spec_rows.push(vec![
                k.to_string(),
                e["layer"].to_string(),
                fmt3(e["value_accuracy"].as_f64()),
                fmt3(e["operation_accuracy"].as_f64()),
                fmt3(e["mutual_information_bits"].as_f64()),
                fmt3(e["selected"].as_f64()),
            ]);
            charts.push((
                format!("confusion-exit{k}"),
                Chart::Heatmap {
                    title: format!("Exit {k} (text layer {}): operation needed vs emitted", e["layer"]),
                    x_label: "operation the program performs".into(),
                    y_label: "operation the question needs".into(),
                    rows,
                    columns: cols,
                    counts,
                },
                format!(
                    "Counts of test questions; shading is the share of each row. Mutual information {:.2} bits, operation right {:.2}.",
                    e["mutual_information_bits"].as_f64().unwrap_or(0.0),
                    e["operation_accuracy"].as_f64().unwrap_or(0.0)
                ),
            ));
        }
        tables.push(Table {
            name: "specialization".into(),
            caption: "Per-exit specialization".into(),
            header: ["exit", "layer", "value right", "operation right", "MI (bits)", "selected"].map(String::from).to_vec(),
            frame: DataFrame::new_infer_height(vec![
                Column::new("exit".into(), exits.iter().map(|e| e["exit"].as_u64()).collect::<Vec<_>>()),
                Column::new("layer".into(), exits.iter().map(|e| e["layer"].as_u64()).collect::<Vec<_>>()),
                Column::new("value_accuracy".into(), exits.iter().map(|e| e["value_accuracy"].as_f64()).collect::<Vec<_>>()),
                Column::new("operation_accuracy".into(), exits.iter().map(|e| e["operation_accuracy"].as_f64()).collect::<Vec<_>>()),
                Column::new("mutual_information_bits".into(), exits.iter().map(|e| e["mutual_information_bits"].as_f64()).collect::<Vec<_>>()),
                Column::new("selected".into(), exits.iter().map(|e| e["selected"].as_f64()).collect::<Vec<_>>()),
            ])?,
            rows: spec_rows,
        });
        let mut confusion_frame = DataFrame::new_infer_height(vec![
            Column::new("exit".into(), long.0),
            Column::new("needed".into(), long.1),
            Column::new("emitted".into(), long.2),
            Column::new("count".into(), long.3),
        ])?;
        crate::tables::write_parquet(&mut confusion_frame, &table_dir.join("confusion.parquet"))?;
        crate::tables::write_csv(&mut confusion_frame, &table_dir.join("confusion.csv"))?;
        table_names.push("confusion".into());

        // What the candidates' executions ended in, per exit.
        let rows = outcomes(run)?;
        let kinds: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
        let kinds: Vec<String> = kinds.into_iter().collect();
        let n_exits = rows.iter().map(|r| r.0 + 1).max().unwrap_or(0);
        let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
        for r in &rows {
            *counts.entry(r.clone()).or_default() += 1;
        }
        if !kinds.is_empty() {
            let groups: Vec<Group> = (0..n_exits)
                .map(|k| Group {
                    name: format!("exit {k}"),
                    values: kinds.iter().map(|kind| counts.get(&(k, kind.clone())).map(|&c| c as f64)).collect(),
                })
                .collect();
            tables.push(Table {
                name: "outcomes".into(),
                caption: "How candidate programs ended, per exit".into(),
                header: std::iter::once("outcome".to_string()).chain((0..n_exits).map(|k| format!("exit {k}"))).collect(),
                rows: kinds
                    .iter()
                    .map(|kind| {
                        std::iter::once(kind.clone())
                            .chain((0..n_exits).map(|k| counts.get(&(k, kind.clone())).copied().unwrap_or(0).to_string()))
                            .collect()
                    })
                    .collect(),
                frame: DataFrame::new_infer_height(vec![
                    Column::new("exit".into(), counts.keys().map(|k| k.0).collect::<Vec<_>>()),
                    Column::new("outcome".into(), counts.keys().map(|k| k.1.clone()).collect::<Vec<_>>()),
                    Column::new("count".into(), counts.values().copied().collect::<Vec<_>>()),
                ])?,
            });
            charts.push((
                "outcomes".into(),
                Chart::Bars {
                    title: "How candidate programs ended: values, traps by kind, rejections".into(),
                    x_label: "candidates".into(),
                    categories: kinds,
                    groups,
                    x_max: None,
                },
                "Per exit, every test candidate's outcome: a value; a trap, by kind (fuel, deadline, memory, ...); a program that does not parse or validate (invalid); arguments that do not fit its parameters (mismatch); an import the policy denies.".into(),
            ));
        }
    } else {
        notes.push("The run has not been evaluated yet (`eval/summary.json` is missing): `wmx eval RUN` writes it.".into());
    }

    // Files.
    let mut chart_names = Vec::new();
    let mut figures = Vec::new();
    for (name, chart, caption) in &charts {
        let png = chart.png()?;
        let svg = chart.svg()?;
        crate::write_atomic(&chart_dir.join(format!("{name}.png")), &png)
            .with_context(|| format!("cannot write {}/{name}.png", chart_dir.display()))?;
        crate::write_atomic(&chart_dir.join(format!("{name}.svg")), svg.as_bytes())
            .with_context(|| format!("cannot write {}/{name}.svg", chart_dir.display()))?;
        chart_names.push(name.clone());
        figures.push((name.clone(), chart.title().to_string(), caption.clone(), png));
    }
    for t in &mut tables {
        crate::tables::write_parquet(&mut t.frame, &table_dir.join(format!("{}.parquet", t.name)))?;
        crate::tables::write_csv(&mut t.frame, &table_dir.join(format!("{}.csv", t.name)))?;
        table_names.push(t.name.clone());
    }

    // Headline facts.
    let mut facts: Vec<(String, String)> = vec![("run".into(), label.clone())];
    if let Some(m) = &meta {
        facts.push(("status".into(), format!("{:?}", m.status).to_lowercase()));
        facts.push(("backend".into(), format!("{} ({})", m.backend, m.device)));
        facts.push(("seed".into(), m.seed.to_string()));
        facts.push(("started".into(), m.started.clone()));
        facts.push(("ended".into(), m.ended.clone().unwrap_or_else(|| "-".into())));
        if let Some(c) = &m.git_commit {
            facts.push(("commit".into(), format!("{c}{}", if m.git_dirty == Some(true) { " (dirty)" } else { "" })));
        }
    }
    if let Some(m) = &metrics {
        facts.push(("optimizer steps".into(), m.step.len().to_string()));
        facts.push(("training step time".into(), format!("{:.0} s", m.step_seconds.iter().filter(|v| v.is_finite()).sum::<f64>())));
    }
    if let Some(s) = &summary {
        facts.push(("test accuracy".into(), format!("{:.3} ({}/{})", s["accuracy"].as_f64().unwrap_or(0.0), s["correct"], s["total"])));
    }

    // report.md
    let mut md = format!("# Run report: {label}\n\n");
    for (k, v) in &facts {
        md += &format!("- **{k}**: {v}\n");
    }
    for n in &notes {
        md += &format!("\n> {n}\n");
    }
    for (name, title, caption, _) in &figures {
        md += &format!("\n## {title}\n\n![{title}](charts/{name}.png)\n\n{caption} ([SVG](charts/{name}.svg))\n");
    }
    for t in &tables {
        md += &format!("\n## {}\n\n{}", t.caption, t.markdown());
    }
    md += &format!("\nTables as parquet and CSV in `tables/`: {}.\n", table_names.join(", "));
    crate::write_atomic(&out.join("report.md"), md.as_bytes())
        .with_context(|| format!("cannot write {}/report.md", out.display()))?;

    // index.html: one file, charts inline.
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
    );
    html += &format!("<title>wmx report: {}</title>\n", escape(&label));
    html += "<style>body{font-family:sans-serif;margin:24px auto;max-width:960px;color:#222}\
             dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{font-weight:bold}\
             figure{margin:24px 0}figure img{max-width:100%;border:1px solid #ddd}\
             figcaption{color:#555;font-size:14px}table{border-collapse:collapse;margin:8px 0 24px}\
             td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}\
             .note{background:#fff6d5;padding:8px 12px}</style></head><body>\n";
    html += &format!("<h1>Run report: {}</h1>\n<dl>", escape(&label));
    for (k, v) in &facts {
        html += &format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    html += "</dl>\n";
    for n in &notes {
        html += &format!("<p class=\"note\">{}</p>\n", escape(n));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    for (name, title, caption, png) in &figures {
        html += &format!(
            "<figure id=\"chart-{name}\"><h2>{}</h2><img class=\"chart\" alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
            escape(title),
            escape(title),
            engine.encode(png),
            escape(caption)
        );
    }
    for t in &tables {
        html += &format!("<h2>{}</h2>\n{}\n", escape(&t.caption), t.html());
    }
    // Marks how many charts the browser decoded, for the headless-browser test.
    html += "<script>window.addEventListener('load',()=>{const i=[...document.querySelectorAll('img.chart')];\
             document.body.dataset.chartsDrawn=i.filter(x=>x.complete&&x.naturalWidth>0).length;});</script>\n";
    html += "</body></html>\n";
    crate::write_atomic(&out.join("index.html"), html.as_bytes())
        .with_context(|| format!("cannot write {}/index.html", out.display()))?;

    Ok(Written { dir: out, charts: chart_names, tables: table_names })
}
