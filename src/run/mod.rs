//! Orchestration: `wmx run` trains (or resumes) an experiment in its run directory,
//! then evaluates and reports it; `wmx sweep` does so for every member of a sweep.
//! Running the same experiment again resumes an unfinished run and reports a finished one.

mod hooks;
mod preflight;
pub mod ranks;
pub mod signals;
pub mod slurm;
pub mod sweep;
mod tracking;

pub use preflight::{Prepared, preflight};
use hooks::{RunHooks, show_progress};

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::train::adamw::AdamW;
use crate::config::{Experiment, InitState, Loaded, Trainable};
use crate::curriculum::{Dataset, Split};
use crate::infer::Answerer;
use crate::model::world::WorldModel;
use crate::rundir::checkpoint::Checkpoints;
use crate::rundir::metrics::MetricsCsv;
use crate::rundir::lock::RunLock;
use crate::rundir::{Meta, OpenedRun, RunDir, Status, git, now};
use crate::sandbox::Sandbox;
use crate::tokenize::TextTokenizer;
use crate::tokenize::wat::WatVocab;
use crate::train::data::Encoder;
use crate::train::fit::{Cursor, EncodedStage, fit};
use crate::train::world::World;
use ranks::Role;

/// What `wmx run` did.
pub enum Outcome {
    AlreadyComplete { dir: PathBuf, accuracy: Option<f64> },
    Finished { dir: PathBuf, accuracy: f64 },
    Interrupted { dir: PathBuf },
    /// A later rank of a run trained on several GPUs finished its part (or was
    /// stopped with the others: `finished` false); the first rank reports the run.
    Rank { dir: PathBuf, rank: usize, finished: bool },
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
    ranks::pin_srun_task(&ranks::ProcessEnvironment);
    let role = ranks::role(&ranks::ProcessEnvironment, loaded.experiment.train.devices, &dir.path)?;
    let gpus = check_role(loaded, &role, backend)?;
    if let Role::Follower(place) = role {
        return follow(loaded, dir, place, backend);
    }
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
    let e = &loaded.experiment;
    let (mut meta, stored) = begin(&dir, loaded, previous, fresh, backend)?;
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
    if backend != crate::config::Backend::Cpu {
        signals::fail_fast_on_device_panics(Some(dir.path.clone()));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let prepared = match prepared {
            Some(prepared) => prepared,
            None => preflight(loaded)?,
        };
        train_and_evaluate(&dir, e, prepared, tracker.as_ref(), backend, &role, &gpus)
    }))
    .unwrap_or_else(|panic| Err(anyhow::anyhow!("panicked: {}", panic_message(panic.as_ref()))));
    let status = end(&dir, &mut meta, &result)?;
    if let Some(mut tracker) = tracker.and_then(|t| t.into_inner().ok()) {
        tracker.finish(&dir.path, status);
    }
    Ok(match result? {
        Some(accuracy) => Outcome::Finished { dir: dir.path, accuracy },
        None => Outcome::Interrupted { dir: dir.path },
    })
}

/// Training on several GPUs needs the CUDA backend and, started here, as many GPUs
/// as ranks: bad input otherwise (`train.devices`), before anything is written.
/// Returns the GPUs the ranks started here take, one each.
fn check_role(loaded: &Loaded, role: &Role, backend: crate::config::Backend) -> Result<Vec<String>> {
    let size = match role {
        Role::Alone => return Ok(Vec::new()),
        Role::Lead { size, .. } => *size,
        Role::Follower(place) => place.size,
    };
    let bad = |message: String| {
        Err(crate::config::ConfigError::key("train.devices", loaded.path.display().to_string(), message).into())
    };
    if backend != crate::config::Backend::Cuda {
        return bad(format!(
            "training on {size} devices sums gradients through NCCL, on the CUDA backend only (this run is on {}); \
             on the CPU, train.shards splits each batch across cores",
            format!("{backend:?}").to_lowercase()
        ));
    }
    if let Role::Lead { size, local: true } = role {
        let gpus = sweep::visible_gpus(backend);
        if gpus.len() < *size {
            return bad(format!("{size} devices asked for, but {} GPU(s) are visible here", gpus.len()));
        }
        return Ok(gpus);
    }
    Ok(Vec::new())
}

