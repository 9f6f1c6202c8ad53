//! Experiment files: plain serde structs (unknown keys are errors, defaults are
//! explicit), layered with figment — TOML file (with `extends`) → `WMX_` env →
//! `--set key=value` — and checked into an [`Experiment`] before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::sandbox::Policy;

/// Errors reading or checking an experiment file. Each names the file and, where
/// it can, the key and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: file not found{}", via.as_ref().map(|v| format!(" (named by key `extends` in {})", v.display())).unwrap_or_default())]
    NotFound { path: PathBuf, via: Option<PathBuf> },
    #[error("{path}: cannot read: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: TOML syntax error: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: `extends` cycle: {chain}")]
    Cycle { path: PathBuf, chain: String },
    #[error("{source_name}: key `{key}`: {message}")]
    Key {
        key: String,
        source_name: String,
        message: String,
    },
    #[error("--set {raw}: expected KEY=VALUE")]
    BadSet { raw: String },
}

impl ConfigError {
    fn key(
        key: impl Into<String>,
        source_name: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Key {
            key: key.into(),
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Renders a TOML parse error on one line with its position.
pub fn toml_error(e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(_) => {
            // `Display` carries "TOML parse error at line L, column C" first.
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            let position = first
                .strip_prefix("TOML parse error at ")
                .unwrap_or(&first)
                .to_string();
            format!("{position}: {message}")
        }
        None => message,
    }
}

/// Which burn backend trains and serves the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Cpu,
    Cuda,
    Rocm,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Rocm => "rocm",
        }
    }
}

/// An experiment as written (after layering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name of the run directory `runs/<name>/`; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Another experiment file this one builds on (relative to this file).
    #[serde(default, skip_serializing)]
    pub extends: Option<String>,
    /// Seed for initialisation, shuffling and sampling.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda` or `rocm`.
    #[serde(default)]
    pub backend: Backend,
    /// Curriculum file, relative to the experiment file that names it.
    #[serde(default = "default_curriculum")]
    pub curriculum: PathBuf,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub wat: WatConfig,
    #[serde(default)]
    pub fusion: FusionConfig,
    #[serde(default)]
    pub selection: SelectionConfig,
    #[serde(default)]
    pub sandbox: Policy,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Dotted key → list of values; the cartesian product makes the sweep's members.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

fn default_curriculum() -> PathBuf {
    PathBuf::from("../curricula/standard.toml")
}

/// How the text stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// A small Qwen3-shaped model with a BPE tokenizer trained on the curriculum.
    #[default]
    Scratch,
    /// Weights and tokenizer from a Hugging Face Qwen3 directory (`model.checkpoint`).
    Pretrained,
    /// Random weights in the shapes of `model.checkpoint`'s config.json when one is
    /// given, else of this table (with a BPE trained on the curriculum): for
    /// benchmarking a large shape without its weights.
    Random,
}

/// How the text stream reads a question's bound arguments (its numbers, and quoted
/// strings inside their quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgumentView {
    /// As their own tokens: the prompt is the question as written.
    #[default]
    Tokens,
    /// Each argument as one `<|arg|>` token: no state of either stream depends on an
    /// argument's value, so program choice and answer wording rest on the question's
    /// wording alone. Values still reach the program by binding, and the answer by the
    /// computed span. Needs a tokenizer with `<|arg|>` (scratch tokenizers have it).
    Placeholder,
}

/// Numeric type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    Bf16,
    F16,
}

/// The text stream: a Qwen3 decoder. Field names follow Hugging Face's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub init: Init,
    /// Hugging Face directory (`config.json`, `*.safetensors`, `tokenizer.json`);
    /// relative to the experiment file. Needed for `pretrained`; optional for `random`.
    pub checkpoint: Option<PathBuf>,
    pub dtype: DType,
    /// How the text stream reads the question's bound arguments.
    pub arguments: ArgumentView,
    /// BPE vocabulary size for `scratch` (a checkpoint brings its own).
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            init: Init::Scratch,
            checkpoint: None,
            dtype: DType::F32,
            arguments: ArgumentView::Tokens,
            vocab_size: 1024,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 32,
            max_position_embeddings: 512,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
        }
    }
}

