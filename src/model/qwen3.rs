//! The text stream: a Qwen3 decoder that matches transformers' `Qwen3ForCausalLM`
//! (RMSNorm, per-head q/k RMSNorm, rotate-half RoPE, GQA, SwiGLU, tied or untied head).
//! Module paths are Hugging Face's (`model.layers.N.self_attn.q_proj`), so weights load by name.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use super::ModelError;

/// Hugging Face `config.json` of a Qwen3 model (the fields wmx uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_position")]
    pub max_position_embeddings: usize,
    /// Top-level in older files; newer ones put it in `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_max_position() -> usize {
    40_960
}

fn default_eps() -> f64 {
    1e-6
}

impl Qwen3Config {
    /// The shape an experiment declares for a text stream built from scratch.
    pub fn from_experiment(m: &crate::config::ModelConfig) -> Qwen3Config {
        Qwen3Config {
            vocab_size: m.vocab_size,
            hidden_size: m.hidden_size,
            intermediate_size: m.intermediate_size,
            num_hidden_layers: m.num_hidden_layers,
            num_attention_heads: m.num_attention_heads,
            num_key_value_heads: m.num_key_value_heads,
            head_dim: Some(m.head_dim),
            max_position_embeddings: m.max_position_embeddings,
            rope_theta: Some(m.rope_theta),
            rope_parameters: None,
            rms_norm_eps: m.rms_norm_eps,
            tie_word_embeddings: m.tie_word_embeddings,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// Reads `config.json` of a Hugging Face directory.
    pub fn from_dir(dir: &Path) -> Result<Qwen3Config, ModelError> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(ModelError::Missing {
                what: path.display().to_string(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let config: Qwen3Config =
            serde_json::from_str(&text).map_err(|e| ModelError::format(&path, e.to_string()))?;
        if config.attention_bias {
            return Err(ModelError::format(
                &path,
                "attention_bias = true is not a Qwen3 checkpoint".into(),
            ));
        }
        if !config
            .num_attention_heads
            .is_multiple_of(config.num_key_value_heads)
        {
            return Err(ModelError::format(
                &path,
                "num_key_value_heads must divide num_attention_heads".into(),
            ));
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(1_000_000.0)
    }

    /// End-of-sequence token ids (`eos_token_id` may be a number or a list).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| v as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The config as Hugging Face writes it, for export.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "architectures".into(),
                serde_json::json!(["Qwen3ForCausalLM"]),
            );
            map.insert("model_type".into(), "qwen3".into());
            map.insert("hidden_act".into(), "silu".into());
            map.insert("head_dim".into(), self.head_dim().into());
            map.insert("rope_theta".into(), self.theta().into());
            map.insert(
                "rope_parameters".into(),
                serde_json::json!({"rope_theta": self.theta(), "rope_type": "default"}),
            );
            map.insert("dtype".into(), "float32".into());
        }
        value
    }

    /// Builds a randomly initialised model of this shape.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Qwen3ForCausalLM<B> {
        let hd = self.head_dim();
        let linear = |i, o| super::linear::<B>(i, o, device);
        let norm = |d| RmsNorm::ones(d, self.rms_norm_eps, device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| DecoderLayer {
                input_layernorm: norm(self.hidden_size),
                self_attn: Attention {
                    q_proj: linear(self.hidden_size, self.num_attention_heads * hd),
                    k_proj: linear(self.hidden_size, self.num_key_value_heads * hd),
                    v_proj: linear(self.hidden_size, self.num_key_value_heads * hd),
                    o_proj: linear(self.num_attention_heads * hd, self.hidden_size),
                    q_norm: norm(hd),
                    k_norm: norm(hd),
                    num_heads: self.num_attention_heads,
                    num_kv_heads: self.num_key_value_heads,
                    head_dim: hd,
                },
                post_attention_layernorm: norm(self.hidden_size),
                mlp: Mlp {
                    gate_proj: linear(self.hidden_size, self.intermediate_size),
                    up_proj: linear(self.hidden_size, self.intermediate_size),
                    down_proj: linear(self.intermediate_size, self.hidden_size),
                },
            })
            .collect();
        let embed = super::random(
            [self.vocab_size, self.hidden_size],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            device,
        );
        Qwen3ForCausalLM {
            model: Qwen3Model {
                embed_tokens: Embedding {
                    weight: Param::from_tensor(embed),
                },
                layers,
                norm: norm(self.hidden_size),
            },
            lm_head: (!self.tie_word_embeddings).then(|| linear(self.hidden_size, self.vocab_size)),
            rotary: Rotary::new(hd, self.max_position_embeddings, self.theta(), device),
        }
    }
}

/// Root-mean-square norm with a learned scale, named `weight` as in Hugging Face.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn ones(d: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([d], device)),
            eps,
        }
    }

    /// Normalises in f32 whatever the tensor's dtype (as transformers does), then
    /// scales by the weight in the input's dtype.
    /// # Shapes
    /// - x: `[..., d]` → `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // Training on CUDA: the same computation as one autodiff operation.
        crate::ops::rms_norm::forward(x, self.weight.val(), self.eps)
    }
}


