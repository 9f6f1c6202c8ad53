//! `metrics.csv`: one row per optimizer step, appended as training goes; a resumed
//! run continues it from its checkpoint's step.

use std::path::Path;

use anyhow::{Context, Result};

use crate::train::fit::StepReport;

/// `metrics.csv`, open for appending.
pub struct MetricsCsv {
    writer: csv::Writer<std::fs::File>,
}

/// The columns before and after the per-exit WAT losses.
const LEADING: [&str; 5] = ["stage", "epoch", "step", "learning_rate", "text_loss"];
const TRAILING: [&str; 4] = ["grad_norm", "step_seconds", "tokens_per_second", "peak_rss_mib"];

impl MetricsCsv {
    /// Opens for appending after `resume_step`: rows of later steps (written before an
    /// interruption, after the last checkpoint) and any torn last line are dropped.
    pub fn open(path: &Path, exits: usize, resume_step: usize) -> Result<MetricsCsv> {
        let wat: Vec<String> = (0..exits).map(|k| format!("wat_loss_{k}")).collect();
        let header: Vec<&str> = LEADING.iter().copied().chain(wat.iter().map(String::as_str)).chain(TRAILING).collect();
        let kept = match std::fs::read(path) {
            Ok(bytes) => rows_up_to(&bytes, resume_step).with_context(|| format!("cannot read {}", path.display()))?,
            Err(_) => Vec::new(),
        };
        let mut rewritten = csv::Writer::from_writer(Vec::new());
        rewritten.write_record(&header)?;
        for row in &kept {
            rewritten.write_record(row)?;
        }
        let bytes = rewritten.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::fs::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsCsv { writer: csv::Writer::from_writer(file) })
    }

    /// Appends one step's row and flushes it to the file.
    pub fn append(&mut self, r: &StepReport) -> std::io::Result<()> {
        let mut row = vec![
            r.stage.clone(),
            r.epoch.to_string(),
            r.step.to_string(),
            format!("{:.6e}", r.learning_rate),
            format!("{:.6}", r.text_loss),
        ];
        row.extend(r.wat_losses.iter().map(|l| format!("{l:.6}")));
        row.extend([
            format!("{:.6}", r.grad_norm),
            format!("{:.4}", r.seconds),
            format!("{:.1}", r.tokens as f64 / r.seconds.max(1e-9)),
            format!("{:.1}", peak_rss_mib()),
        ]);
        self.writer.write_record(&row).map_err(std::io::Error::other)?;
        self.writer.flush()
    }
}

/// The complete rows of `bytes` (a torn last line dropped) whose step is at most `last`.
fn rows_up_to(bytes: &[u8], last: usize) -> Result<Vec<csv::StringRecord>> {
    let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(complete);
    let step = reader.headers()?.iter().position(|h| h == "step").context("no `step` column")?;
    let mut kept = Vec::new();
    for record in reader.records() {
        let record = record?;
        if record.get(step).and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= last) {
            kept.push(record);
        }
    }
    Ok(kept)
}

/// The process's peak resident memory, from /proc (0 where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_rows_up_to_the_checkpoint_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let header = "stage,epoch,step,learning_rate,text_loss,wat_loss_0,grad_norm,step_seconds,tokens_per_second,peak_rss_mib";
        let row = |step: usize| format!("arithmetic,0,{step},1.000000e-3,2.500000,3.000000,1.000000,0.1000,100.0,50.0");
        std::fs::write(&path, format!("{header}\n{}\n{}\n{}\narith", row(1), row(2), row(3))).unwrap();
        drop(MetricsCsv::open(&path, 1, 2).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{header}\n{}\n{}\n", row(1), row(2)));
    }
}
