//! The experiment file's schema: plain serde structs, unknown keys rejected,
//! every default explicit. Field names follow Hugging Face's `config.json` where
//! they mean the same.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sandbox::Policy;

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
    /// Where runs are also followed (MLflow); not part of a run's identity.
    #[serde(default, skip_serializing_if = "TrackingConfig::is_off")]
    pub tracking: TrackingConfig,
    /// Dotted key → list of values; the cartesian product makes the sweep's members.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// `[tracking]`: follow runs in the tools researchers already use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// An MLflow tracking server, `http://host:port`: parameters, per-step and final
    /// metrics, and the report and predictions as artifacts, through its REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// The MLflow experiment runs are logged under [default: the experiment's name].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

impl TrackingConfig {
    pub fn is_off(&self) -> bool {
        self.mlflow.is_none() && self.experiment.is_none()
    }
}

impl Experiment {
    /// The decimals the copy head writes values at (`eval.decimals`, else four),
    /// when the model has one (`model.answer = "copy"`).
    pub fn copy_places(&self) -> Option<u32> {
        (self.model.answer == AnswerValue::Copy).then(|| self.eval.decimals.unwrap_or(4))
    }

    /// The experiment with each path it names (curriculum, model checkpoint, sandbox
    /// files) passed through `map`.
    pub fn map_paths(mut self, map: impl Fn(&std::path::Path) -> PathBuf) -> Experiment {
        self.curriculum = map(&self.curriculum);
        self.model.checkpoint = self.model.checkpoint.as_deref().map(&map);
        self.sandbox.system.files = self.sandbox.system.files.as_deref().map(&map);
        if let Some(init) = &mut self.train.init_from {
            init.run = map(&init.run);
        }
        self
    }
}

fn default_curriculum() -> PathBuf {
    PathBuf::from("../curricula/standard.toml")
}

/// Which checkpoint of a run `infer`, `eval`, `export` and `train.init_from` load:
/// `latest`, `best` (lowest validation loss at an epoch's end) or `step-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Which {
    #[default]
    Latest,
    Best,
    Step(usize),
}

impl std::str::FromStr for Which {
    type Err = String;
    fn from_str(s: &str) -> Result<Which, String> {
        match s {
            "latest" => Ok(Which::Latest),
            "best" => Ok(Which::Best),
            _ => s
                .strip_prefix("step-")
                .and_then(|n| n.parse().ok())
                .map(Which::Step)
                .ok_or_else(|| format!("`{s}` is not a checkpoint: use latest, best or step-N (e.g. step-1200)")),
        }
    }
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Which::Latest => write!(f, "latest"),
            Which::Best => write!(f, "best"),
            Which::Step(n) => write!(f, "step-{n}"),
        }
    }
}

impl TryFrom<String> for Which {
    type Error = String;
    fn try_from(s: String) -> Result<Which, String> {
        s.parse()
    }
}

impl From<Which> for String {
    fn from(w: Which) -> String {
        w.to_string()
    }
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

/// How an answer states the computed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerValue {
    /// A copy head beside the text head chooses where the answer states the value,
    /// as a number or as yes/no, and the computed value is copied in verbatim: the
    /// text stream never writes a digit or a yes/no word itself, and an answer ends
    /// only after it has stated the value. What the answer says always equals what
    /// the sandbox computed.
    #[default]
    Copy,
    /// The text stream writes the value's tokens itself, as any other text; the
    /// answer can drift from the computed value.
    Tokens,
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
    /// How an answer states the computed value.
    pub answer: AnswerValue,
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

impl ModelConfig {
    /// The checkpoint's `tokenizer.json`, when the text stream comes from one (a
    /// `random` init without a checkpoint trains a BPE like `scratch`).
    pub fn checkpoint_tokenizer(&self) -> Option<PathBuf> {
        match (self.init, &self.checkpoint) {
            (Init::Scratch, _) | (_, None) => None,
            (_, Some(dir)) => Some(dir.join("tokenizer.json")),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            init: Init::Scratch,
            checkpoint: None,
            dtype: DType::F32,
            arguments: ArgumentView::Tokens,
            answer: AnswerValue::Copy,
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
                "integers from", "number from", "numbers from", "through", "one to", "digit",
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
    /// threads on the CPU, their gradients summed in shard order: on the CPU the
    /// trajectory depends on `shards`, never on the machine. Use about one per
    /// core. On a GPU a process's shards train as one batch (the same gradient,
    /// summed in the GPU's order), so `shards` costs nothing there.
    pub shards: usize,
    /// GPUs that train the run together, one process each (data parallelism): the
    /// shards of each micro-batch are shared between them (with `shards = 1`, one
    /// each) and their gradients summed through NCCL before each step. CUDA only;
    /// `--devices` sets it. Not part of the run's identity: a run resumes on any
    /// number of GPUs.
    pub devices: usize,
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
    /// Start from another run's checkpoint instead of `model.init` (`--init-from`,
    /// `--continue`). Absent: a new run starts from `model.init`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitFrom>,
}

/// Another run a new run starts from: `[train.init_from]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitFrom {
    /// The run directory (`runs/<experiment>/<id>`), relative to the file that names it.
    pub run: PathBuf,
    /// Which of its checkpoints.
    #[serde(default)]
    pub checkpoint: Which,
    /// What is taken from it.
    #[serde(default)]
    pub state: InitState,
}

/// What a run takes from the run it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitState {
    /// Its weights (and tokenizer): a fresh optimizer and schedule, from step 0, on
    /// this experiment's curriculum (fine-tuning a trained WorldModel on another).
    #[default]
    Weights,
    /// Everything its checkpoint holds: weights, optimizer and its place in the
    /// curriculum, with its metrics so far; training goes on under this
    /// experiment's epochs (a finished run continued with a larger `epoch_scale`).
    All,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 32,
            grad_accum: 1,
            shards: 1,
            devices: 1,
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
            init_from: None,
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
    /// Questions answered together (one prefill, each exit's candidates, the
    /// answers). It changes how fast evaluation runs, not what it computes, so it is
    /// not part of the run's id. Unset: [`EvalConfig::CPU_BATCH`] on the CPU,
    /// [`EvalConfig::GPU_BATCH`] on a GPU ([`EvalConfig::batch`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

impl EvalConfig {
    /// On the CPU a batch's padding costs work, and larger batches ran slower.
    pub const CPU_BATCH: usize = 16;
    /// On a GPU each decoding step costs its launches whatever the rows, so the
    /// fewer batches the better.
    pub const GPU_BATCH: usize = 128;

    /// Questions answered together on a backend that runs on the host's cores
    /// (`on_host`) or not.
    pub fn batch(&self, on_host: bool) -> usize {
        self.batch_size.unwrap_or(if on_host { Self::CPU_BATCH } else { Self::GPU_BATCH })
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            split: "test".into(),
            max_new_tokens: 24,
            decimals: None,
            batch_size: None,
        }
    }
}

