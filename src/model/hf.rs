//! A Qwen3 text stream in and out of a Hugging Face directory: `config.json` and
//! (sharded) safetensors in, the same written back for transformers to load.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::ModelError;
use super::qwen3::{Attention, DecoderLayer, Mlp, Qwen3Config, Qwen3ForCausalLM, Qwen3Model, RmsNorm, Rotary};
use super::weights::{Export, Weights, export_tensor};

impl<B: Backend> Qwen3ForCausalLM<B> {
    /// Loads a Hugging Face Qwen3 directory: `config.json` and its safetensors.
    pub fn from_hf_dir(
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Qwen3ForCausalLM<B>, Qwen3Config), ModelError> {
        let config = Qwen3Config::from_dir(dir)?;
        let mut w = Weights::open(dir)?;
        let (h, hd) = (config.hidden_size, config.head_dim());
        let (nh, nkv, inter) = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.intermediate_size,
        );
        // Hugging Face stores linear weights as [out, in]; burn multiplies by [in, out].
        let linear =
            |w: &mut Weights, name: &str, o: usize, i: usize| -> Result<Linear<B>, ModelError> {
                let t: Tensor<B, 2> = w.take(&format!("{name}.weight"), [o, i], device)?;
                Ok(Linear {
                    weight: Param::from_tensor(t.transpose()),
                    bias: None,
                })
            };
        let norm = |w: &mut Weights, name: &str, d: usize| -> Result<RmsNorm<B>, ModelError> {
            Ok(RmsNorm {
                weight: Param::from_tensor(w.take(&format!("{name}.weight"), [d], device)?),
                eps: config.rms_norm_eps,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                input_layernorm: norm(&mut w, &format!("{p}.input_layernorm"), h)?,
                self_attn: Attention {
                    q_proj: linear(&mut w, &format!("{p}.self_attn.q_proj"), nh * hd, h)?,
                    k_proj: linear(&mut w, &format!("{p}.self_attn.k_proj"), nkv * hd, h)?,
                    v_proj: linear(&mut w, &format!("{p}.self_attn.v_proj"), nkv * hd, h)?,
                    o_proj: linear(&mut w, &format!("{p}.self_attn.o_proj"), h, nh * hd)?,
                    q_norm: norm(&mut w, &format!("{p}.self_attn.q_norm"), hd)?,
                    k_norm: norm(&mut w, &format!("{p}.self_attn.k_norm"), hd)?,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                },
                post_attention_layernorm: norm(
                    &mut w,
                    &format!("{p}.post_attention_layernorm"),
                    h,
                )?,
                mlp: Mlp {
                    gate_proj: linear(&mut w, &format!("{p}.mlp.gate_proj"), inter, h)?,
                    up_proj: linear(&mut w, &format!("{p}.mlp.up_proj"), inter, h)?,
                    down_proj: linear(&mut w, &format!("{p}.mlp.down_proj"), h, inter)?,
                },
            });
        }
        let embed = w.take("model.embed_tokens.weight", [config.vocab_size, h], device)?;
        let final_norm = norm(&mut w, "model.norm", h)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear(&mut w, "lm_head", config.vocab_size, h)?)
        };
        // Tied checkpoints sometimes carry a copy of the head; old ones a RoPE buffer.
        let tied = config.tie_word_embeddings;
        let unused = w.untaken(|name| {
            name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
        });
        if !unused.is_empty() {
            return Err(ModelError::Unexpected {
                dir: dir.to_path_buf(),
                names: unused,
            });
        }
        let model = Qwen3ForCausalLM {
            model: Qwen3Model {
                embed_tokens: Embedding {
                    weight: Param::from_tensor(embed),
                },
                layers,
                norm: final_norm,
            },
            lm_head,
            rotary: Rotary::new(hd, config.max_position_embeddings, config.theta(), device),
        };
        Ok((model, config))
    }

    /// The weights under Hugging Face names and layouts, for export.
    pub fn hf_tensors(&self) -> Result<Export, ModelError> {
        let mut out = Export::new();
        let put_linear =
            |out: &mut Export, name: String, l: &Linear<B>| -> Result<(), ModelError> {
                out.insert(
                    format!("{name}.weight"),
                    export_tensor(l.weight.val().transpose())?,
                );
                Ok(())
            };
        out.insert(
            "model.embed_tokens.weight".into(),
            export_tensor(self.model.embed_tokens.weight.val())?,
        );
        out.insert(
            "model.norm.weight".into(),
            export_tensor(self.model.norm.weight.val())?,
        );
        if let Some(head) = &self.lm_head {
            put_linear(&mut out, "lm_head".into(), head)?;
        }
        for (i, layer) in self.model.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.self_attn;
            for (name, l) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("o_proj", &a.o_proj),
            ] {
                put_linear(&mut out, format!("{p}.self_attn.{name}"), l)?;
            }
            for (name, l) in [
                ("gate_proj", &layer.mlp.gate_proj),
                ("up_proj", &layer.mlp.up_proj),
                ("down_proj", &layer.mlp.down_proj),
            ] {
                put_linear(&mut out, format!("{p}.mlp.{name}"), l)?;
            }
            for (name, n) in [
                ("input_layernorm", &layer.input_layernorm),
                ("post_attention_layernorm", &layer.post_attention_layernorm),
                ("self_attn.q_norm", &a.q_norm),
                ("self_attn.k_norm", &a.k_norm),
            ] {
                out.insert(format!("{p}.{name}.weight"), export_tensor(n.weight.val())?);
            }
        }
        Ok(out)
    }
}

/// Writes `model` as a Hugging Face directory transformers loads: `config.json`,
/// `model.safetensors` (f32) and, when given, a copy of `tokenizer.json`.
pub fn export_hf<B: Backend>(
    model: &Qwen3ForCausalLM<B>,
    config: &Qwen3Config,
    tokenizer: Option<&Path>,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let config_json = serde_json::to_string_pretty(&config.to_hf_json())
        .map_err(|e| ModelError::Tensor(e.to_string()))?;
    crate::fs::write_atomic(&dir.join("config.json"), config_json.as_bytes())
        .map_err(|e| ModelError::io(dir, e))?;
    super::weights::write_safetensors(&dir.join("model.safetensors"), &model.hf_tensors()?, false)?;
    if let Some(tokenizer) = tokenizer {
        std::fs::copy(tokenizer, dir.join("tokenizer.json"))
            .map_err(|e| ModelError::io(tokenizer, e))?;
    }
    Ok(())
}

