//! `wmx export`: a run's checkpoint out of wmx, into one directory.
//!
//! - The text stream as a Hugging Face Qwen3 directory, loadable by transformers
//!   (`AutoModelForCausalLM.from_pretrained(DIR)`): `config.json`,
//!   `model.safetensors` (f32) and `tokenizer.json`.
//! - The whole WorldModel (text stream, WAT stream, fusion blocks) as
//!   `worldmodel.safetensors` (f32, tensors named and laid out as wmx holds them:
//!   linear weights are `[in, out]`), described by `worldmodel.json`: the
//!   experiment's model, WAT and fusion settings, the WAT vocabulary, where the
//!   weights came from, and each tensor's shape.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::OpenedRun;
use crate::backend::Cpu;
use crate::model::qwen3::Qwen3Config;
use crate::model::weights::write_safetensors;
use crate::model::world::named_tensors;
use crate::tokenize::wat::WatVocab;

/// What [`export`] wrote.
pub struct Exported {
    pub dir: PathBuf,
    pub step: usize,
    pub tensors: usize,
    pub parameters: usize,
}

/// `worldmodel.json`.
#[derive(Serialize)]
struct Description<'a> {
    format: &'static str,
    run: String,
    step: usize,
    model: &'a crate::config::ModelConfig,
    wat: &'a crate::config::WatConfig,
    fusion: &'a crate::config::FusionConfig,
    /// Text layers (0-based) before which each WAT segment is fused.
    fusion_layers: &'a [usize],
    /// The WAT stream's vocabulary, by id.
    wat_vocabulary: Vec<&'a str>,
    /// The text stream's files in this directory.
    text_stream: [&'static str; 3],
    /// `worldmodel.safetensors`: name → shape.
    tensors: Vec<(String, Vec<usize>)>,
    layout: &'static str,
}

/// Exports the checkpoint `opened` chose to `out` (created; files already there
/// with the same names are replaced, others are left alone).
pub fn export(opened: &OpenedRun, out: &Path) -> Result<Exported> {
    let device = Default::default();
    let model = opened.model::<Cpu>(&device)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // The text stream, the Hugging Face way.
    let e = &opened.experiment;
    let mut config = Qwen3Config::from_experiment(&e.model);
    config.vocab_size = model.text.model.embed_tokens.weight.dims()[0];
    config.tie_word_embeddings = model.text.lm_head.is_none();
    let eos = ["<|im_end|>", "<|endoftext|>"].iter().find_map(|t| opened.tokenizer.token_id(t));
    config.eos_token_id = eos.map(serde_json::Value::from);
    let tokenizer = out.join("tokenizer.json");
    opened.tokenizer.save(&tokenizer)?;
    crate::model::hf::export_hf(&model.text, &config, None, out)?;
    // The whole WorldModel.
    let tensors = named_tensors(&model)?;
    let parameters = tensors.values().map(|(_, v)| v.len()).sum();
    write_safetensors(&out.join("worldmodel.safetensors"), &tensors, false)?;
    let wat = WatVocab::new();
    let description = Description {
        format: "wmx-worldmodel-1",
        run: opened.dir.label(),
        step: opened.step,
        model: &e.model,
        wat: &e.wat,
        fusion: &e.fusion,
        fusion_layers: &model.fusion_layers,
        wat_vocabulary: (0..wat.len() as u32).filter_map(|id| wat.token(id)).collect(),
        text_stream: ["config.json", "model.safetensors", "tokenizer.json"],
        tensors: tensors.iter().map(|(name, (shape, _))| (name.clone(), shape.clone())).collect(),
        layout: "f32; burn's layout: linear weights are [in, out] (the text stream's files use Hugging Face's [out, in])",
    };
    let json = serde_json::to_string_pretty(&description).context("cannot describe the WorldModel")?;
    crate::fs::write_atomic(&out.join("worldmodel.json"), json.as_bytes())
        .with_context(|| format!("cannot write {}", out.join("worldmodel.json").display()))?;
    Ok(Exported { dir: out.to_path_buf(), step: opened.step, tensors: tensors.len(), parameters })
}