/// The WAT stream: a small causal decoder, one segment per fusion layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatConfig {
    pub hidden_size: usize,
    /// Decoder layers in each segment.
    pub layers_per_segment: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Longest program, in WAT tokens.
    pub max_tokens: usize,
    /// Whether the WAT stream reads the tokens of the question's bound arguments
    /// (numbers, quoted strings). Off: it reads the wording around them only — the
    /// arguments reach the program through binding. (The text states it reads still
    /// mix the arguments in through self-attention unless `model.arguments` is
    /// `placeholder`.)
    pub read_arguments: bool,
}

impl Default for WatConfig {
    fn default() -> Self {
        WatConfig {
            hidden_size: 128,
            layers_per_segment: 1,
            num_attention_heads: 4,
            intermediate_size: 384,
            max_tokens: 512,
            read_arguments: false,
        }
    }
}

/// Flamingo-style gated cross-attention between the streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    /// Text layers ℓk (0-based) before which segment k is fused; strictly increasing.
    pub layers: Vec<usize>,
    /// Initial value of the tanh gates (0 leaves a pretrained text stream unchanged).
    pub gate_init: f64,
    /// Attention heads of each cross-attention block.
    pub num_attention_heads: usize,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            layers: vec![1, 2, 3],
            gate_init: 0.0,
            num_attention_heads: 4,
        }
    }
}

/// Weights of the candidate-selection score terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    pub op_match: f64,
    pub layer_position: f64,
    pub reasonableness: f64,
    pub confidence: f64,
    /// Softmax temperature over the weighted scores.
    pub temperature: f64,
    /// How a question's wording names the operation it needs, for `op_match`: the
    /// first entry with a word the (lowercased) question contains wins.
    pub intents: Vec<Intent>,
}

/// One row of the intent table: an operation and the words that ask for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// An operation as `wmx` names a program's operations: add, sub, mul, div, min,
    /// max, compare, loop, text, system, ….
    pub op: String,
    pub words: Vec<String>,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            op_match: 2.0,
            layer_position: 1.0,
            reasonableness: 0.5,
            confidence: 1.0,
            temperature: 1.0,
            intents: default_intents(),
        }
    }
}

/// The built-in intent table, most specific first.
pub fn default_intents() -> Vec<Intent> {
    let table: [(&str, &[&str]); 10] = [
        ("system", &["file", "year", "bytes"]),
        ("text", &["character", "vowel", "word", "letter", "length of \""]),
        (
            "loop",
            &[
                "factorial", "!", "fibonacci", "fib(", "prime", "power", "^", "gcd", "divisor",
                "integers from", "number from", "numbers from", "through", "one to",
            ],
        ),
        ("min", &["smallest", "minimum", "least", "lowest"]),
        ("max", &["largest", "maximum", "greatest among", "highest"]),
        ("compare", &["greater", "larger", "exceed", "bigger"]),
        ("div", &["÷", "/", "divide", "quotient", "shared equally", "split", "go into", "cut into"]),
        (
            "mul",
            &[
                "×", "*", "multipl", "times", "product", "groups of", "each", "rows of", "%",
                "percent",
            ],
        ),
        (
            "sub",
            &[
                "-", "minus", "subtract", "difference", "less", "left", "remain", "take", "away",
                "sold", "get off",
            ],
        ),
        ("add", &["+", "plus", "add", "sum", "total", "more"]),
    ];
    table
        .iter()
        .map(|(op, words)| Intent {
            op: op.to_string(),
            words: words.iter().map(|w| w.to_string()).collect(),
        })
        .collect()
}

/// Which parameters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trainable {
    #[default]
    All,
    /// The text decoder is frozen (a tied LM head with it); an untied LM head still trains.
    FrozenText,
    /// Only the fusion blocks and the WAT stream train.
    FusionAndWat,
}