/// A later rank of a run trained on several GPUs: prepares the same data, waits for
/// the first rank's communicator id, trains its shards with the others and ends;
/// it writes nothing to the run directory.
fn follow(loaded: &Loaded, dir: RunDir, place: ranks::Place, backend: crate::config::Backend) -> Result<Outcome> {
    let e = &loaded.experiment;
    signals::install();
    signals::fail_fast_on_device_panics(None);
    let Prepared { dataset, tokenizer, source, .. } = preflight(loaded)?;
    let id = ranks::wait_for_id(&place.rendezvous, std::time::Duration::from_secs(600))?;
    let checkpoints = Checkpoints::at(dir.path.join("checkpoints"), e.train.checkpoint.keep_last);
    let source = source.filter(|_| checkpoints.steps().is_empty());
    let tokenizer = run_tokenizer(&dir, e, tokenizer, false)?;
    let task = Train {
        dir: &dir,
        experiment: e,
        dataset: &dataset,
        tokenizer: &tokenizer,
        init_weights: init_weights(source.as_ref(), e),
        interrupted: signals::interrupted(),
        tracker: None,
        ranks: Ranks::Follower { rank: place.rank, size: place.size, id },
    };
    let finished = crate::backend::dispatch(backend, task)??;
    Ok(Outcome::Rank { dir: dir.path, rank: place.rank, finished })
}

/// `model.mpk` whose weights a run's first start takes (`train.init_from` with
/// `state = "weights"`), given the run it starts from.
fn init_weights(source: Option<&OpenedRun>, e: &Experiment) -> Option<PathBuf> {
    match (source, &e.train.init_from) {
        (Some(source), Some(init)) if init.state == InitState::Weights => Some(source.model_path.clone()),
        _ => None,
    }
}

/// Writes the run's `config.toml` (paths relative to the run directory) and
/// `meta.json` at `running`: a new run, the old one moved aside when `fresh`, or
/// `previous` resumed. Returns the meta and the stored experiment.
fn begin(
    dir: &RunDir,
    loaded: &Loaded,
    previous: Option<Meta>,
    fresh: bool,
    backend: crate::config::Backend,
) -> Result<(Meta, Experiment)> {
    if fresh && dir.path.exists() {
        move_aside(dir)?;
    }
    let resuming = dir.path.exists() && !fresh && previous.is_some();
    std::fs::create_dir_all(&dir.path).with_context(|| format!("cannot create {}", dir.path.display()))?;
    let mut stored = loaded.experiment.clone().map_paths(|p| crate::fs::path_from(&dir.path, p));
    stored.sweep.clear();
    let config_text = toml::to_string_pretty(&stored).context("cannot serialise the resolved config")?;
    crate::fs::write_atomic(&dir.path.join("config.toml"), config_text.as_bytes())
        .with_context(|| format!("cannot write {}/config.toml", dir.path.display()))?;
    let mut meta = previous.filter(|_| resuming).unwrap_or_else(|| new_meta(&loaded.experiment, backend));
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
    dir.log(&format!("run {} ({})", dir.path.display(), if resuming { "resuming" } else { "new" }));
    Ok((meta, stored))
}