/// Rotate-half rotary embeddings (Hugging Face's layout, not burn's interleaved one).
#[derive(Module, Debug)]
pub struct Rotary<B: Backend> {
    /// `[max_positions, head_dim]`
    pub cos: Tensor<B, 2>,
    /// `[max_positions, head_dim]`
    pub sin: Tensor<B, 2>,
    /// `[head_dim, head_dim]`: `x · rotate` is `cat(-x2, x1)`, without strided copies.
    pub rotate: Tensor<B, 2>,
}

impl<B: Backend> Rotary<B> {
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &B::Device) -> Rotary<B> {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for pos in 0..max_positions {
            for i in 0..head_dim {
                // Same frequency for i and i + half: emb = cat(freqs, freqs).
                let inv_freq = 1.0 / theta.powf((2 * (i % half)) as f64 / head_dim as f64);
                let angle = pos as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let mut rotate = vec![0f32; head_dim * head_dim];
        for j in 0..head_dim {
            if j < half {
                rotate[(j + half) * head_dim + j] = -1.0;
            } else {
                rotate[(j - half) * head_dim + j] = 1.0;
            }
        }
        Rotary {
            cos: Tensor::from_data(TensorData::new(cos, [max_positions, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_positions, head_dim]), device),
            rotate: Tensor::from_data(TensorData::new(rotate, [head_dim, head_dim]), device),
        }
    }

    /// Rotates queries or keys while they are still sequence-major (contiguous).
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]`, positions `start..start + seq`
    pub fn apply(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        // Training on CUDA: the same computation as one autodiff operation.
        crate::ops::rotary::apply(x, self.cos.clone(), self.sin.clone(), self.rotate.clone(), start)
    }
}

/// One attention layer's cached keys and values, `[batch, kv_heads, past, head_dim]` each.
pub type KvSlot<B> = Option<(Tensor<B, 4>, Tensor<B, 4>)>;

/// Cached keys and values of every layer, for generation.
#[derive(Debug, Clone, Default)]
pub struct KvCache<B: Backend> {
    layers: Vec<KvSlot<B>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> KvCache<B> {
        KvCache {
            layers: vec![None; layers],
        }
    }

    /// Tokens already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub q_norm: RmsNorm<B>,
    pub k_norm: RmsNorm<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    /// - mask: `[seq, past + seq]`, true where attention is forbidden
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        start: usize,
        mask: Option<&Causal<B>>,
        cache: Option<&mut KvSlot<B>>,
    ) -> Tensor<B, 3> {
        let (q, mut k, mut v) = self.qkv(x, rotary, start);
        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        crate::ops::linear(&self.o_proj, self.attend(q, k, v, mask))
    }

    /// Normed, rotated queries and keys, and values, heads first.
    /// # Shapes
    /// - x: `[batch, seq, hidden]`, positions `start..start + seq`
    /// - → q `[batch, heads, seq, head_dim]`; k, v `[batch, kv_heads, seq, head_dim]`
    pub fn qkv(&self, x: Tensor<B, 3>, rotary: &Rotary<B>, start: usize) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let q = self.queries(x.clone(), rotary, start);
        let (k, v) = self.keys_values(x, rotary, start);
        (q, k, v)
    }

    /// Normed, rotated queries, heads first: `[batch, seq, hidden]` at positions
    /// `start..start + seq` → `[batch, heads, seq, head_dim]`.
    pub fn queries(&self, x: Tensor<B, 3>, rotary: &Rotary<B>, start: usize) -> Tensor<B, 4> {
        let [b, s, _] = x.dims();
        let q = crate::ops::linear(&self.q_proj, x).reshape([b, s, self.num_heads, self.head_dim]);
        crate::ops::heads::swap(rotary.apply(self.q_norm.forward(q), start))
    }

    /// Normed, rotated keys, and values, heads first: `[batch, seq, hidden]` at
    /// positions `start..start + seq` → two `[batch, kv_heads, seq, head_dim]`.
    pub fn keys_values(&self, x: Tensor<B, 3>, rotary: &Rotary<B>, start: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, s, _] = x.dims();
        let (nkv, hd) = (self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor<B, 3>| t.reshape([b, s, nkv, hd]);
        let swap = crate::ops::heads::swap;
        let k = self.k_norm.forward(heads(crate::ops::linear(&self.k_proj, x.clone())));
        let v = swap(heads(crate::ops::linear(&self.v_proj, x)));
        (swap(rotary.apply(k, start)), v)
    }

    /// Scaled dot-product attention (softmax in f32), heads merged again.
    /// # Shapes
    /// - q: `[batch, heads, seq, head_dim]`; k, v: `[batch, kv_heads, past + seq, head_dim]`
    /// - mask: `[seq, past + seq]`, true where attention is forbidden
    /// - → `[batch, seq, heads · head_dim]`
    pub fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<&Causal<B>>) -> Tensor<B, 3> {
        let [b, nh, s, hd] = q.dims();
        let nkv = k.dims()[1];
        let g = nh / nkv;
        // Query heads kv·g .. kv·g + g share key/value head kv (transformers'
        // `repeat_kv`): as g·s rows of one product per kv head they need no copies
        // of k and v, nor the sums over those copies in the backward pass.
        let q = q.reshape([b, nkv, g * s, hd]);
        let scores = crate::ops::matmul(q, k.swap_dims(2, 3));
        let p = crate::ops::softmax::apply(scores, (hd as f64).sqrt(), mask.map(|m| (m.mask(), m.past())));
        let out = crate::ops::matmul(p, v);
        crate::ops::heads::swap(out.reshape([b, nh, s, hd])).reshape([b, s, nh * hd])
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::ops::linear(&self.down_proj, self.gated(x))
    }

    /// `silu(gate_proj(x)) · up_proj(x)`, what `down_proj` takes.
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, intermediate]`
    pub fn gated(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        use crate::ops::linear;
        // Training on CUDA: `silu(gate) · up` as one autodiff operation.
        crate::ops::swiglu::apply(linear(&self.gate_proj, x.clone()), linear(&self.up_proj, x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        start: usize,
        mask: Option<&Causal<B>>,
        cache: Option<&mut KvSlot<B>>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rotary, start, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    /// The layer's output at positions `from..` alone, from its input at every
    /// position (causal, no cache): keys and values of all positions, queries and
    /// all that follows them for the last `seq - from` only. What a last layer
    /// needs where the positions before `from` carry no loss.
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq - from, hidden]`
    pub fn forward_from(&self, x: Tensor<B, 3>, rotary: &Rotary<B>, from: usize) -> Tensor<B, 3> {
        let [_, s, _] = x.dims();
        let device = x.device();
        if from == 0 {
            return self.forward(x, rotary, 0, Some(&causal_mask::<B>(s, 0, &device)), None);
        }
        let normed = self.input_layernorm.forward(x.clone());
        let (k, v) = self.self_attn.keys_values(normed.clone(), rotary, 0);
        let q = self.self_attn.queries(normed.narrow(1, from, s - from), rotary, from);
        let mask = causal_mask::<B>(s - from, from, &device);
        let attended = self.self_attn.attend(q, k, v, Some(&mask));
        let h = x.narrow(1, from, s - from) + crate::ops::linear(&self.self_attn.o_proj, attended);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

#[derive(Module, Debug)]
pub struct Qwen3Model<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
}

/// The decoder with its language-model head.
#[derive(Module, Debug)]
pub struct Qwen3ForCausalLM<B: Backend> {
    pub model: Qwen3Model<B>,
    /// `None` when the head shares the embedding matrix.
    pub lm_head: Option<Linear<B>>,
    pub rotary: Rotary<B>,
}

/// A causal self-attention mask: query i, at position `past + i`, sees keys
/// `0..=past + i`. Built only by [`causal_mask`], so fused attention kernels can
/// compute it from `past` instead of reading it.
#[derive(Debug, Clone)]
pub struct Causal<B: Backend> {
    mask: Tensor<B, 2, Bool>,
    past: usize,
}

impl<B: Backend> Causal<B> {
    /// `[seq, past + seq]`, true above the causal diagonal (where attention is forbidden).
    pub fn mask(&self) -> &Tensor<B, 2, Bool> {
        &self.mask
    }

    /// Keys before the first query.
    pub fn past(&self) -> usize {
        self.past
    }
}

/// The causal mask of `seq` queries after `past` cached keys.
pub fn causal_mask<B: Backend>(seq: usize, past: usize, device: &B::Device) -> Causal<B> {
    // tril_mask is true outside the lower triangle: key j > query i + past.
    let mask = Tensor::<B, 2, Bool>::tril_mask([seq, past + seq], past as i64, device);
    Causal { mask, past }
}

impl<B: Backend> Qwen3ForCausalLM<B> {
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.model.embed_tokens.forward(ids)
    }

    /// Final norm and head.
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]` → logits `[batch, seq, vocab]`
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits(self.model.norm.forward(hidden))
    }

    /// The head alone, on states the final norm has already normalised.
    /// # Shapes
    /// - normed: `[batch, seq, hidden]` → logits `[batch, seq, vocab]`
    pub fn logits(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => crate::ops::linear(head, h),
            None => {
                crate::ops::rows_product(h, self.model.embed_tokens.weight.val().transpose())
            }
        }
    }

    /// Each token's loss and its target's logit, `[batch, seq, 2]`, from states
    /// the final norm has normalised: the head's product and the loss as one
    /// operation where [`crate::ops::head_nll`] fuses them, so the logits are
    /// never held.
    /// # Shapes
    /// - normed: `[batch, seq, hidden]`, targets: `[batch, seq]` → `[batch, seq, 2]`
    pub fn nll_and_picked(&self, normed: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        use crate::ops::head_nll;
        match &self.lm_head {
            Some(head) if head.bias.is_none() => head_nll::nll_and_picked(normed, head.weight.val(), targets),
            Some(_) => head_nll::from_logits(self.logits(normed), targets),
            None => head_nll::nll_and_picked(normed, self.model.embed_tokens.weight.val().transpose(), targets),
        }
    }

    /// Whether a loss over `normed`'s positions goes through
    /// [`Self::nll_and_picked`]: where [`crate::ops::head_nll::pays`] for their
    /// logits' count.
    pub fn fuses_loss(&self, normed: &Tensor<B, 3>) -> bool {
        let [b, s, _] = normed.dims();
        crate::ops::head_nll::pays::<B>(b * s, self.model.embed_tokens.weight.dims()[0])
    }

    /// Mean next-token loss over the positions where `mask` is 1, teacher-forced;
    /// a scalar `[1]` ([`Self::masked_loss_of`] the final normed states).
    /// # Shapes
    /// - ids, targets, mask: `[batch, seq]`
    pub fn masked_loss(&self, ids: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
        self.masked_loss_of(self.model.norm.forward(self.states(ids, None)), targets, mask)
    }

    /// Mean loss of `targets` over the positions where `mask` is 1, from states
    /// the final norm has normalised; a scalar `[1]`. Through
    /// [`Self::nll_and_picked`] where the head's product and the loss fuse
    /// ([`Self::fuses_loss`]), through the logits otherwise.
    /// # Shapes
    /// - normed: `[batch, seq, hidden]`; targets, mask: `[batch, seq]`
    pub fn masked_loss_of(&self, normed: Tensor<B, 3>, targets: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
        use crate::ops::cross_entropy::{masked_mean, nll};
        if self.fuses_loss(&normed) {
            let out = self.nll_and_picked(normed, targets);
            return masked_mean(out.narrow(2, 0, 1).squeeze_dim::<2>(2), mask);
        }
        masked_mean(nll(self.logits(normed), targets), mask)
    }

    /// Logits for every position, continuing from `cache` when given.
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, cache: Option<&mut KvCache<B>>) -> Tensor<B, 3> {
        self.head(self.states(ids, cache))
    }

    /// The last layer's states, before the final norm, continuing from `cache`
    /// when given.
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn states(
        &self,
        ids: Tensor<B, 2, Int>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [_, s] = ids.dims();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let device = ids.device();
        let mask = (s > 1).then(|| causal_mask::<B>(s, past, &device));
        let mut x = self.embed(ids);
        for (i, layer) in self.model.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &self.rotary, past, mask.as_ref(), slot);
        }
        x
    }

    /// Greedy decoding: up to `max_new` tokens after `prompt`, stopping after an id in `stop`.
    pub fn generate(
        &self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
        device: &B::Device,
    ) -> Vec<u32> {
        let mut cache = KvCache::new(self.model.layers.len());
        let mut out = Vec::new();
        let mut input: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
        for _ in 0..max_new {
            let len = input.len();
            let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [1, len]), device);
            let logits = self.forward(ids, Some(&mut cache));
            let [_, s, vocab] = logits.dims();
            let last = logits.narrow(1, s - 1, 1).reshape([vocab]);
            let next = last
                .argmax(0)
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(0) as u32;
            out.push(next);
            if stop.contains(&next) {
                break;
            }
            input = vec![next as i32];
        }
        out
    }
}