/// Optimisation and checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Each micro-batch is split into this many shards, run side by side on as many
    /// threads, their gradients summed in shard order: the trajectory depends on
    /// `shards`, never on the machine. Use about one per core.
    pub shards: usize,
    pub learning_rate: f64,
    /// Final learning rate of the cosine schedule, as a share of `learning_rate`.
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    /// Each stage after the first climbs back to the schedule's rate over this many
    /// steps, from 1/n of it: a stage's unfamiliar programs otherwise meet the
    /// optimizer at full rate (0 disables).
    pub stage_warmup_steps: usize,
    pub weight_decay: f64,
    /// Gradient-norm clipping threshold (0 disables).
    pub grad_clip: f64,
    /// Weight of the mean WAT loss over exits, added to the text loss.
    pub wat_loss_weight: f64,
    /// Multiplies every stage's epochs (quick trials: 0.1).
    pub epoch_scale: f64,
    /// Share of training rows per epoch whose computed value is swapped for a random
    /// one of the same shape, the answer restating it: practice in answering from
    /// the computed span rather than from memory (0 disables).
    pub copy_practice: f64,
    /// Share of each training question's word tokens replaced by a mask token
    /// (word dropout), so no single word carries the decision (0 disables).
    pub word_dropout: f64,
    /// Share of training rows per epoch whose carrier — the sentence frame a core
    /// was put in ("What is {core}?") — is masked, so the program is learnt from
    /// the core alone and holds under frames never seen with it (0 disables).
    pub carrier_dropout: f64,
    pub parameters: Trainable,
    /// Longest text sequence, in tokens.
    pub max_seq_len: usize,
    pub checkpoint: CheckpointConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 32,
            grad_accum: 1,
            shards: 1,
            learning_rate: 3e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 50,
            stage_warmup_steps: 0,
            weight_decay: 0.01,
            grad_clip: 1.0,
            wat_loss_weight: 1.0,
            epoch_scale: 1.0,
            copy_practice: 0.0,
            word_dropout: 0.0,
            carrier_dropout: 0.0,
            parameters: Trainable::All,
            max_seq_len: 128,
            checkpoint: CheckpointConfig::default(),
        }
    }
}

/// When checkpoints are written and how many are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint after this share of an epoch.
    pub every_epoch_fraction: f64,
    /// …or after this many minutes, whichever comes first.
    pub every_minutes: f64,
    /// Newest checkpoints kept (the best is kept as well).
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every_epoch_fraction: 0.5,
            every_minutes: 10.0,
            keep_last: 3,
        }
    }
}

/// Evaluation after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// `test` or `validation`.
    pub split: String,
    /// Longest generated answer, in tokens.
    pub max_new_tokens: usize,
    /// Numeric answers are equal after rounding to this many decimals (default:
    /// the expected answer's own decimals).
    pub decimals: Option<u32>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            split: "test".into(),
            max_new_tokens: 24,
            decimals: None,
        }
    }
}

/// A loaded experiment: the resolved values and where they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub experiment: Experiment,
    /// The experiment file given on the command line.
    pub path: PathBuf,
    /// Every file read, the given one first, then what it extends.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// The experiment's name: `name`, else the file stem.
    pub fn name(&self) -> String {
        self.experiment
            .name
            .clone()
            .unwrap_or_else(|| crate::file_stem(&self.path))
    }
}

/// Loads an experiment: file (and what it extends) → `WMX_` env → `--set` overrides.
pub fn load(path: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
    // WMX_KERNEL_CACHE (see `backend::kernel_cache_dir`) and the tests' WMX_CHROMIUM
    // name paths, and WMX_CUBLAS (`backend::cublas`), WMX_CUDA_MEMORY
    // (`backend::cuda_memory`) and the WMX_FUSED_* of the fused training operations
    // (`backend::adamw`, `rms_norm`, `rotary`, `softmax`, `swiglu`) are switches,
    // not keys.
    const SWITCHES: &[&str] = &[
        "kernel_cache",
        "chromium",
        "cublas",
        "cuda_memory",
        "fused_adamw",
        "fused_norm",
        "fused_rotary",
        "fused_softmax",
        "fused_swiglu",
    ];
    let env = Env::prefixed("WMX_").ignore(SWITCHES).split("__");
    load_with_env(path, overrides, env)
}