/// Records how training ended in `meta.json` (and the report, when complete); the
/// final status. The first error is the one shown: a failure to record the status
/// after it is only logged.
fn end(dir: &RunDir, meta: &mut Meta, result: &Result<Option<f64>>) -> Result<Status> {
    let (status, reason) = match result {
        Ok(Some(_)) => (Status::Complete, None),
        Ok(None) => (Status::Interrupted, Some("stopped by a signal after saving a checkpoint".to_string())),
        Err(err) => (Status::Failed, Some(format!("{err:#}"))),
    };
    if let Some(reason) = &reason {
        dir.log(&format!("{}: {reason}", format!("{status:?}").to_lowercase()));
    }
    meta.status = status;
    meta.reason = reason;
    meta.ended = Some(now());
    if let Err(write_err) = dir.write_meta(meta) {
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
    Ok(status)
}

/// The message a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
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
    Prepared { dataset, tokenizer, source, .. }: Prepared,
    tracker: Option<&std::sync::Mutex<tracking::Tracker>>,
    backend: crate::config::Backend,
    role: &Role,
    gpus: &[String],
) -> Result<Option<f64>> {
    let checkpoints = Checkpoints::at(dir.path.join("checkpoints"), e.train.checkpoint.keep_last);
    checkpoints.clean_leftovers()?;
    // Only a run's first start takes from the run it starts from; later starts resume
    // from its own checkpoints.
    let source = source.filter(|_| checkpoints.steps().is_empty());
    if let (Some(source), Some(init)) = (&source, &e.train.init_from) {
        start_from(dir, &checkpoints, source, init.state)?;
    }
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
    let tokenizer = run_tokenizer(dir, e, tokenizer, true)?;
    // The other ranks start now, preparing their data while this one does.
    let (ranks, locals) = match *role {
        Role::Lead { size, local } => {
            let rendezvous = ranks::lead_rendezvous(&ranks::ProcessEnvironment, &dir.path, local);
            let locals = if local {
                dir.log(&format!("starting ranks 1–{} on GPUs {}", size - 1, gpus[1..size].join(", ")));
                Some(ranks::Locals::start(size, gpus, &rendezvous, &dir.path)?)
            } else {
                None
            };
            (Ranks::Lead { size, rendezvous }, locals)
        }
        _ => (Ranks::Alone, None),
    };
    let task = Train {
        dir,
        experiment: e,
        dataset: &dataset,
        tokenizer: &tokenizer,
        init_weights: init_weights(source.as_ref(), e),
        interrupted: signals::interrupted(),
        tracker,
        ranks,
    };
    let finished = crate::backend::dispatch(backend, task)??;
    if let Some(locals) = locals {
        locals.finish()?;
    }
    if !finished {
        return Ok(None);
    }
    let evaluation = Evaluate { dir, experiment: e, dataset: &dataset, tokenizer: &tokenizer };
    crate::backend::dispatch(backend, evaluation)?
}

/// The finished run's evaluation, from its last checkpoint (the weights training
/// ended with), without training's autodiff graph or optimizer state in memory.
struct Evaluate<'a> {
    dir: &'a RunDir,
    experiment: &'a Experiment,
    dataset: &'a Dataset,
    tokenizer: &'a TextTokenizer,
}

impl crate::backend::BackendTask for Evaluate<'_> {
    /// The accuracy, or None when a signal stopped the evaluation.
    type Output = Result<Option<f64>>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Option<f64>> {
        let e = self.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype).map_err(anyhow::Error::msg)?;
        let checkpoints = Checkpoints::at(self.dir.path.join("checkpoints"), e.train.checkpoint.keep_last);
        let step = checkpoints.choose(crate::rundir::checkpoint::Which::Latest)?;
        let model = crate::rundir::load_model::<B>(e, self.tokenizer, &checkpoints.model_path(step), &device)?;
        evaluate(self.dir, e, self.dataset, self.tokenizer, &WatVocab::new(), &model, &device)
    }
}

