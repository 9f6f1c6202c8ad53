//! Orchestration: `wmx run` trains (or resumes) an experiment in its run directory,
//! then evaluates and reports it; `wmx sweep` does so for every member of a sweep.
//! Running the same experiment again resumes an unfinished run and reports a finished one.

pub mod signals;
pub mod slurm;
pub mod sweep;
mod tracking;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::train::adamw::AdamW;
use crate::config::{Experiment, Init, Loaded, Trainable};
use crate::curriculum::{Curriculum, Dataset, Split};
use crate::infer::Answerer;
use crate::model::world::WorldModel;
use crate::rundir::checkpoint::Checkpoints;
use crate::rundir::metrics::MetricsCsv;
use crate::rundir::lock::RunLock;
use crate::rundir::{Meta, RunDir, Status, git, now};
use crate::sandbox::Sandbox;
use crate::tokenize::TextTokenizer;
use crate::tokenize::wat::WatVocab;
use crate::prompt::{computed_span, prompt, shown_question};
use crate::train::data::Encoder;
use crate::train::fit::{Control, Cursor, Hooks, EncodedStage, StepReport, fit};

/// What `wmx run` did.
pub enum Outcome {
    AlreadyComplete { dir: PathBuf, accuracy: Option<f64> },
    Finished { dir: PathBuf, accuracy: f64 },
    Interrupted { dir: PathBuf },
}

/// Trains (or resumes) and evaluates the experiment; see the module docs.
///
/// The run holds its directory's lock throughout, and ends with a final status in
/// `meta.json` however training ends: `complete`, `interrupted` (a signal; the
/// checkpoint is saved) or `failed` (an error or a panic, with its reason).
pub fn run(
    loaded: &Loaded,
    root: &Path,
    fresh: bool,
    backend: crate::config::Backend,
) -> Result<Outcome> {
    let (dir, _) = RunDir::for_experiment(root, loaded)?;
    // Checked before anything is written: bad input leaves no run behind.
    let complete = dir.meta().is_some_and(|m| m.status == Status::Complete);
    let prepared = if complete && !fresh { None } else { Some(preflight(loaded)?) };
    let _lock = RunLock::acquire(&dir.path)?;
    let previous = dir.meta();
    if let Some(meta) = &previous
        && meta.status == Status::Complete
        && !fresh
    {
        let accuracy = dir.summary().map(|s| s.accuracy);
        return Ok(Outcome::AlreadyComplete {
            dir: dir.path,
            accuracy,
        });
    }
    if fresh && dir.path.exists() {
        move_aside(&dir)?;
    }
    let resuming = dir.path.exists() && !fresh && previous.is_some();
    std::fs::create_dir_all(&dir.path)
        .with_context(|| format!("cannot create {}", dir.path.display()))?;
    let portable = loaded.experiment.clone().map_paths(|p| crate::fs::path_from(&dir.path, p));
    let mut stored = portable.clone();
    stored.sweep.clear();
    let config_text = toml::to_string_pretty(&stored).context("cannot serialise the resolved config")?;
    crate::fs::write_atomic(&dir.path.join("config.toml"), config_text.as_bytes())
        .with_context(|| format!("cannot write {}/config.toml", dir.path.display()))?;
    let e = &loaded.experiment;
    let mut meta = previous.filter(|_| resuming).unwrap_or_else(|| new_meta(e, backend));
    if resuming {
        if meta.status == Status::Running {
            dir.log(&format!(
                "the previous attempt{} ended without a final status (killed or aborted)",
                meta.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ));
        }
        meta.resumes += 1;
    }
    meta.status = Status::Running;
    meta.pid = Some(std::process::id());
    meta.reason = None;
    meta.ended = None;
    dir.write_meta(&meta)?;
    dir.log(&format!(
        "run {} ({})",
        dir.path.display(),
        if resuming { "resuming" } else { "new" }
    ));
    let tracker = match &e.tracking.mlflow {
        Some(url) => {
            let experiment = e.tracking.experiment.clone().unwrap_or_else(|| loaded.name());
            let config = toml::Value::try_from(&stored).context("cannot serialise the resolved config")?;
            match tracking::Tracker::start(url, &experiment, &dir, &config) {
                Ok(t) => Some(std::sync::Mutex::new(t)),
                Err(err) => {
                    meta.status = Status::Failed;
                    meta.reason = Some(format!("{err:#}"));
                    meta.ended = Some(now());
                    let _ = dir.write_meta(&meta);
                    return Err(err.context("tracking.mlflow"));
                }
            }
        }
        None => None,
    };
    signals::install();
    let _active = signals::Active::set(dir.path.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let prepared = match prepared {
            Some(prepared) => prepared,
            None => preflight(loaded)?,
        };
        train_and_evaluate(&dir, e, prepared, tracker.as_ref(), backend)
    }))
    .unwrap_or_else(|panic| Err(anyhow::anyhow!("panicked: {}", panic_message(&panic))));
    let (status, reason) = match &result {
        Ok(Some(_)) => (Status::Complete, None),
        Ok(None) => (
            Status::Interrupted,
            Some("stopped by a signal after saving a checkpoint".to_string()),
        ),
        Err(err) => (Status::Failed, Some(format!("{err:#}"))),
    };
    if let Some(reason) = &reason {
        dir.log(&format!("{}: {reason}", format!("{status:?}").to_lowercase()));
    }
    meta.status = status;
    meta.reason = reason;
    meta.ended = Some(now());
    // The first error is the one shown: a failure to record the status is logged.
    if let Err(write_err) = dir.write_meta(&meta) {
        if result.is_err() {
            log::warn!("{write_err:#}");
        } else {
            return Err(write_err);
        }
    }
    if status == Status::Complete {
        // Drawn once meta.json is final, so the report shows the final status; a
        // failure to draw is reported and leaves the run complete.
        match crate::report::report(&dir.path) {
            Ok(written) => dir.log(&format!("report: {}", written.dir.join("index.html").display())),
            Err(err) => dir.log(&format!("cannot write the report: {err:#}")),
        }
    }
    if let Some(mut tracker) = tracker.and_then(|t| t.into_inner().ok()) {
        tracker.finish(&dir.path, status);
    }
    Ok(match result? {
        Some(accuracy) => Outcome::Finished { dir: dir.path, accuracy },
        None => Outcome::Interrupted { dir: dir.path },
    })
}