/// As [`load`], with the environment provider given (tests pass their own).
pub fn load_with_env(path: &Path, overrides: &[String], env: Env) -> Result<Loaded, ConfigError> {
    let mut files = Vec::new();
    let mut figment = layer_file(path, None, &mut files)?;
    figment = figment.merge(env);
    for raw in overrides {
        figment = figment.merge(SetOverride::parse(raw)?);
    }
    let mut experiment: Experiment = figment.extract().map_err(|e| figment_error(&figment, e))?;
    // Paths are relative to the file (or the working directory, for env and --set) that set them.
    let resolve = |key: &str, value: &Path| -> PathBuf {
        match figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path())
        {
            Some(file) if value.is_relative() => crate::relative_to(file, value),
            _ => value.to_path_buf(),
        }
    };
    experiment.curriculum = resolve("curriculum", &experiment.curriculum);
    if let Some(checkpoint) = &experiment.model.checkpoint {
        experiment.model.checkpoint = Some(resolve("model.checkpoint", checkpoint));
    }
    if let Some(files_dir) = &experiment.sandbox.system.files {
        experiment.sandbox.system.files = Some(resolve("sandbox.system.files", files_dir));
    }
    let loaded = Loaded {
        experiment,
        path: path.to_path_buf(),
        files,
    };
    check(&loaded, &figment)?;
    Ok(loaded)
}

/// A figment for `path` with everything it extends underneath it.
fn layer_file(
    path: &Path,
    via: Option<&Path>,
    files: &mut Vec<PathBuf>,
) -> Result<Figment, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::NotFound {
            path: path.to_path_buf(),
            via: via.map(Path::to_path_buf),
        });
    }
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if files
        .iter()
        .any(|f| f.canonicalize().ok().as_ref() == Some(&canonical))
    {
        let chain: Vec<String> = files
            .iter()
            .chain([&path.to_path_buf()])
            .map(|f| f.display().to_string())
            .collect();
        return Err(ConfigError::Cycle {
            path: path.to_path_buf(),
            chain: chain.join(" → "),
        });
    }
    files.push(path.to_path_buf());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Parse once ourselves: toml reports line and column, figment does not.
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: toml_error(&e),
    })?;
    let own = Figment::from(Toml::file_exact(path));
    match table.get("extends") {
        None => Ok(own),
        Some(toml::Value::String(parent)) => {
            let parent_path = crate::relative_to(path, Path::new(parent));
            Ok(layer_file(&parent_path, Some(path), files)?.merge(own))
        }
        Some(other) => Err(ConfigError::key(
            "extends",
            path.display().to_string(),
            format!("expected a file name, found {}", other.type_str()),
        )),
    }
}

/// Maps a figment extraction error to one naming the full key and its source.
fn figment_error(figment: &Figment, err: figment::Error) -> ConfigError {
    let mut key = err.path.join(".");
    if let figment::error::Kind::UnknownField(field, _) = &err.kind {
        key = if key.is_empty() {
            field.clone()
        } else {
            format!("{key}.{field}")
        };
    }
    let source = err
        .metadata
        .as_ref()
        .or_else(|| figment.find_metadata(&key))
        .map(describe_source)
        .unwrap_or_else(|| "experiment".into());
    let message = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        kind => kind.to_string(),
    };
    ConfigError::key(
        if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        source,
        message,
    )
}

fn describe_source(metadata: &Metadata) -> String {
    match metadata.source.as_ref() {
        Some(figment::Source::File(path)) => path.display().to_string(),
        Some(figment::Source::Custom(name)) => name.clone(),
        _ => metadata.name.to_string(),
    }
}

