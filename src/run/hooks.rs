//! What training reports to the run as it goes: each step's metrics row, progress
//! bar and tracking; checkpoints on schedule and at each epoch's end; a stop on a
//! signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;

use super::tracking;
use crate::model::world::WorldModel;
use crate::rundir::RunDir;
use crate::rundir::checkpoint::Checkpoints;
use crate::rundir::metrics::MetricsCsv;
use crate::train::fit::{Control, Cursor, Hooks, StepReport};

/// The training bar on a terminal: stage, epoch, losses, tokens/s and the time left
/// (set by each step's report). Piped output, or `-q`, keeps plain log lines only.
pub(super) fn show_progress(dir: &RunDir, total: usize, done: usize) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || !log::log_enabled!(log::Level::Info) {
        return;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:24}] step {pos}/{len} · {elapsed} elapsed, ETA {eta}")
        .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_position(done as u64);
    bar.reset_eta();
    let _ = dir.progress.set(bar);
}

pub(super) struct RunHooks<'a> {
    pub(super) dir: &'a RunDir,
    pub(super) checkpoints: &'a Checkpoints,
    pub(super) every_fraction: f64,
    pub(super) every_seconds: f64,
    pub(super) last_save: Instant,
    pub(super) interrupted: &'static AtomicBool,
    pub(super) tracker: Option<&'a std::sync::Mutex<tracking::Tracker>>,
    pub(super) metrics: MetricsCsv,
    pub(super) epochs: Vec<usize>,
    pub(super) stage_names: Vec<String>,
    pub(super) error: Option<anyhow::Error>,
}

impl<B: AutodiffBackend, O: Optimizer<WorldModel<B>, B>> Hooks<B, O> for RunHooks<'_> {
    fn after_step(
        &mut self,
        r: &StepReport,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
    ) -> Control {
        if let Err(e) = self.metrics.append(r) {
            self.error = Some(anyhow::anyhow!("cannot append to metrics.csv: {e}"));
            return Control::Stop;
        }
        if let Some(mut tracker) = self.tracker.and_then(|t| t.lock().ok()) {
            tracker.step(r);
        }
        if let Some(bar) = self.dir.progress.get() {
            let wat = r.wat_losses.iter().sum::<f64>() / r.wat_losses.len().max(1) as f64;
            bar.set_position(r.step as u64);
            bar.set_message(format!(
                "{} epoch {}/{} · text {:.3} · wat {:.3} · {:.0} tok/s",
                r.stage,
                r.epoch + 1,
                self.epochs[cursor.stage.min(self.epochs.len() - 1)],
                r.text_loss,
                wat,
                r.tokens as f64 / r.seconds.max(1e-9)
            ));
        }
        let interval = ((r.steps_in_epoch as f64 * self.every_fraction).ceil() as usize).max(1);
        let due = cursor.step_in_epoch.is_multiple_of(interval)
            || self.last_save.elapsed().as_secs_f64() >= self.every_seconds;
        let stop = self.interrupted.load(Ordering::SeqCst);
        if (due || stop) && cursor.step_in_epoch < r.steps_in_epoch {
            if let Err(e) = self.checkpoints.save(model, optim, cursor, None) {
                self.error = Some(e.into());
                return Control::Stop;
            }
            self.last_save = Instant::now();
        }
        if cursor.step_in_epoch == r.steps_in_epoch || cursor.step_in_epoch.is_multiple_of(interval)
        {
            let wat: Vec<String> = r.wat_losses.iter().map(|l| format!("{l:.3}")).collect();
            self.dir.log(&format!(
                "{} epoch {}/{} step {} ({}/{}) lr {:.2e} text {:.4} wat [{}] {:.0} tok/s",
                r.stage,
                r.epoch + 1,
                self.epochs[cursor.stage.min(self.epochs.len() - 1)],
                r.step,
                cursor.step_in_epoch,
                r.steps_in_epoch,
                r.learning_rate,
                r.text_loss,
                wat.join(" "),
                r.tokens as f64 / r.seconds.max(1e-9)
            ));
        }
        if stop {
            if cursor.step_in_epoch == r.steps_in_epoch {
                // The epoch's end is checkpointed after validation; stop there.
                return Control::Continue;
            }
            return Control::Stop;
        }
        Control::Continue
    }

    fn after_epoch(
        &mut self,
        validation: f64,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
    ) -> Control {
        let stage = self
            .stage_names
            .get(cursor.stage)
            .cloned()
            .unwrap_or_default();
        self.dir.log(&format!(
            "{stage} epoch {} done: validation loss {validation:.4}",
            cursor.epoch
        ));
        if let Err(e) = self
            .checkpoints
            .save(model, optim, cursor, Some(validation))
        {
            self.error = Some(e.into());
            return Control::Stop;
        }
        self.last_save = Instant::now();
        if let Err(e) = crate::tables::csv_to_parquet(
            &self.dir.path.join("metrics.csv"),
            &self.dir.path.join("metrics.parquet"),
        ) {
            self.error = Some(e);
            return Control::Stop;
        }
        if self.interrupted.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}
