//! Run directories: `runs/<experiment>/<id>/` with the resolved config, `meta.json`,
//! the log, the metrics table, the tokenizer, checkpoints and the evaluation. This
//! module knows their layout; `run` decides what to do with them.

pub mod checkpoint;
pub mod export;
pub mod list;
pub mod lock;
pub mod metrics;
pub mod summary;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Experiment, Init, Loaded};
use crate::model::world::WorldModel;
use crate::tokenize::TextTokenizer;
use crate::tokenize::wat::WatVocab;
use checkpoint::{Checkpoints, Which};

/// Run status in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Interrupted,
    Complete,
    Failed,
}

/// `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub wmx_version: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub backend: String,
    pub device: String,
    pub seed: u64,
    pub started: String,
    pub ended: Option<String>,
    pub status: Status,
    /// How many times the run was resumed.
    pub resumes: usize,
    /// The process that runs (or last ran) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Why it failed or stopped, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A run directory.
pub struct RunDir {
    pub path: PathBuf,
    /// The progress bar while training (hidden when stderr is not a terminal).
    pub progress: std::sync::OnceLock<indicatif::ProgressBar>,
}

/// The time now, UTC, as `meta.json` and the log write it.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::sandbox::policy::format_utc(secs)
}

pub fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl RunDir {
    /// `runs/<name>/<hash of the resolved config>` under `root`.
    pub fn for_experiment(root: &Path, loaded: &Loaded) -> Result<(RunDir, String)> {
        // A run is its resolved config; a `[sweep]` table describes other runs.
        let mut experiment = loaded.experiment.clone();
        experiment.sweep.clear();
        // Where a run is followed, and how many questions evaluation answers at
        // once, do not change what it computes.
        experiment.tracking = Default::default();
        experiment.eval.batch_size = None;
        // Nor does how many GPUs share the training (only the order of additions).
        experiment.train.devices = 1;
        // A run started from another is that run's weights, not the path to it.
        if let Some(init) = &mut experiment.train.init_from {
            init.run = PathBuf::from(source_identity(&init.run, init.checkpoint));
        }
        let config =
            toml::to_string_pretty(&experiment).context("cannot serialise the resolved config")?;
        // The curriculum is named by its path; its content goes into the id too, so an
        // edited curriculum is a new run rather than a finished one.
        let curriculum = std::fs::read(&experiment.curriculum).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(config.as_bytes());
        hasher.update(Sha256::digest(&curriculum));
        let id: String = hasher
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((
            RunDir {
                path: root.join("runs").join(loaded.name()).join(id),
                progress: std::sync::OnceLock::new(),
            },
            config,
        ))
    }

    /// `eval/summary.json`, once the run has been evaluated.
    pub fn summary(&self) -> Option<summary::Summary> {
        summary::Summary::read(&self.path.join("eval"))
    }

    /// The run directory at `path` (no progress bar: for reading a run).
    pub fn at(path: &Path) -> RunDir {
        RunDir { path: path.to_path_buf(), progress: Default::default() }
    }

    /// `experiment/id`, as reports and comparisons name a run.
    pub fn label(&self) -> String {
        format!("{}/{}", self.path.parent().map(name_of).unwrap_or_default(), name_of(&self.path))
    }

    /// Whether `meta` says `running` while no process holds the run's lock: the
    /// process that ran it was killed or aborted before it recorded a final status.
    pub fn died(&self, meta: Option<&Meta>) -> bool {
        meta.is_some_and(|m| m.status == Status::Running) && lock::RunLock::holder(&self.path).is_none()
    }

    /// The run's state as `wmx ls` and `wmx sweep --status` show it: its status in
    /// lower case, or `died`; `None` before it has a `meta.json`.
    pub fn state(&self) -> Option<String> {
        let meta = self.meta()?;
        Some(if self.died(Some(&meta)) { "died".into() } else { format!("{:?}", meta.status).to_lowercase() })
    }

    pub fn meta(&self) -> Option<Meta> {
        serde_json::from_str(&std::fs::read_to_string(self.path.join("meta.json")).ok()?).ok()
    }

    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(meta)?;
        crate::fs::write_atomic(&self.path.join("meta.json"), &bytes)
            .with_context(|| format!("cannot write {}/meta.json", self.path.display()))
    }

    /// Appends a line to `log.txt` and logs it at info level (above the progress bar
    /// when one shows).
    pub fn log(&self, line: &str) {
        match self.progress.get().filter(|bar| !bar.is_hidden()) {
            Some(bar) => bar.suspend(|| log::info!("{line}")),
            None => log::info!("{line}"),
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join("log.txt"))
        {
            let _ = writeln!(f, "{} {line}", now());
        }
    }
}