/// Range checks serde cannot express, naming the key and the file that set it.
fn check(loaded: &Loaded, figment: &Figment) -> Result<(), ConfigError> {
    let e = &loaded.experiment;
    let fail = |key: &str, message: String| {
        let source = figment
            .find_metadata(key)
            .map(describe_source)
            .unwrap_or_else(|| loaded.path.display().to_string());
        Err(ConfigError::key(key, source, message))
    };
    let m = &e.model;
    for (key, value) in [
        ("model.vocab_size", m.vocab_size),
        ("model.hidden_size", m.hidden_size),
        ("model.intermediate_size", m.intermediate_size),
        ("model.num_hidden_layers", m.num_hidden_layers),
        ("model.num_attention_heads", m.num_attention_heads),
        ("model.num_key_value_heads", m.num_key_value_heads),
        ("model.head_dim", m.head_dim),
        ("model.max_position_embeddings", m.max_position_embeddings),
        ("wat.hidden_size", e.wat.hidden_size),
        ("wat.layers_per_segment", e.wat.layers_per_segment),
        ("wat.num_attention_heads", e.wat.num_attention_heads),
        ("wat.intermediate_size", e.wat.intermediate_size),
        ("wat.max_tokens", e.wat.max_tokens),
        ("fusion.num_attention_heads", e.fusion.num_attention_heads),
        ("train.batch_size", e.train.batch_size),
        ("train.grad_accum", e.train.grad_accum),
        ("train.shards", e.train.shards),
        ("train.max_seq_len", e.train.max_seq_len),
        ("train.checkpoint.keep_last", e.train.checkpoint.keep_last),
        ("eval.max_new_tokens", e.eval.max_new_tokens),
    ] {
        if value == 0 {
            return fail(key, "must be at least 1".into());
        }
    }
    if !m.num_attention_heads.is_multiple_of(m.num_key_value_heads) {
        return fail(
            "model.num_key_value_heads",
            format!(
                "{} must divide num_attention_heads ({})",
                m.num_key_value_heads, m.num_attention_heads
            ),
        );
    }
    if !e.wat.hidden_size.is_multiple_of(e.wat.num_attention_heads) {
        return fail(
            "wat.num_attention_heads",
            format!(
                "{} must divide wat.hidden_size ({})",
                e.wat.num_attention_heads, e.wat.hidden_size
            ),
        );
    }
    if e.fusion.layers.is_empty() {
        return fail("fusion.layers", "declare at least one fusion layer".into());
    }
    for (i, &layer) in e.fusion.layers.iter().enumerate() {
        if layer >= m.num_hidden_layers {
            return fail(
                "fusion.layers",
                format!(
                    "fusion layer {layer} (entry {i}) is out of range: the text stream has {} layers (0..={})",
                    m.num_hidden_layers,
                    m.num_hidden_layers - 1
                ),
            );
        }
        if i > 0 && layer <= e.fusion.layers[i - 1] {
            return fail(
                "fusion.layers",
                format!(
                    "layers must be strictly increasing; {layer} follows {}",
                    e.fusion.layers[i - 1]
                ),
            );
        }
    }
    if m.init == Init::Pretrained && m.checkpoint.is_none() {
        return fail(
            "model.checkpoint",
            "init = \"pretrained\" needs a Hugging Face directory (or init = \"random\" for its shapes with random weights)".into(),
        );
    }
    let positive = [
        ("model.rope_theta", m.rope_theta),
        ("model.rms_norm_eps", m.rms_norm_eps),
        ("train.learning_rate", e.train.learning_rate),
        ("train.epoch_scale", e.train.epoch_scale),
        ("selection.temperature", e.selection.temperature),
        (
            "train.checkpoint.every_epoch_fraction",
            e.train.checkpoint.every_epoch_fraction,
        ),
        (
            "train.checkpoint.every_minutes",
            e.train.checkpoint.every_minutes,
        ),
    ];
    for (key, value) in positive {
        if !(value > 0.0 && value.is_finite()) {
            return fail(key, format!("must be a positive number, not {value}"));
        }
    }
    let non_negative = [
        ("train.weight_decay", e.train.weight_decay),
        ("train.grad_clip", e.train.grad_clip),
        ("train.wat_loss_weight", e.train.wat_loss_weight),
        ("selection.op_match", e.selection.op_match),
        ("selection.layer_position", e.selection.layer_position),
        ("selection.reasonableness", e.selection.reasonableness),
        ("selection.confidence", e.selection.confidence),
        ("fusion.gate_init", e.fusion.gate_init.abs()),
    ];
    for (key, value) in non_negative {
        if !(value >= 0.0 && value.is_finite()) {
            return fail(key, format!("must be zero or positive, not {value}"));
        }
    }
    for (i, intent) in e.selection.intents.iter().enumerate() {
        if intent.op.trim().is_empty() || intent.words.iter().all(|w| w.trim().is_empty()) {
            return fail(
                &format!("selection.intents[{i}]"),
                "needs an `op` and at least one non-empty word".into(),
            );
        }
    }
    for (key, share) in [
        ("train.word_dropout", e.train.word_dropout),
        ("train.carrier_dropout", e.train.carrier_dropout),
    ] {
        if !(0.0..1.0).contains(&share) {
            return fail(key, "must be in [0, 1)".into());
        }
    }
    if !(0.0..=1.0).contains(&e.train.copy_practice) {
        return fail("train.copy_practice", "must be between 0 and 1".into());
    }
    if !(0.0..=1.0).contains(&e.train.min_lr_ratio) {
        return fail("train.min_lr_ratio", "must be between 0 and 1".into());
    }
    if !["test", "validation"].contains(&e.eval.split.as_str()) {
        return fail(
            "eval.split",
            format!(
                "`{}` is not a split; use \"test\" or \"validation\"",
                e.eval.split
            ),
        );
    }
    if let Err((key, message)) = e.sandbox.check() {
        return fail(&format!("sandbox.{key}"), message);
    }
    if let Some(files) = &e.sandbox.system.files
        && !files.is_dir()
    {
        return fail(
            "sandbox.system.files",
            format!("{} is not a directory", files.display()),
        );
    }
    for key in e.sweep.keys() {
        if key.starts_with("sweep") || key == "extends" {
            return fail(&format!("sweep.{key}"), "cannot sweep this key".into());
        }
    }
    Ok(())
}

