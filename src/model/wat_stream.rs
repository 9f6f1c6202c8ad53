//! The WAT stream: a small causal decoder over the closed WAT vocabulary, split into
//! one segment per fusion layer. Segment k self-attends over WAT tokens, cross-attends
//! to the text states of fusion layer ℓk at question positions, and ends in exit k,
//! whose head yields its own candidate program.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Bool, Tensor, backend::Backend};

use super::fusion::CrossAttention;
use super::qwen3::{Attention, KvSlot, Mlp, RmsNorm, Rotary, causal_mask};

/// Shape of the WAT stream.
#[derive(Debug, Clone, PartialEq)]
pub struct WatStreamConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layers_per_segment: usize,
    /// One segment per fusion layer.
    pub segments: usize,
    /// Width of the text states the segments read.
    pub text_hidden_size: usize,
    pub max_tokens: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
}

impl WatStreamConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> WatStream<B> {
        let d = self.hidden_size;
        let hd = d / self.num_attention_heads;
        let linear = |i, o| super::linear::<B>(i, o, device);
        let norm = |n| RmsNorm::ones(n, self.rms_norm_eps, device);
        let block = || WatBlock {
            self_norm: norm(d),
            self_attn: Attention {
                q_proj: linear(d, d),
                k_proj: linear(d, d),
                v_proj: linear(d, d),
                o_proj: linear(d, d),
                q_norm: norm(hd),
                k_norm: norm(hd),
                num_heads: self.num_attention_heads,
                num_kv_heads: self.num_attention_heads,
                head_dim: hd,
            },
            cross_norm: norm(d),
            cross_attn: CrossAttention::new(
                d,
                self.text_hidden_size,
                self.num_attention_heads,
                device,
            ),
            mlp_norm: norm(d),
            mlp: Mlp {
                gate_proj: linear(d, self.intermediate_size),
                up_proj: linear(d, self.intermediate_size),
                down_proj: linear(self.intermediate_size, d),
            },
        };
        let segments = (0..self.segments)
            .map(|_| Segment {
                blocks: (0..self.layers_per_segment).map(|_| block()).collect(),
                exit_norm: norm(d),
                exit_head: linear(d, self.vocab_size),
            })
            .collect();
        let embed = super::random(
            [self.vocab_size, d],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            device,
        );
        WatStream {
            embed_tokens: Embedding {
                weight: Param::from_tensor(embed),
            },
            segments,
            rotary: Rotary::new(hd, self.max_tokens + 1, self.rope_theta, device),
        }
    }
}

/// Self-attention, cross-attention to the text, feed-forward; pre-norm residuals.
#[derive(Module, Debug)]
pub struct WatBlock<B: Backend> {
    pub self_norm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub cross_norm: RmsNorm<B>,
    pub cross_attn: CrossAttention<B>,
    pub mlp_norm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

/// The blocks between two exits, and the exit head.
#[derive(Module, Debug)]
pub struct Segment<B: Backend> {
    pub blocks: Vec<WatBlock<B>>,
    pub exit_norm: RmsNorm<B>,
    pub exit_head: Linear<B>,
}

#[derive(Module, Debug)]
pub struct WatStream<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub segments: Vec<Segment<B>>,
    pub rotary: Rotary<B>,
}

impl<B: Backend> Segment<B> {
    /// Runs the segment's blocks.
    /// # Shapes
    /// - w: `[batch, wat_len, d_wat]`, text: `[batch, text_len, d_text]`
    /// - text_ignore: `[batch, text_len]`, true outside the question
    pub fn forward(
        &self,
        w: Tensor<B, 3>,
        text: &Tensor<B, 3>,
        text_ignore: &Tensor<B, 2, Bool>,
        rotary: &Rotary<B>,
    ) -> Tensor<B, 3> {
        let causal = causal_mask::<B>(w.dims()[1], 0, &w.device());
        self.blocks_forward(w, text, text_ignore, rotary, 0, Some(&causal), None)
    }

    /// Runs the segment's blocks over new tokens at positions `start..`, reading and
    /// extending one self-attention cache per block (incremental decoding).
    pub fn forward_cached(
        &self,
        w: Tensor<B, 3>,
        text: &Tensor<B, 3>,
        text_ignore: &Tensor<B, 2, Bool>,
        rotary: &Rotary<B>,
        start: usize,
        caches: &mut [KvSlot<B>],
    ) -> Tensor<B, 3> {
        let len = w.dims()[1];
        let causal = (len > 1).then(|| causal_mask::<B>(len, start, &w.device()));
        self.blocks_forward(w, text, text_ignore, rotary, start, causal.as_ref(), Some(caches))
    }

    /// Self-attention, cross-attention to the text, feed-forward, per block.
    #[allow(clippy::too_many_arguments)]
    fn blocks_forward(
        &self,
        mut w: Tensor<B, 3>,
        text: &Tensor<B, 3>,
        text_ignore: &Tensor<B, 2, Bool>,
        rotary: &Rotary<B>,
        start: usize,
        mask: Option<&super::qwen3::Causal<B>>,
        mut caches: Option<&mut [KvSlot<B>]>,
    ) -> Tensor<B, 3> {
        for (i, block) in self.blocks.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            w = w.clone()
                + block
                    .self_attn
                    .forward(block.self_norm.forward(w), rotary, start, mask, cache);
            w = w.clone()
                + block
                    .cross_attn
                    .forward(block.cross_norm.forward(w), text.clone(), text_ignore);
            w = w.clone() + block.mlp.forward(block.mlp_norm.forward(w));
        }
        w
    }

    /// Exit logits.
    /// # Shapes
    /// - w: `[batch, wat_len, d_wat]` → `[batch, wat_len, wat_vocab]`
    pub fn exit(&self, w: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::ops::linear(&self.exit_head, self.exit_norm.forward(w))
    }
}