/// The message a panic carried.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Loads the curriculum and the tokenizer, then trains and evaluates on the backend:
/// `Some(accuracy)` when finished, `None` when a signal stopped it.
fn train_and_evaluate(
    dir: &RunDir,
    e: &Experiment,
    Prepared { dataset, tokenizer }: Prepared,
    tracker: Option<&std::sync::Mutex<tracking::Tracker>>,
    backend: crate::config::Backend,
) -> Result<Option<f64>> {
    Checkpoints::at(dir.path.join("checkpoints"), e.train.checkpoint.keep_last).clean_leftovers()?;
    for stage in &dataset.stages {
        log::debug!(
            "stage {}: {} train, {} validation, {} test examples, {} epochs",
            stage.name,
            stage.train.len(),
            stage.validation.len(),
            stage.test.len(),
            stage.epochs
        );
    }
    let tokenizer = run_tokenizer(dir, e, tokenizer)?;
    let task = Train {
        dir,
        experiment: e,
        dataset: &dataset,
        tokenizer: &tokenizer,
        interrupted: signals::interrupted(),
        tracker,
    };
    crate::backend::dispatch(backend, task)?
}

/// What [`preflight`] prepared: the generated dataset and the text tokenizer.
pub struct Prepared {
    pub dataset: Dataset,
    pub tokenizer: TextTokenizer,
}

