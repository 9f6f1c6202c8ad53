//! The report's training section: loss, throughput and memory per step, and a
//! table per stage.

use anyhow::Result;
use polars::prelude::{Column, DataFrame};

use super::page::Table;
use super::{Chart, Contents, Metrics, Series, smoothed, smoothing_window};

/// One stage's steps, step time, summed throughput and final losses.
struct StageRow {
    stage: String,
    steps: usize,
    seconds: f64,
    tokens_per_second: f64,
    text_loss: f64,
    wat_loss: f64,
}

pub(super) fn section(m: &Metrics, contents: &mut Contents) -> Result<()> {
    let markers = m.stage_starts();
    let window = smoothing_window(m.step.len());
    let curve = |ys: &[f64]| smoothed(&m.step.iter().copied().zip(ys.iter().copied()).collect::<Vec<_>>(), window);
    let mut series = vec![Series::line("text", curve(&m.text_loss))];
    for (k, column) in m.wat_loss.iter().enumerate() {
        series.push(Series::line(format!("WAT exit {k}"), curve(column)));
    }
    contents.figure(
        "loss",
        Chart::Lines {
            title: "Training loss per step, by stage".into(),
            x_label: "optimizer step".into(),
            y_label: "cross-entropy (log scale)".into(),
            series,
            markers: markers.clone(),
            log_y: true,
        },
        format!("Text-stream and per-exit WAT cross-entropy per optimizer step, as a moving average over {window} steps (raw values in metrics.parquet); rules mark where each curriculum stage starts."),
    );
    contents.figure(
        "throughput",
        Chart::Lines {
            title: "Training throughput".into(),
            x_label: "optimizer step".into(),
            y_label: "tokens / s".into(),
            series: vec![Series::line("tokens/s", curve(&m.tokens_per_second))],
            markers: markers.clone(),
            log_y: false,
        },
        format!("Tokens (text + WAT) processed per second of step time, as a moving average over {window} steps."),
    );
    contents.figure(
        "memory",
        Chart::Lines {
            title: "Peak memory".into(),
            x_label: "optimizer step".into(),
            y_label: "peak RSS (MiB)".into(),
            series: vec![Series::line("peak RSS", m.step.iter().copied().zip(m.peak_rss_mib.iter().copied()).collect())],
            markers,
            log_y: false,
        },
        "The process's peak resident memory so far; it should step up only where a stage brings longer sequences.",
    );
    contents.tables.push(stage_table(&stage_rows(m))?);
    Ok(())
}

fn stage_rows(m: &Metrics) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = Vec::new();
    for (i, stage) in m.stage.iter().enumerate() {
        if rows.last().is_none_or(|r| &r.stage != stage) {
            rows.push(StageRow {
                stage: stage.clone(),
                steps: 0,
                seconds: 0.0,
                tokens_per_second: 0.0,
                text_loss: f64::NAN,
                wat_loss: f64::NAN,
            });
        }
        let r = rows.last_mut().expect("pushed above");
        r.steps += 1;
        r.seconds += m.step_seconds[i];
        r.tokens_per_second += m.tokens_per_second[i];
        r.text_loss = m.text_loss[i];
        r.wat_loss = m.mean_wat_loss(i);
    }
    rows
}

fn stage_table(rows: &[StageRow]) -> Result<Table> {
    let mean_throughput = |r: &StageRow| r.tokens_per_second / r.steps as f64;
    let frame = DataFrame::new_infer_height(vec![
        Column::new("stage".into(), rows.iter().map(|r| r.stage.clone()).collect::<Vec<_>>()),
        Column::new("steps".into(), rows.iter().map(|r| r.steps as u64).collect::<Vec<_>>()),
        Column::new("step_seconds".into(), rows.iter().map(|r| r.seconds).collect::<Vec<_>>()),
        Column::new("mean_tokens_per_second".into(), rows.iter().map(mean_throughput).collect::<Vec<_>>()),
        Column::new("final_text_loss".into(), rows.iter().map(|r| r.text_loss).collect::<Vec<_>>()),
        Column::new("final_wat_loss".into(), rows.iter().map(|r| r.wat_loss).collect::<Vec<_>>()),
    ])?;
    Ok(Table {
        name: "training".into(),
        caption: "Training per stage".into(),
        header: ["stage", "steps", "step time (s)", "tokens/s", "final text loss", "final WAT loss"].map(String::from).to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.stage.clone(),
                    r.steps.to_string(),
                    format!("{:.0}", r.seconds),
                    format!("{:.0}", mean_throughput(r)),
                    format!("{:.4}", r.text_loss),
                    format!("{:.4}", r.wat_loss),
                ]
            })
            .collect(),
        frame,
    })
}
