//! Runs: one directory per resolved experiment — `runs/<experiment>/<id>/` with its
//! config, metadata, log, metrics, tokenizer, checkpoints and evaluation. Running the
//! same experiment again resumes an unfinished run and reports a finished one.

pub mod checkpoint;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::adamw::AdamW;
use crate::config::{Experiment, Init, Loaded, Trainable};
use crate::curriculum::{Curriculum, Dataset, Split};
use crate::infer::Answerer;
use crate::model::qwen3::{Qwen3Config, Qwen3ForCausalLM};
use crate::model::wat_stream::WatStreamConfig;
use crate::model::world::WorldModel;
use crate::sandbox::Sandbox;
use crate::tokenize::TextTokenizer;
use crate::tokenize::wat::WatVocab;
use crate::train::data::{Encoder, computed_span};
use crate::train::fit::{Control, Cursor, Hooks, StageData, StepReport, fit};
use checkpoint::Checkpoints;

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
}

/// A run directory.
pub struct RunDir {
    pub path: PathBuf,
    /// The progress bar while training (hidden when stderr is not a terminal).
    pub progress: std::sync::OnceLock<indicatif::ProgressBar>,
}

fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::sandbox::policy::format_utc(secs)
}

fn git(args: &[&str]) -> Option<String> {
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
    pub fn summary(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(self.path.join("eval/summary.json")).ok()?)
            .ok()
    }

    /// The run directory at `path` (no progress bar: for reading a run).
    pub fn at(path: &Path) -> RunDir {
        RunDir { path: path.to_path_buf(), progress: Default::default() }
    }

    /// `experiment/id`, as reports and comparisons name a run.
    pub fn label(&self) -> String {
        format!("{}/{}", self.path.parent().map(name_of).unwrap_or_default(), name_of(&self.path))
    }

    pub fn meta(&self) -> Option<Meta> {
        serde_json::from_str(&std::fs::read_to_string(self.path.join("meta.json")).ok()?).ok()
    }

    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(meta)?;
        crate::write_atomic(&self.path.join("meta.json"), &bytes)
            .with_context(|| format!("cannot write {}/meta.json", self.path.display()))
    }

    /// Appends a line to `log.txt` and prints it (above the progress bar when one shows).
    pub fn log(&self, line: &str) {
        match self.progress.get().filter(|bar| !bar.is_hidden()) {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
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

/// What `wmx run` did.
pub enum Outcome {
    AlreadyComplete { dir: PathBuf, accuracy: Option<f64> },
    Finished { dir: PathBuf, accuracy: f64 },
    Interrupted { dir: PathBuf },
}

/// Trains (or resumes) and evaluates the experiment; see the module docs.
pub fn run(
    loaded: &Loaded,
    root: &Path,
    fresh: bool,
    backend: crate::config::Backend,
) -> Result<Outcome> {
    if let Some(dir) = &loaded.experiment.model.checkpoint
        && loaded.experiment.model.init != Init::Scratch
        && !dir.join("config.json").is_file()
    {
        bail!(
            "model.checkpoint: {} is not a Hugging Face Qwen3 directory (no config.json); \
             init = \"{}\" loads config.json, *.safetensors and tokenizer.json from it. \
             Point model.checkpoint at one, or set model.init = \"random\" without a checkpoint \
             for the declared shapes with random weights",
            dir.display(),
            format!("{:?}", loaded.experiment.model.init).to_lowercase()
        );
    }
    let (dir, config_text) = RunDir::for_experiment(root, loaded)?;
    let previous = dir.meta();
    if let Some(meta) = &previous
        && meta.status == Status::Complete
        && !fresh
    {
        let accuracy = dir.summary().and_then(|v| v["accuracy"].as_f64());
        return Ok(Outcome::AlreadyComplete {
            dir: dir.path,
            accuracy,
        });
    }
    if fresh && dir.path.exists() {
        // Keep what was there: the old run moves aside.
        let aside = dir.path.with_file_name(format!(
            "{}-{}",
            dir.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("run"),
            now().replace(':', "")
        ));
        std::fs::rename(&dir.path, &aside)
            .with_context(|| format!("cannot move {} aside", dir.path.display()))?;
        println!("moved the previous run to {}", aside.display());
    }
    let resuming = dir.path.exists() && !fresh && previous.is_some();
    std::fs::create_dir_all(&dir.path)
        .with_context(|| format!("cannot create {}", dir.path.display()))?;
    crate::write_atomic(&dir.path.join("config.toml"), config_text.as_bytes())?;
    let e = &loaded.experiment;
    let mut meta = previous.filter(|_| resuming).unwrap_or(Meta {
        wmx_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git(&["rev-parse", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        backend: format!("{:?}", backend).to_lowercase(),
        // Backends run on their default device: the CPU, or GPU 0.
        device: match backend {
            crate::config::Backend::Cpu => "cpu".into(),
            crate::config::Backend::Cuda => "cuda:0".into(),
            crate::config::Backend::Rocm => "rocm:0".into(),
        },
        seed: e.seed,
        started: now(),
        ended: None,
        status: Status::Running,
        resumes: 0,
    });
    if resuming {
        meta.resumes += 1;
    }
    meta.status = Status::Running;
    dir.write_meta(&meta)?;
    dir.log(&format!(
        "run {} ({})",
        dir.path.display(),
        if resuming { "resuming" } else { "new" }
    ));

    let curriculum = Curriculum::load(&e.curriculum)?;
    let dataset = curriculum.generate()?;
    let tokenizer = text_tokenizer(&dir, e, &dataset)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second handler cannot be installed in the same process (tests run several runs).
        // The first signal asks for a checkpoint and a clean stop; a second one exits at once.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let task = Train {
        dir: &dir,
        experiment: e,
        dataset: &dataset,
        tokenizer: &tokenizer,
        interrupted,
    };
    let result = crate::backend::dispatch(backend, task)?;
    let (status, accuracy) = match result {
        Ok(Some(accuracy)) => (Status::Complete, Some(accuracy)),
        Ok(None) => (Status::Interrupted, None),
        Err(err) => {
            meta.status = Status::Failed;
            meta.ended = Some(now());
            dir.write_meta(&meta)?;
            dir.log(&format!("failed: {err:#}"));
            return Err(err);
        }
    };
    meta.status = status;
    meta.ended = Some(now());
    dir.write_meta(&meta)?;
    Ok(match accuracy {
        Some(accuracy) => Outcome::Finished {
            dir: dir.path,
            accuracy,
        },
        None => Outcome::Interrupted { dir: dir.path },
    })
}

/// The checkpoint's `tokenizer.json`, when the text stream comes from one (a
/// `random` init without a checkpoint trains a BPE like `scratch`).
fn checkpoint_tokenizer(m: &crate::config::ModelConfig) -> Option<PathBuf> {
    match (m.init, &m.checkpoint) {
        (Init::Scratch, _) | (_, None) => None,
        (_, Some(dir)) => Some(dir.join("tokenizer.json")),
    }
}

/// The text tokenizer: the checkpoint's, or a BPE trained on the curriculum and kept with the run.
fn text_tokenizer(dir: &RunDir, e: &Experiment, dataset: &Dataset) -> Result<TextTokenizer> {
    if let Some(path) = checkpoint_tokenizer(&e.model) {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    let path = dir.path.join("tokenizer.json");
    if path.is_file() {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    let texts: Vec<String> = dataset
        .examples(Split::Train)
        .map(|x| {
            format!(
                "{}{}{}",
                crate::train::data::prompt(&crate::train::data::shown_question(&x.question, e.model.arguments).0),
                computed_span(x.value),
                x.answer
            )
        })
        .collect();
    let tokenizer = TextTokenizer::train_bpe(texts.iter().map(String::as_str), e.model.vocab_size)?;
    tokenizer.save(&path)?;
    Ok(tokenizer)
}

struct Train<'a> {
    dir: &'a RunDir,
    experiment: &'a Experiment,
    dataset: &'a Dataset,
    tokenizer: &'a TextTokenizer,
    interrupted: Arc<AtomicBool>,
}

impl crate::backend::BackendTask for Train<'_> {
    /// `Some(accuracy)` when finished, `None` when interrupted.
    type Output = Result<Option<f64>>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Option<f64>> {
        crate::backend::set_float_dtype::<B>(&device, self.experiment.model.dtype).map_err(anyhow::Error::msg)?;
        train::<Autodiff<B>>(self, device)
    }
}

fn train<B: AutodiffBackend>(t: Train<'_>, device: B::Device) -> Result<Option<f64>> {
    let e = t.experiment;
    B::seed(&device, e.seed);
    let wat_vocab = WatVocab::new();
    let pad = t.tokenizer.token_id("<|endoftext|>").unwrap_or(0);
    let encoder = Encoder {
        text: t.tokenizer,
        wat: &wat_vocab,
        pad,
        read_arguments: e.wat.read_arguments,
        arguments: e.model.arguments,
    };
    let mut stages = Vec::new();
    for stage in &t.dataset.stages {
        let encode = |xs: &[crate::curriculum::Example]| -> Result<Vec<_>> {
            xs.iter()
                .map(|x| {
                    encoder
                        .encode(x)
                        .with_context(|| format!("encoding {}", x.id))
                })
                .collect()
        };
        stages.push(StageData {
            name: stage.name.clone(),
            epochs: stage.epochs,
            replay: stage.replay,
            train: encode(&stage.train)?,
            copies: copy_variants(&stage.train, e, &encoder)?,
            validation: encode(&stage.validation)?,
        });
    }
    let model = build_model::<B>(e, t.tokenizer.vocab_size(), &wat_vocab, &device)?;
    let clipping = (e.train.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(e.train.grad_clip as f32));
    let optim_config = AdamW::new(e.train.weight_decay as f32);
    let checkpoints = Checkpoints {
        dir: t.dir.path.join("checkpoints"),
        keep_last: e.train.checkpoint.keep_last,
    };
    let (loaded, skipped) = checkpoints.load_latest(model.clone(), optim_config.clone().init(clipping.as_ref()), &device)?;
    for s in &skipped {
        t.dir.log(&format!("skipping a checkpoint: {s}"));
    }
    let (mut model, mut optim, mut cursor) = match loaded {
        Some((m, o, c, step)) => {
            t.dir.log(&format!(
                "resuming from checkpoint step {step} (stage {}, epoch {})",
                stages[c.stage.min(stages.len() - 1)].name,
                c.epoch + 1
            ));
            (m, o, c)
        }
        None => (model, optim_config.init(clipping.as_ref()), Cursor::default()),
    };
    match e.train.parameters {
        Trainable::All => {}
        // The decoder (and a tied head with it) is frozen; an untied head still trains.
        Trainable::FrozenText => model.text.model = model.text.model.no_grad(),
        Trainable::FusionAndWat => model.text = model.text.no_grad(),
    }
    let mut hooks = RunHooks {
        dir: t.dir,
        checkpoints: &checkpoints,
        every_fraction: e.train.checkpoint.every_epoch_fraction,
        every_seconds: e.train.checkpoint.every_minutes * 60.0,
        last_save: Instant::now(),
        interrupted: t.interrupted.clone(),
        metrics: MetricsCsv::open(
            &t.dir.path.join("metrics.csv"),
            model.fusion.len(),
            cursor.step,
        )?,
        epochs: stages
            .iter()
            .map(|s| crate::train::fit::stage_epochs(s, &e.train))
            .collect(),
        stage_names: stages.iter().map(|s| s.name.clone()).collect(),
        error: None,
    };
    let (trained, finished) = fit(
        model,
        &mut optim,
        &stages,
        &e.train,
        e.seed,
        pad,
        &mut cursor,
        &mut hooks,
    );
    if let Some(err) = hooks.error {
        return Err(err);
    }
    if !finished {
        t.dir
            .log("interrupted: the checkpoint is saved; run the same command to resume");
        return Ok(None);
    }
    let accuracy = evaluate(
        t.dir,
        e,
        t.dataset,
        t.tokenizer,
        &wat_vocab,
        &trained.valid(),
        &device,
    )?;
    Ok(Some(accuracy))
}

/// Copy-practice variants of each training example, encoded (none when
/// `train.copy_practice` is 0).
fn copy_variants(
    examples: &[crate::curriculum::Example],
    e: &Experiment,
    encoder: &Encoder<'_>,
) -> Result<Vec<Vec<crate::train::data::Encoded>>> {
    const VARIANTS: usize = 4;
    if e.train.copy_practice <= 0.0 {
        return Ok(Vec::new());
    }
    examples
        .iter()
        .map(|x| {
            let mut rng = crate::curriculum::rng::Rng::stream(
                e.seed,
                &[0xc09, crate::curriculum::rng::hash_str(&x.id)],
            );
            (0..VARIANTS)
                .filter_map(|_| crate::train::data::copy_variant(x, &mut rng))
                .map(|v| {
                    encoder
                        .encode(&v)
                        .with_context(|| format!("encoding a copy variant of {}", x.id))
                })
                .collect()
        })
        .collect()
}

/// The WorldModel an experiment declares.
pub fn build_model<B: Backend>(
    e: &Experiment,
    vocab: usize,
    wat_vocab: &WatVocab,
    device: &B::Device,
) -> Result<WorldModel<B>> {
    let text = match e.model.init {
        Init::Scratch => {
            let mut config = Qwen3Config::from_experiment(&e.model);
            config.vocab_size = vocab;
            config.init::<B>(device)
        }
        Init::Pretrained => {
            let dir = e
                .model
                .checkpoint
                .as_ref()
                .context("model.checkpoint is required")?;
            Qwen3ForCausalLM::<B>::from_hf_dir(dir, device)?.0
        }
        Init::Random => match &e.model.checkpoint {
            Some(dir) => Qwen3Config::from_dir(dir)?.init::<B>(device),
            None => {
                // The declared shape; a curriculum BPE uses the first ids of its vocabulary.
                let mut config = Qwen3Config::from_experiment(&e.model);
                config.vocab_size = config.vocab_size.max(vocab);
                config.init::<B>(device)
            }
        },
    };
    let layers = text.model.layers.len();
    if let Some(&bad) = e.fusion.layers.iter().find(|&&l| l >= layers) {
        bail!("fusion layer {bad} is out of range: the text stream has {layers} layers");
    }
    let wat = WatStreamConfig {
        vocab_size: wat_vocab.len(),
        hidden_size: e.wat.hidden_size,
        num_attention_heads: e.wat.num_attention_heads,
        intermediate_size: e.wat.intermediate_size,
        layers_per_segment: e.wat.layers_per_segment,
        segments: e.fusion.layers.len(),
        text_hidden_size: text.model.embed_tokens.weight.dims()[1],
        max_tokens: e.wat.max_tokens,
        rms_norm_eps: e.model.rms_norm_eps,
        rope_theta: 10_000.0,
    };
    Ok(WorldModel::new(
        text,
        &wat,
        e.fusion.layers.clone(),
        e.fusion.num_attention_heads,
        e.fusion.gate_init,
        device,
    ))
}

/// Answers the evaluation split through the whole path into `eval/` (tables,
/// answers and `summary.json`); returns the accuracy.
pub fn evaluate<B: Backend>(
    dir: &RunDir,
    e: &Experiment,
    dataset: &Dataset,
    tokenizer: &TextTokenizer,
    wat: &WatVocab,
    model: &WorldModel<B>,
    device: &B::Device,
) -> Result<f64> {
    let split = if e.eval.split == "validation" {
        Split::Validation
    } else {
        Split::Test
    };
    let sandbox = Sandbox::new(&e.sandbox)?;
    let answerer = answerer(e, tokenizer, wat, &sandbox);
    let options = crate::eval::EvalOptions {
        ablation: crate::infer::Ablation::None,
        decimals: e.eval.decimals,
        data: split.name().to_string(),
        out: dir.path.join("eval"),
    };
    let summary = crate::eval::evaluate(
        model,
        &answerer,
        &crate::eval::curriculum_questions(dataset, split),
        &crate::eval::OperationTable::from_dataset(dataset),
        &options,
        device,
        |_, _| {},
    )?;
    let accuracy = summary["accuracy"].as_f64().unwrap_or(0.0);
    dir.log(&format!(
        "evaluation on {}: accuracy {:.4} ({}/{})",
        split.name(),
        accuracy,
        summary["correct"],
        summary["total"]
    ));
    // The drawn report; a failure to draw is reported and leaves the run complete.
    match crate::report::report(&dir.path) {
        Ok(written) => dir.log(&format!("report: {}", written.dir.join("index.html").display())),
        Err(err) => dir.log(&format!("cannot write the report: {err:#}")),
    }
    Ok(accuracy)
}

/// The answering path an experiment declares.
pub fn answerer<'a>(
    e: &'a Experiment,
    tokenizer: &'a TextTokenizer,
    wat: &'a WatVocab,
    sandbox: &'a Sandbox,
) -> Answerer<'a> {
    Answerer {
        text: tokenizer,
        wat,
        sandbox,
        selection: &e.selection,
        max_wat_tokens: e.wat.max_tokens,
        max_new_tokens: e.eval.max_new_tokens,
        read_arguments: e.wat.read_arguments,
        arguments: e.model.arguments,
    }
}

/// One row of `wmx ls`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub path: PathBuf,
    pub experiment: String,
    pub id: String,
    pub status: Option<Status>,
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
            let accuracy = dir.summary().and_then(|v| v["accuracy"].as_f64());
            rows.push(RunRow {
                experiment: name_of(&experiment),
                id: name_of(&run),
                status: meta.as_ref().map(|m| m.status),
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

fn name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// `wmx ls` as a table.
pub fn runs_table(rows: &[RunRow]) -> String {
    let mut out = format!(
        "{:<20} {:<24} {:<12} {:>6} {:>9}  {}\n",
        "experiment", "run", "status", "steps", "accuracy", "started"
    );
    for r in rows {
        out += &format!(
            "{:<20} {:<24} {:<12} {:>6} {:>9}  {}\n",
            r.experiment,
            r.id,
            r.status
                .map_or("unknown".to_string(), |s| format!("{s:?}").to_lowercase()),
            r.steps,
            r.accuracy.map_or("-".to_string(), |a| format!("{a:.4}")),
            r.started.as_deref().unwrap_or("-"),
        );
    }
    out
}

/// What is wrong with a directory given as a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path} is not a run directory (it has no config.toml); runs live under runs/<experiment>/<id>/")]
    NotARun { path: PathBuf },
    #[error("{path} has no valid checkpoint to load{skipped}")]
    NoCheckpoint { path: PathBuf, skipped: String },
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
    pub fn open(path: &Path) -> Result<OpenedRun> {
        let config = path.join("config.toml");
        if !config.is_file() {
            return Err(RunError::NotARun {
                path: path.to_path_buf(),
            }
            .into());
        }
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let experiment: Experiment =
            toml::from_str(&text).map_err(|err| crate::config::ConfigError::Syntax {
                path: config.clone(),
                message: err.to_string(),
            })?;
        let dir = RunDir {
            path: path.to_path_buf(),
            progress: Default::default(),
        };
        let checkpoints = Checkpoints {
            dir: path.join("checkpoints"),
            keep_last: experiment.train.checkpoint.keep_last,
        };
        let (found, skipped) = checkpoints.newest_valid();
        let Some(step) = found else {
            return Err(RunError::NoCheckpoint {
                path: path.to_path_buf(),
                skipped: skipped.iter().map(|s| format!("; {s}")).collect(),
            }
            .into());
        };
        let tokenizer = TextTokenizer::from_file(
            &checkpoint_tokenizer(&experiment.model).unwrap_or_else(|| path.join("tokenizer.json")),
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
        let mut shape = self.experiment.clone();
        // Only the shapes matter here: the checkpoint brings every weight.
        if shape.model.init == Init::Pretrained {
            shape.model.init = Init::Random;
        }
        let model = build_model::<B>(&shape, self.tokenizer.vocab_size(), &WatVocab::new(), device)?;
        Ok(model.load(&self.model_path, device)?)
    }
}

/// `metrics.csv`, one row per optimizer step, appended (a resumed run continues it).
struct MetricsCsv {
    file: std::fs::File,
}

impl MetricsCsv {
    /// Opens for appending after `resume_step`: rows of later steps (written before an
    /// interruption, after the last checkpoint) and any torn last line are dropped.
    fn open(path: &Path, exits: usize, resume_step: usize) -> Result<MetricsCsv> {
        let wat: Vec<String> = (0..exits).map(|k| format!("wat_loss_{k}")).collect();
        let header = format!(
            "stage,epoch,step,learning_rate,text_loss,{},grad_norm,step_seconds,tokens_per_second,peak_rss_mib",
            wat.join(",")
        );
        let mut kept = vec![header];
        if let Ok(text) = std::fs::read_to_string(path) {
            let complete = if text.ends_with('\n') {
                &text[..]
            } else {
                &text[..text.rfind('\n').map_or(0, |i| i + 1)]
            };
            kept.extend(
                complete
                    .lines()
                    .skip(1)
                    .filter(|row| {
                        row.split(',')
                            .nth(2)
                            .and_then(|s| s.parse::<usize>().ok())
                            .is_some_and(|step| step <= resume_step)
                    })
                    .map(str::to_string),
            );
        }
        crate::write_atomic(path, (kept.join("\n") + "\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsCsv { file })
    }

    fn append(&mut self, r: &StepReport) -> std::io::Result<()> {
        let wat: Vec<String> = r.wat_losses.iter().map(|l| format!("{l:.6}")).collect();
        writeln!(
            self.file,
            "{},{},{},{:.6e},{:.6},{},{:.6},{:.4},{:.1},{:.1}",
            r.stage,
            r.epoch,
            r.step,
            r.learning_rate,
            r.text_loss,
            wat.join(","),
            r.grad_norm,
            r.seconds,
            r.tokens as f64 / r.seconds.max(1e-9),
            peak_rss_mib()
        )
    }
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

struct RunHooks<'a> {
    dir: &'a RunDir,
    checkpoints: &'a Checkpoints,
    every_fraction: f64,
    every_seconds: f64,
    last_save: Instant,
    interrupted: Arc<AtomicBool>,
    metrics: MetricsCsv,
    epochs: Vec<usize>,
    stage_names: Vec<String>,
    error: Option<anyhow::Error>,
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