/// Everything `run` will need, checked before anything runs (`wmx validate` and the
/// start of `wmx run`): the curriculum loads and generates, each program fits
/// `wat.max_tokens`, the sandbox's engine and files directory work, and a checkpoint's
/// tokenizer and `config.json` agree with the experiment. Returns the dataset.
pub fn preflight(loaded: &Loaded) -> Result<Prepared> {
    let e = &loaded.experiment;
    let key_error = |key: &str, message: String| crate::config::ConfigError::key(key, loaded.path.display().to_string(), message);
    require_checkpoint(loaded)?;
    Sandbox::new(&e.sandbox)?;
    let curriculum = Curriculum::load(&e.curriculum).with_context(|| {
        format!("{}: key `curriculum` names {}", loaded.path.display(), e.curriculum.display())
    })?;
    let dataset = curriculum.generate()?;
    if let Some(dir) = e.model.checkpoint.as_ref().filter(|_| e.model.checkpoint_tokenizer().is_some()) {
        check_hf_shapes(loaded, dir)?;
        let weights = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.path().extension().is_some_and(|x| x == "safetensors"));
        if e.model.init == crate::config::Init::Pretrained && !weights {
            return Err(key_error(
                "model.checkpoint",
                format!("{} has no *.safetensors weights for init = \"pretrained\" (init = \"random\" takes its shapes and tokenizer alone)", dir.display()),
            )
            .into());
        }
    }
    let tokenizer = new_tokenizer(e, &dataset)?;
    if e.model.arguments == crate::config::ArgumentView::Placeholder
        && tokenizer.token_id(crate::prompt::ARGUMENT_TOKEN).is_none()
    {
        return Err(key_error(
            "model.arguments",
            format!(
                "\"placeholder\" needs the token {} in the tokenizer, and {} has none; set model.arguments = \"tokens\"",
                crate::prompt::ARGUMENT_TOKEN,
                e.model.checkpoint_tokenizer().unwrap_or_default().display()
            ),
        )
        .into());
    }
    // Every example fits the sequence lengths the experiment declares.
    let wat = WatVocab::new();
    let encoder = Encoder {
        text: &tokenizer,
        wat: &wat,
        pad: 0,
        read_arguments: e.wat.read_arguments,
        arguments: e.model.arguments,
        max_text_tokens: e.train.max_seq_len.min(e.model.max_position_embeddings),
        max_wat_tokens: e.wat.max_tokens,
    };
    for x in dataset.stages.iter().flat_map(|s| s.train.iter().chain(&s.validation).chain(&s.test)) {
        if let Err(err) = encoder.encode(x) {
            let key = match &err {
                crate::tokenize::TokenizeError::TooLong { key, .. } => *key,
                _ => "curriculum",
            };
            return Err(key_error(key, format!("example {}: {err}", x.id)).into());
        }
    }
    Ok(Prepared { dataset, tokenizer })
}