#[cfg(test)]
mod rotary_tests {
    use super::Rotary;
    use crate::backend::{Cpu, CpuTrain};
    use crate::ops::rotary::{composed, tracked};
    use burn::tensor::{Distribution, Tensor, Tolerance};

    /// The operation, wired into burn's autodiff on the CPU, gives the output and
    /// gradient of burn's autodiff of [`composed`] with the model's tables, away from position 0.
    #[test]
    fn the_tracked_rotation_is_burns_autodiff_of_the_composed_one() {
        let device = Default::default();
        let rotary = Rotary::<CpuTrain>::new(8, 16, 10_000.0, &device);
        // The second shape is large enough for the CPU kernel's threads.
        for shape in [[2, 5, 3, 8], [64, 9, 8, 8]] {
        let x = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<CpuTrain, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let tx = Tensor::<CpuTrain, 4>::from_data(x.to_data(), &device).require_grad();
            let y = match fused {
                true => tracked::<Cpu>(tx.clone(), rotary.cos.clone().inner(), rotary.sin.clone().inner(), 7),
                false => composed(tx.clone(), rotary.cos.clone(), rotary.sin.clone(), rotary.rotate.clone(), 7),
            };
            let grads = ((y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).mean()).backward();
            (y.inner(), tx.grad(&grads).unwrap())
        };
        let (want_y, want_x) = run(false);
        let (got_y, got_x) = run(true);
        got_y.into_data().assert_approx_eq::<f32>(&want_y.into_data(), Tolerance::absolute(1e-6));
        got_x.into_data().assert_approx_eq::<f32>(&want_x.into_data(), Tolerance::absolute(1e-6));
        }
    }
}
