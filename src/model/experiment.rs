//! The WorldModel an experiment declares: its text stream built from scratch, loaded
//! from a Hugging Face checkpoint or given the checkpoint's shapes, and a WAT stream
//! fused at the declared layers.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

use super::qwen3::{Qwen3Config, Qwen3ForCausalLM};
use super::wat_stream::WatStreamConfig;
use super::world::WorldModel;
use crate::config::{AnswerValue, Experiment, Init};
use crate::tokenize::wat::WatVocab;

impl<B: Backend> WorldModel<B> {
    /// The WorldModel an experiment declares.
    pub fn from_experiment(
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
        let model = WorldModel::new(
            text,
            &wat,
            e.fusion.layers.clone(),
            e.fusion.num_attention_heads,
            e.fusion.gate_init,
            device,
        );
        Ok(match e.model.answer {
            AnswerValue::Copy => model.with_copy_head(device),
            AnswerValue::Tokens => model,
        })
    }
}
