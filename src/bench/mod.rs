//! `wmx bench`: measurements printed as a table. Speed targets are checked here,
//! never by timed assertions in tests.

mod generate;
mod kernels;
mod model;
mod parity;
mod sandbox;
mod train;

pub use generate::GenerateBench;
pub use kernels::{KernelCheck, KernelsBench};
pub use model::{ModelBench, StepShape};
pub use parity::{ParityBench, ParityTrace, parity_line, trace_table};
pub use sandbox::sandbox;
pub use train::TrainBench;

/// One measured row.
pub struct Row {
    pub name: String,
    pub value: String,
    pub note: String,
}

/// Renders rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let mut table = crate::tables::TextTable::new(["benchmark", "result", "notes"]).right(&[1]);
    for r in rows {
        table.row([r.name.as_str(), r.value.as_str(), r.note.as_str()]);
    }
    table.terminal()
}


/// What a training-throughput or generation measurement found; printed as a
/// table row or as JSON for `bench/gpu.sh`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub what: String,
    pub backend: String,
    pub dtype: String,
    pub parameters: u64,
    pub batch: usize,
    pub seq: usize,
    /// Seconds per repetition after warm-up, in order.
    pub seconds: Vec<f64>,
    pub median_s: f64,
    /// Tokens per second at the median (training only).
    pub tokens_per_s: Option<f64>,
    /// Each phase of a training step timed apart (`wmx bench train --phases`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases_s: Option<Phases>,
}

/// Median seconds of each phase of a training step, the device synchronised
/// after each.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Phases {
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}


impl Measured {
    /// The measurement as table rows: the median, then throughput and phases where measured.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![Row {
            name: format!("{} ({}, {}, {:.0}M parameters)", self.what, self.backend, self.dtype, self.parameters as f64 / 1e6),
            value: format!("{:.2} ms", self.median_s * 1e3),
            note: format!("median of {}; batch {} × {} tokens", self.seconds.len(), self.batch, self.seq),
        }];
        if let Some(t) = self.tokens_per_s {
            rows.push(Row { name: "training throughput".into(), value: format!("{t:.0} tok/s"), note: String::new() });
        }
        if let Some(p) = &self.phases_s {
            let note = "median; the device synchronised after each phase";
            for (name, s) in [("forward + loss", p.forward), ("backward", p.backward), ("optimizer step", p.optimizer)] {
                rows.push(Row { name: name.into(), value: format!("{:.2} ms", s * 1e3), note: note.into() });
            }
        }
        rows
    }
}