/// The first start of a run that starts from another: with `state = "all"` that
/// run's checkpoint (and its metrics up to it) become this run's own, so training
/// resumes from it; with `weights` the log says where the weights come from (they
/// are loaded into the new model).
fn start_from(dir: &RunDir, checkpoints: &Checkpoints, source: &OpenedRun, state: InitState) -> Result<()> {
    match state {
        InitState::All => {
            let theirs = Checkpoints::at(source.dir.path.join("checkpoints"), 1);
            checkpoints.adopt(&theirs, source.step)?;
            let metrics = source.dir.path.join("metrics.csv");
            let mine = dir.path.join("metrics.csv");
            if metrics.is_file() && !mine.exists() {
                std::fs::copy(&metrics, &mine).with_context(|| format!("cannot copy {}", metrics.display()))?;
            }
            dir.log(&format!("continuing {} from its checkpoint step {}", source.dir.label(), source.step));
        }
        InitState::Weights => {
            dir.log(&format!("starting from the weights of {} at step {}", source.dir.label(), source.step));
        }
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

/// The run's tokenizer: the one kept in its directory when resuming, else `fresh`
/// (kept there for the run's later use when `keep`).
fn run_tokenizer(dir: &RunDir, e: &Experiment, fresh: TextTokenizer, keep: bool) -> Result<TextTokenizer> {
    if e.model.checkpoint_tokenizer().is_some() {
        return Ok(fresh);
    }
    let path = dir.path.join("tokenizer.json");
    if path.is_file() {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    if keep {
        fresh.save(&path)?;
    }
    Ok(fresh)
}

struct Train<'a> {
    dir: &'a RunDir,
    experiment: &'a Experiment,
    dataset: &'a Dataset,
    tokenizer: &'a TextTokenizer,
    /// `model.mpk` whose weights a new run starts from (`train.init_from`, weights,
    /// on its first start).
    init_weights: Option<PathBuf>,
    interrupted: &'static AtomicBool,
    tracker: Option<&'a std::sync::Mutex<tracking::Tracker>>,
    ranks: Ranks,
}

/// Which processes train the run with this one.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
enum Ranks {
    Alone,
    /// The first rank of `size`: publishes the communicator's id in `rendezvous`.
    Lead { size: usize, rendezvous: PathBuf },
    /// A later rank, with the id the first rank published.
    Follower { rank: usize, size: usize, id: Vec<u8> },
}

impl Ranks {
    /// Joins the other ranks' communicator (blocking until all have): the world
    /// this process trains in.
    fn join(&self, dir: &RunDir, interrupted: &'static AtomicBool) -> Result<World> {
        let (rank, size) = match self {
            Ranks::Alone => return Ok(World::solo()),
            Ranks::Lead { size, .. } => (0, *size),
            Ranks::Follower { rank, size, .. } => (*rank, *size),
        };
        #[cfg(feature = "cuda")]
        {
            use crate::ops::cuda::nccl;
            let id: [u8; nccl::ID_BYTES] = match self {
                Ranks::Lead { rendezvous, .. } => {
                    let id = nccl::unique_id().map_err(anyhow::Error::msg)?;
                    ranks::publish(rendezvous, &id)?;
                    dir.log(&format!(
                        "training on {size} GPUs, one process each, summing gradients through NCCL {}",
                        nccl::version().map_err(anyhow::Error::msg)?
                    ));
                    id
                }
                Ranks::Follower { id, .. } => id
                    .as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("the rendezvous holds {} bytes, not an NCCL id", id.len()))?,
                Ranks::Alone => unreachable!("handled above"),
            };
            nccl::init(&id, rank, size).map_err(anyhow::Error::msg).context("joining the other ranks")?;
            if let Ranks::Lead { rendezvous, .. } = self {
                let _ = std::fs::remove_file(rendezvous);
            }
            Ok(World::joined(rank, size, interrupted))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (dir, interrupted, rank);
            anyhow::bail!("training on {size} devices needs a wmx built with `--features cuda` (NCCL)")
        }
    }
}

/// Hooks of a later rank: it writes nothing, and stops when the ranks agree to
/// (a signal to any of them, which each step's sum shares).
struct RankHooks {
    interrupted: &'static AtomicBool,
}

impl<B: AutodiffBackend, O> crate::train::fit::Hooks<B, O> for RankHooks {
    fn after_step(
        &mut self,
        r: &crate::train::fit::StepReport,
        _: &WorldModel<B>,
        _: &O,
        cursor: &Cursor,
    ) -> crate::train::fit::Control {
        use crate::train::fit::Control;
        // As the first rank's hooks: a stop at an epoch's end waits for validation.
        if self.interrupted.load(std::sync::atomic::Ordering::SeqCst) && cursor.step_in_epoch < r.steps_in_epoch {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn after_epoch(&mut self, _: f64, _: &WorldModel<B>, _: &O, _: &Cursor) -> crate::train::fit::Control {
        if self.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            crate::train::fit::Control::Stop
        } else {
            crate::train::fit::Control::Continue
        }
    }
}

impl crate::backend::BackendTask for Train<'_> {
    /// Whether training finished (false: a signal stopped it).
    type Output = Result<bool>;

    fn run<B: Backend>(self, device: B::Device) -> Result<bool> {
        crate::backend::set_float_dtype::<B>(&device, self.experiment.model.dtype).map_err(anyhow::Error::msg)?;
        train::<Autodiff<B>>(self, device)
    }
}

fn train<B: AutodiffBackend>(t: Train<'_>, device: B::Device) -> Result<bool> {
    let e = t.experiment;
    crate::backend::seed::<B>(&device, e.seed);
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
        copy_places: e.copy_places(),
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
    let mut model = WorldModel::<B>::from_experiment(e, t.tokenizer.vocab_size(), &wat_vocab, &device)?;
    if let Some(weights) = &t.init_weights {
        model = model.load(weights, &device)?;
    }
    let world = t.ranks.join(t.dir, t.interrupted)?;
    let checkpoints = Checkpoints::at(t.dir.path.join("checkpoints"), e.train.checkpoint.keep_last);
    let clipping = (e.train.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(e.train.grad_clip as f32));
    let optim_config = AdamW::new(e.train.weight_decay as f32);
    let (loaded, skipped) = checkpoints.load_latest(model.clone(), optim_config.clone().init(clipping.as_ref()), &device)?;
    // Only the first rank writes to the run's log.
    let lead = !matches!(t.ranks, Ranks::Follower { .. });
    let note = |line: &str| if lead { t.dir.log(line) } else { log::debug!("{line}") };
    for s in &skipped {
        note(&format!("skipping a checkpoint: {s}"));
    }
    let (mut model, mut optim, mut cursor) = match loaded {
        Some((m, o, c, step)) => {
            note(&format!(
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
    let model = world.share_parameters(model);
    if let Ranks::Follower { .. } = t.ranks {
        let mut hooks = RankHooks { interrupted: t.interrupted };
        let (_, finished) = crate::backend::on_pool::<B, _>(|| {
            fit(model, &mut optim, &stages, &e.train, e.seed, pad, &mut cursor, &mut hooks, &world)
        });
        return Ok(finished);
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
    // On rayon's pool: each CPU operation's work is then shared without waking
    // this thread (`backend::on_pool`).
    let (_, finished) = crate::backend::on_pool::<B, _>(|| {
        fit(model, &mut optim, &stages, &e.train, e.seed, pad, &mut cursor, &mut hooks, &world)
    });
    if let Some(bar) = t.dir.progress.get() {
        bar.finish_and_clear();
    }
    if let Some(err) = hooks.error {
        return Err(err);
    }
    if !finished {
        t.dir
            .log("interrupted: the checkpoint is saved; run the same command to resume");
        return Ok(false);
    }
    Ok(true)
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
/// answers and `summary.json`); returns the accuracy, or None when a signal
/// stopped it.
pub fn evaluate<B: Backend>(
    dir: &RunDir,
    e: &Experiment,
    dataset: &Dataset,
    tokenizer: &TextTokenizer,
    wat: &WatVocab,
    model: &WorldModel<B>,
    device: &B::Device,
) -> Result<Option<f64>> {
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
        batch: e.eval.batch(crate::backend::runs_on_host::<B>()),
    };
    // A line every tenth of the questions, or every minute; a signal stops it (the
    // run ends interrupted, and running it again evaluates from the start).
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut logged = 0;
    let summary = crate::eval::evaluate(
        model,
        &answerer,
        &crate::eval::curriculum_questions(dataset, split),
        &crate::eval::OperationTable::from_dataset(dataset),
        &options,
        device,
        |done, total| {
            // Questions come a batch at a time: a line whenever another tenth is done.
            let tenth = total.div_ceil(10).max(1);
            if done / tenth > logged / tenth || shown.elapsed().as_secs() >= 60 {
                logged = done;
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                dir.log(&format!("evaluating on {}: {done}/{total} questions, {rate:.2} questions/s", split.name()));
                shown = Instant::now();
            }
            !signals::interrupted().load(std::sync::atomic::Ordering::SeqCst)
        },
    );
    let summary = match summary {
        Err(err) if err.downcast_ref::<crate::eval::Stopped>().is_some() => {
            dir.log(&format!("interrupted: {err}; run the same command to evaluate again"));
            return Ok(None);
        }
        other => other?,
    };
    let accuracy = summary.accuracy;
    let seconds = started.elapsed().as_secs_f64();
    dir.log(&format!(
        "evaluation on {}: accuracy {:.4} ({}/{}) in {seconds:.1} s, {:.2} questions/s",
        split.name(),
        accuracy,
        summary.correct,
        summary.total,
        summary.total as f64 / seconds.max(1e-9),
    ));
    dir.log(&summary.restatement.describe());
    Ok(Some(accuracy))
}