/// What is wrong with a directory given as a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path} is not a run directory (it has no config.toml); runs live under runs/<experiment>/<id>/")]
    NotARun { path: PathBuf },
    #[error("{path} has no checkpoint to load{skipped}")]
    NoCheckpoint { path: PathBuf, skipped: String },
    #[error("{path} is in use by another wmx{}; wait for it to finish or stop it (a lock left by a process that died is taken over)", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// A run directory opened for inference and evaluation: its resolved experiment,
/// tokenizer and newest valid checkpoint.
pub struct OpenedRun {
    pub dir: RunDir,
    pub experiment: Experiment,
    pub tokenizer: TextTokenizer,
    /// `model.mpk` of the newest valid checkpoint.
    pub model_path: PathBuf,
    pub step: usize,
}

impl OpenedRun {
    /// Opens the run at `path` with the checkpoint `which` names. Its `config.toml`
    /// passes the checks `validate` makes, and its paths resolve from the run
    /// directory (or, for runs written before they were stored so, from the
    /// directory that holds `runs/`).
    pub fn open(path: &Path, which: Which) -> Result<OpenedRun> {
        let config = path.join("config.toml");
        if !config.is_file() {
            return Err(RunError::NotARun {
                path: path.to_path_buf(),
            }
            .into());
        }
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let stored: Experiment =
            toml::from_str(&text).map_err(|err| crate::config::ConfigError::Syntax {
                path: config.clone(),
                message: err.to_string(),
            })?;
        let root = path.ancestors().nth(3).unwrap_or(Path::new("."));
        let experiment = stored.map_paths(|p| {
            let from_run = path.join(p);
            if p.is_absolute() || from_run.exists() || !root.join(p).exists() {
                crate::fs::relative_to(&path.join("config.toml"), p)
            } else {
                root.join(p)
            }
        });
        crate::config::check_experiment(&experiment, &config)?;
        let dir = RunDir::at(path);
        let checkpoints = Checkpoints::at(path.join("checkpoints"), experiment.train.checkpoint.keep_last);
        let step = checkpoints.choose(which).map_err(|e| RunError::NoCheckpoint {
            path: path.to_path_buf(),
            skipped: format!(": {e}"),
        })?;
        let tokenizer = TextTokenizer::from_file(
            &experiment.model.checkpoint_tokenizer().unwrap_or_else(|| path.join("tokenizer.json")),
        )?;
        Ok(OpenedRun {
            model_path: checkpoints.model_path(step),
            dir,
            experiment,
            tokenizer,
            step,
        })
    }

    /// The run's model with its checkpoint's weights.
    pub fn model<B: Backend>(&self, device: &B::Device) -> Result<WorldModel<B>> {
        load_model(&self.experiment, &self.tokenizer, &self.model_path, device)
    }
}

/// The model `experiment` declares, with the weights of the checkpoint file
/// `model_path` (a run's `model.mpk`).
pub fn load_model<B: Backend>(
    experiment: &Experiment,
    tokenizer: &TextTokenizer,
    model_path: &Path,
    device: &B::Device,
) -> Result<WorldModel<B>> {
    let mut shape = experiment.clone();
    // Only the shapes matter here: the checkpoint brings every weight.
    if shape.model.init == Init::Pretrained {
        shape.model.init = Init::Random;
    }
    let model = WorldModel::<B>::from_experiment(&shape, tokenizer.vocab_size(), &WatVocab::new(), device)?;
    Ok(model.load(model_path, device)?)
}


/// What a run started from another is started from: that run's label, the step
/// `which` picks and its weights' checksum; the path as given when it cannot be
/// opened (the run's preflight then says why).
fn source_identity(run: &Path, which: Which) -> String {
    let checkpoints = Checkpoints::at(run.join("checkpoints"), 1);
    let label = RunDir::at(&run.canonicalize().unwrap_or_else(|_| run.to_path_buf())).label();
    match checkpoints.choose(which).and_then(|step| Ok((step, checkpoints.verify(step)?))) {
        Ok((step, manifest)) => {
            let weights = manifest.files.get("model.mpk").cloned().unwrap_or_default();
            format!("{label}@step-{step}#{weights}")
        }
        Err(_) => run.display().to_string(),
    }
}

/// The last component of a path, as a name.
pub(crate) fn name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}