/// The declared text-stream shapes against a checkpoint's `config.json`.
fn check_hf_shapes(loaded: &Loaded, dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| crate::config::ConfigError::Syntax {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let m = &loaded.experiment.model;
    for (key, declared) in [
        ("vocab_size", m.vocab_size),
        ("hidden_size", m.hidden_size),
        ("intermediate_size", m.intermediate_size),
        ("num_hidden_layers", m.num_hidden_layers),
        ("num_attention_heads", m.num_attention_heads),
        ("num_key_value_heads", m.num_key_value_heads),
        ("head_dim", m.head_dim),
    ] {
        if let Some(found) = json.get(key).and_then(|v| v.as_u64())
            && found != declared as u64
        {
            return Err(crate::config::ConfigError::key(
                &format!("model.{key}"),
                loaded.path.display().to_string(),
                format!("is {declared}, but {} says {found}; declare the checkpoint's shapes", path.display()),
            )
            .into());
        }
    }
    Ok(())
}

/// A checkpoint the experiment loads must be a Hugging Face directory.
fn require_checkpoint(loaded: &Loaded) -> Result<()> {
    let m = &loaded.experiment.model;
    if let Some(dir) = &m.checkpoint
        && m.init != Init::Scratch
        && !dir.join("config.json").is_file()
    {
        return Err(crate::config::ConfigError::key(
            "model.checkpoint",
            loaded.path.display().to_string(),
            format!(
                "{} is not a Hugging Face Qwen3 directory (no config.json); init = \"{}\" loads config.json, \
                 *.safetensors and tokenizer.json from it. Point model.checkpoint at one, or set \
                 model.init = \"random\" without a checkpoint for the declared shapes with random weights",
                dir.display(),
                format!("{:?}", m.init).to_lowercase()
            ),
        )
        .into());
    }
    Ok(())
}

/// Keeps what was there: a run started `--fresh` moves the old one aside.
fn move_aside(dir: &RunDir) -> Result<()> {
    let name = dir.path.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let aside = dir.path.with_file_name(format!("{name}-{}", now().replace(':', "")));
    std::fs::rename(&dir.path, &aside).with_context(|| format!("cannot move {} aside", dir.path.display()))?;
    log::info!("moved the previous run to {}", aside.display());
    Ok(())
}

/// `meta.json` of a new run.
fn new_meta(e: &Experiment, backend: crate::config::Backend) -> Meta {
    Meta {
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
        pid: None,
        reason: None,
    }
}

/// The text tokenizer: the checkpoint's, or a BPE trained on the curriculum and kept with the run.
/// The text tokenizer a new run starts from: the checkpoint's, or a BPE trained on
/// the curriculum's training split (deterministic: the same curriculum gives the same
/// tokenizer).
fn new_tokenizer(e: &Experiment, dataset: &Dataset) -> Result<TextTokenizer> {
    if let Some(path) = e.model.checkpoint_tokenizer() {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    let texts: Vec<String> = dataset
        .examples(Split::Train)
        .map(|x| {
            format!(
                "{}{}{}",
                prompt(&shown_question(&x.question, e.model.arguments).0),
                computed_span(x.value),
                x.answer
            )
        })
        .collect();
    Ok(TextTokenizer::train_bpe(texts.iter().map(String::as_str), e.model.vocab_size)?)
}

/// The run's tokenizer: the one kept in its directory when resuming, else `fresh`
/// (kept there for the run's later use).
fn run_tokenizer(dir: &RunDir, e: &Experiment, fresh: TextTokenizer) -> Result<TextTokenizer> {
    if e.model.checkpoint_tokenizer().is_some() {
        return Ok(fresh);
    }
    let path = dir.path.join("tokenizer.json");
    if path.is_file() {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    fresh.save(&path)?;
    Ok(fresh)
}

struct Train<'a> {
    dir: &'a RunDir,
    experiment: &'a Experiment,
    dataset: &'a Dataset,
    tokenizer: &'a TextTokenizer,
    interrupted: &'static AtomicBool,
    tracker: Option<&'a std::sync::Mutex<tracking::Tracker>>,
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
        max_text_tokens: e.train.max_seq_len.min(e.model.max_position_embeddings),
        max_wat_tokens: e.wat.max_tokens,
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
        stages.push(EncodedStage {
            name: stage.name.clone(),
            epochs: stage.epochs,
            replay: stage.replay,
            train: encode(&stage.train)?,
            copies: copy_variants(&stage.train, e, &encoder)?,
            validation: encode(&stage.validation)?,
        });
    }
    let model = WorldModel::<B>::from_experiment(e, t.tokenizer.vocab_size(), &wat_vocab, &device)?;
    let clipping = (e.train.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(e.train.grad_clip as f32));
    let optim_config = AdamW::new(e.train.weight_decay as f32);
    let checkpoints = Checkpoints::at(t.dir.path.join("checkpoints"), e.train.checkpoint.keep_last);
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
    show_progress(t.dir, crate::train::fit::total_steps(&stages, &e.train), cursor.step);
    let mut hooks = RunHooks {
        dir: t.dir,
        checkpoints: &checkpoints,
        every_fraction: e.train.checkpoint.every_epoch_fraction,
        every_seconds: e.train.checkpoint.every_minutes * 60.0,
        last_save: Instant::now(),
        interrupted: t.interrupted,
        tracker: t.tracker,
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
    if let Some(bar) = t.dir.progress.get() {
        bar.finish_and_clear();
    }
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

/// The training bar on a terminal: stage, epoch, losses, tokens/s and the time left
/// (set by each step's report). Piped output, or `-q`, keeps plain log lines only.
fn show_progress(dir: &RunDir, total: usize, done: usize) {
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
    let answerer = Answerer::from_experiment(e, tokenizer, wat, &sandbox);
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
    let accuracy = summary.accuracy;
    dir.log(&format!(
        "evaluation on {}: accuracy {:.4} ({}/{})",
        split.name(),
        accuracy,
        summary.correct,
        summary.total
    ));
    Ok(accuracy)
}

struct RunHooks<'a> {
    dir: &'a RunDir,
    checkpoints: &'a Checkpoints,
    every_fraction: f64,
    every_seconds: f64,
    last_save: Instant,
    interrupted: &'static AtomicBool,
    tracker: Option<&'a std::sync::Mutex<tracking::Tracker>>,
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
