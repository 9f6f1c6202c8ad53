//! The checks an experiment passes before anything runs, beyond what its types
//! say: each names the key and the file that set it.

use figment::Figment;

use super::{ConfigError, Experiment, Init, Loaded, describe_source};

/// Range checks serde cannot express, naming the key and the file that set it.
pub(super) fn check(loaded: &Loaded, figment: &Figment) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| {
        let source = figment
            .find_metadata(key)
            .map(describe_source)
            .unwrap_or_else(|| loaded.path.display().to_string());
        Err(ConfigError::key(key, source, message))
    };
    let e = &loaded.experiment;
    experiment(e, &fail)?;
    name(&loaded.name(), &fail)
}

/// The checks on a stored experiment (a run directory's `config.toml`), naming `path`.
pub fn check_experiment(e: &Experiment, path: &std::path::Path) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(ConfigError::key(key, path.display().to_string(), message));
    experiment(e, &fail)
}

fn experiment(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
    sizes(e, fail)?;
    bounds(e, fail)?;
    shapes(e, fail)?;
    numbers(e, fail)?;
    choices(e, fail)
}

/// A run's name is a plain name: it becomes the directory `runs/<name>/`, so it has
/// no path separator, does not start with a dot and holds no control character.
fn name(name: &str, fail: &Fail) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if plain {
        Ok(())
    } else {
        fail(
            "name",
            format!("`{name}` is not a plain name: it names the directory runs/<name>/, so it may not hold `/` or `\\`, start with a dot, or be empty"),
        )
    }
}

/// The largest tensor one declared size may make: CUDA kernels index with 32 bits.
const MAX_TENSOR_ELEMENTS: u128 = i32::MAX as u128;
/// The largest model the declared sizes may describe, in parameters.
const MAX_PARAMETERS: u128 = 1 << 37;
/// The largest rotary table (`positions × head_dim`), in elements.
const MAX_ROTARY_ELEMENTS: u128 = 1 << 28;

/// Declared sizes stay within what the model and the sandbox can hold: no allocation
/// that the sizes cannot justify, and sequences that fit their position tables.
fn bounds(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
    let m = &e.model;
    let wat_head_dim = e.wat.hidden_size / e.wat.num_attention_heads.max(1);
    for (key, dim) in [("model.head_dim", m.head_dim), ("wat.hidden_size", wat_head_dim)] {
        if dim % 2 != 0 {
            let what = if key == "model.head_dim" { format!("{dim}") } else { format!("{dim} per head") };
            return fail(key, format!("{what} must be even: rotary position embeddings rotate pairs of dimensions"));
        }
    }
    let (h, v, i) = (m.hidden_size as u128, m.vocab_size as u128, m.intermediate_size as u128);
    let (q, kv) = ((m.num_attention_heads * m.head_dim) as u128, (m.num_key_value_heads * m.head_dim) as u128);
    let (wh, wi) = (e.wat.hidden_size as u128, e.wat.intermediate_size as u128);
    for (key, elements) in [
        ("model.vocab_size", v * h),
        ("model.intermediate_size", i * h),
        ("model.num_attention_heads", q * h),
        ("wat.intermediate_size", wi * wh),
        ("wat.hidden_size", wh * h),
    ] {
        if elements > MAX_TENSOR_ELEMENTS {
            return fail(key, format!("makes a weight of {elements} elements; one tensor holds at most {MAX_TENSOR_ELEMENTS}"));
        }
    }
    let layers = m.num_hidden_layers as u128;
    let parameters = 2 * v * h + layers * (2 * q * h + 2 * kv * h + 3 * h * i);
    if parameters > MAX_PARAMETERS {
        return fail("model.num_hidden_layers", format!("the text stream would have about {parameters} parameters; wmx builds at most {MAX_PARAMETERS}"));
    }
    for (key, positions, dim) in [
        ("model.max_position_embeddings", m.max_position_embeddings, m.head_dim),
        ("wat.max_tokens", e.wat.max_tokens + 1, wat_head_dim),
    ] {
        let elements = positions as u128 * dim as u128;
        if elements > MAX_ROTARY_ELEMENTS {
            return fail(key, format!("{positions} positions × {dim} dimensions make a rotary table of {elements} elements; the limit is {MAX_ROTARY_ELEMENTS}"));
        }
    }
    if e.train.max_seq_len > m.max_position_embeddings {
        return fail(
            "train.max_seq_len",
            format!("{} exceeds model.max_position_embeddings ({}): a sequence cannot be longer than the positions the model has", e.train.max_seq_len, m.max_position_embeddings),
        );
    }
    Ok(())
}

/// Reports the first problem: `fail(key, message)`.
type Fail<'a> = dyn Fn(&str, String) -> Result<(), ConfigError> + 'a;

/// Counts and sizes are at least 1.
fn sizes(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
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
        ("train.devices", e.train.devices),
        ("train.max_seq_len", e.train.max_seq_len),
        ("train.checkpoint.keep_last", e.train.checkpoint.keep_last),
        ("eval.max_new_tokens", e.eval.max_new_tokens),
        ("eval.batch_size", e.eval.batch_size.unwrap_or(1)),
    ] {
        if value == 0 {
            return fail(key, "must be at least 1".into());
        }
    }
    Ok(())
}

/// Heads divide their widths; fusion layers exist, in order; a pretrained model names its checkpoint.
fn shapes(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
    let m = &e.model;
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
    Ok(())
}

/// Rates, scales and weights are finite, positive or non-negative as they must be.
fn numbers(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
    let m = &e.model;
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
    Ok(())
}

/// Shares lie in their ranges, names name something, the sandbox's policy holds.
fn choices(e: &Experiment, fail: &Fail) -> Result<(), ConfigError> {
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
    if e.train.devices > 1 && e.train.shards > 1 && !e.train.shards.is_multiple_of(e.train.devices) {
        return fail(
            "train.shards",
            format!(
                "{} shards cannot be shared evenly between {} devices; use a multiple of train.devices (or 1: one shard each)",
                e.train.shards, e.train.devices
            ),
        );
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
    if let Some(url) = &e.tracking.mlflow
        && !url.starts_with("http://")
    {
        return fail(
            "tracking.mlflow",
            format!("`{url}` is not an http:// URL of an MLflow tracking server (e.g. \"http://127.0.0.1:5000\")"),
        );
    }
    for key in e.sweep.keys() {
        if key.starts_with("sweep") || key == "extends" {
            return fail(&format!("sweep.{key}"), "cannot sweep this key".into());
        }
    }
    Ok(())
}