/// A `--set key=value` override; the value is read as TOML (`3`, `[1, 2]`,
/// `"text"`), falling back to a plain string.
struct SetOverride {
    raw: String,
    data: Dict,
}

impl SetOverride {
    fn parse(raw: &str) -> Result<SetOverride, ConfigError> {
        let (key, value) = raw.split_once('=').ok_or_else(|| ConfigError::BadSet {
            raw: raw.to_string(),
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::BadSet {
                raw: raw.to_string(),
            });
        }
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let data = Serialized::default(key, value)
            .data()
            .map_err(|e| ConfigError::key(key, format!("--set {raw}"), e.to_string()))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        Ok(SetOverride {
            raw: raw.to_string(),
            data,
        })
    }
}

impl Provider for SetOverride {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            format!("--set {}", self.raw),
            figment::Source::Custom(format!("--set {}", self.raw)),
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn no_env() -> Env {
        Env::prefixed("WMX_TEST_NEVER_SET_")
    }

    #[test]
    fn layers_apply_file_then_extends_then_set() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.toml",
            "seed = 1\n[train]\nbatch_size = 8\nlearning_rate = 0.01\n",
        );
        let child = write(
            dir.path(),
            "child.toml",
            "extends = \"base.toml\"\n[train]\nbatch_size = 16\n",
        );
        let loaded = load_with_env(&child, &["train.learning_rate=0.5".into()], no_env()).unwrap();
        assert_eq!(loaded.experiment.seed, 1);
        assert_eq!(loaded.experiment.train.batch_size, 16);
        assert_eq!(loaded.experiment.train.learning_rate, 0.5);
        assert_eq!(loaded.files.len(), 2);
        assert_eq!(loaded.name(), "child");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "e.toml", "[train]\nbatch_sise = 8\n");
        let err = load_with_env(&path, &[], no_env()).unwrap_err().to_string();
        assert!(err.contains("train.batch_sise"), "{err}");
        assert!(err.contains("e.toml"), "{err}");
    }

    #[test]
    fn out_of_range_fusion_layer_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "e.toml",
            "[model]\nnum_hidden_layers = 4\n[fusion]\nlayers = [1, 4]\n",
        );
        let err = load_with_env(&path, &[], no_env()).unwrap_err().to_string();
        assert!(
            err.contains("fusion.layers") && err.contains("out of range") && err.contains("e.toml"),
            "{err}"
        );
    }

    #[test]
    fn paths_resolve_relative_to_the_file_that_sets_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(
            dir.path(),
            "base.toml",
            "curriculum = \"c/standard.toml\"\n",
        );
        let child = write(
            &dir.path().join("sub"),
            "child.toml",
            "extends = \"../base.toml\"\n",
        );
        let loaded = load_with_env(&child, &[], no_env()).unwrap();
        assert_eq!(
            loaded.experiment.curriculum,
            dir.path().join("c/standard.toml")
        );
    }
}
