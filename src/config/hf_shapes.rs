//! The text stream's shapes from a Hugging Face checkpoint's `config.json`.
//!
//! With `model.checkpoint` (and an `init` that reads it), `config.json` is where the
//! text stream's shapes come from. A shape key the experiment file itself sets (or
//! `WMX_…` or `--set`) must agree with it; one inherited through `extends`, or left
//! at its default, takes the checkpoint's value. So `qwen3-0.6b.toml`, which
//! extends `base.toml`'s small model, runs on any Qwen3 directory it is pointed at.

use std::path::Path;

use figment::Figment;

use super::{ConfigError, Experiment, Init, ModelConfig, describe_source};

/// The shape keys `config.json` decides, as `(key, value)` read from it.
fn shapes(json: &serde_json::Value) -> Vec<(&'static str, Value)> {
    let int = |k: &str| json.get(k).and_then(serde_json::Value::as_u64).map(|v| Value::Int(v as usize));
    let heads = json.get("num_attention_heads").and_then(serde_json::Value::as_u64);
    let hidden = json.get("hidden_size").and_then(serde_json::Value::as_u64);
    // transformers' defaults for keys a file may leave out.
    let head_dim = int("head_dim").or_else(|| Some(Value::Int((hidden? / heads.filter(|&h| h > 0)?) as usize)));
    let theta = json
        .get("rope_theta")
        .or_else(|| json.get("rope_parameters")?.get("rope_theta"))
        .and_then(serde_json::Value::as_f64)
        .map(Value::Float);
    let float = |k: &str, default: f64| Some(Value::Float(json.get(k).and_then(serde_json::Value::as_f64).unwrap_or(default)));
    let tie = json.get("tie_word_embeddings").and_then(serde_json::Value::as_bool).unwrap_or(false);
    [
        ("vocab_size", int("vocab_size")),
        ("hidden_size", int("hidden_size")),
        ("intermediate_size", int("intermediate_size")),
        ("num_hidden_layers", int("num_hidden_layers")),
        ("num_attention_heads", int("num_attention_heads")),
        ("num_key_value_heads", int("num_key_value_heads").or_else(|| int("num_attention_heads"))),
        ("head_dim", head_dim),
        ("max_position_embeddings", int("max_position_embeddings").or(Some(Value::Int(32768)))),
        ("rope_theta", theta.or(Some(Value::Float(10_000.0)))),
        ("rms_norm_eps", float("rms_norm_eps", 1e-6)),
        ("tie_word_embeddings", Some(Value::Bool(tie))),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Int(usize),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

fn get(m: &ModelConfig, key: &str) -> Value {
    match key {
        "vocab_size" => Value::Int(m.vocab_size),
        "hidden_size" => Value::Int(m.hidden_size),
        "intermediate_size" => Value::Int(m.intermediate_size),
        "num_hidden_layers" => Value::Int(m.num_hidden_layers),
        "num_attention_heads" => Value::Int(m.num_attention_heads),
        "num_key_value_heads" => Value::Int(m.num_key_value_heads),
        "head_dim" => Value::Int(m.head_dim),
        "max_position_embeddings" => Value::Int(m.max_position_embeddings),
        "rope_theta" => Value::Float(m.rope_theta),
        "rms_norm_eps" => Value::Float(m.rms_norm_eps),
        "tie_word_embeddings" => Value::Bool(m.tie_word_embeddings),
        _ => unreachable!("not a shape key: {key}"),
    }
}

fn set(m: &mut ModelConfig, key: &str, value: Value) {
    match (key, value) {
        ("vocab_size", Value::Int(v)) => m.vocab_size = v,
        ("hidden_size", Value::Int(v)) => m.hidden_size = v,
        ("intermediate_size", Value::Int(v)) => m.intermediate_size = v,
        ("num_hidden_layers", Value::Int(v)) => m.num_hidden_layers = v,
        ("num_attention_heads", Value::Int(v)) => m.num_attention_heads = v,
        ("num_key_value_heads", Value::Int(v)) => m.num_key_value_heads = v,
        ("head_dim", Value::Int(v)) => m.head_dim = v,
        ("max_position_embeddings", Value::Int(v)) => m.max_position_embeddings = v,
        ("rope_theta", Value::Float(v)) => m.rope_theta = v,
        ("rms_norm_eps", Value::Float(v)) => m.rms_norm_eps = v,
        ("tie_word_embeddings", Value::Bool(v)) => m.tie_word_embeddings = v,
        _ => unreachable!("{key} = {value:?}"),
    }
}

fn agree(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Takes the text stream's shapes from the checkpoint's `config.json` (see the
/// module's documentation). `leaf` is the experiment file named on the command
/// line. A checkpoint that is not a Hugging Face directory is an error naming
/// `model.checkpoint`.
pub(super) fn take_shapes(e: &mut Experiment, figment: &Figment, leaf: &Path) -> Result<(), ConfigError> {
    let Some(dir) = e.model.checkpoint.as_ref().filter(|_| e.model.init != Init::Scratch) else {
        return Ok(());
    };
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Err(ConfigError::key(
            "model.checkpoint",
            figment.find_metadata("model.checkpoint").map(describe_source).unwrap_or_else(|| leaf.display().to_string()),
            format!(
                "{} is not a Hugging Face Qwen3 directory (no config.json); init = \"{}\" loads config.json, \
                 *.safetensors and tokenizer.json from it. Point model.checkpoint at one, or set \
                 model.init = \"random\" without a checkpoint for the declared shapes with random weights",
                dir.display(),
                format!("{:?}", e.model.init).to_lowercase()
            ),
        ));
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|err| ConfigError::Syntax {
        path: path.clone(),
        message: err.to_string(),
    })?;
    let leaf = leaf.canonicalize().unwrap_or_else(|_| leaf.to_path_buf());
    for (key, found) in shapes(&json) {
        let full = format!("model.{key}");
        let source = figment.find_metadata(&full);
        // Set here (the file given, `WMX_…`, `--set`) rather than inherited or defaulted.
        let explicit = source.is_some_and(|m| match m.source.as_ref() {
            Some(figment::Source::File(file)) => file.canonicalize().is_ok_and(|f| f == leaf),
            _ => true,
        });
        let declared = get(&e.model, key);
        if explicit && !agree(declared, found) {
            return Err(ConfigError::key(
                &full,
                source.map(describe_source).unwrap_or_default(),
                format!(
                    "is {declared}, but {} says {found}; the text stream's shapes come from the checkpoint: remove the key or set it to {found}",
                    path.display()
                ),
            ));
        }
        set(&mut e.model, key, found);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_config_styles_give_the_same_shapes() {
        let old = serde_json::json!({"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 5e5});
        let new = serde_json::json!({"hidden_size": 64, "num_attention_heads": 4,
            "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}});
        assert_eq!(shapes(&old), shapes(&new));
        let head_dim = shapes(&old).into_iter().find(|(k, _)| *k == "head_dim").unwrap().1;
        assert_eq!(head_dim, Value::Int(16), "head_dim defaults to hidden_size / heads");
    }
}
