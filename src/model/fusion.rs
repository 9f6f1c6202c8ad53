//! Flamingo-style fusion: cross-attention between the streams, and the gated block
//! that lets answer positions of the text stream read a WAT segment —
//! `x += tanh(a)·xattn(norm(x), wat)`, then `x += tanh(b)·ffw(norm(x))`, a and b from 0.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Bool, Tensor, backend::Backend};

use super::qwen3::{Mlp, RmsNorm};

/// Multi-head attention from one sequence (queries) to another (keys and values),
/// each with its own width.
#[derive(Module, Debug)]
pub struct CrossAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> CrossAttention<B> {
    pub fn new(
        d_query: usize,
        d_context: usize,
        num_heads: usize,
        device: &B::Device,
    ) -> CrossAttention<B> {
        let head_dim = d_query / num_heads;
        let linear = |i, o| super::linear::<B>(i, o, device);
        CrossAttention {
            q_proj: linear(d_query, num_heads * head_dim),
            k_proj: linear(d_context, num_heads * head_dim),
            v_proj: linear(d_context, num_heads * head_dim),
            o_proj: linear(num_heads * head_dim, d_query),
            num_heads,
            head_dim,
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, d_query]`, context: `[batch, ctx, d_context]`
    /// - ignore: `[batch, ctx]`, true for context positions no query may read
    /// - output: `[batch, seq, d_query]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Tensor<B, 3>,
        ignore: &Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let t = context.dims()[1];
        let (h, hd) = (self.num_heads, self.head_dim);
        let swap = crate::ops::heads::swap;
        let q = swap(crate::ops::linear(&self.q_proj, x).reshape([b, s, h, hd]));
        let k = swap(crate::ops::linear(&self.k_proj, context.clone()).reshape([b, t, h, hd]));
        let v = swap(crate::ops::linear(&self.v_proj, context).reshape([b, t, h, hd]));
        let scores = crate::ops::matmul(q, k.swap_dims(2, 3));
        let p = crate::ops::softmax::apply_padded(scores, (hd as f64).sqrt(), ignore);
        let out = crate::ops::matmul(p, v);
        crate::ops::linear(&self.o_proj, swap(out).reshape([b, s, h * hd]))
    }
}

/// `x · tanh(scale)`: a gate that starts closed when `scale` starts at 0.
#[derive(Module, Debug)]
pub struct TanhGate<B: Backend> {
    pub scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> TanhGate<B> {
    pub fn new(init: f64, device: &B::Device) -> TanhGate<B> {
        TanhGate {
            scale: Param::from_tensor(Tensor::full([1], init, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x * self.scale.val().tanh().unsqueeze::<3>()
    }
}

/// The gated cross-attention block inserted before a fusion layer of the text stream.
#[derive(Module, Debug)]
pub struct GatedCrossAttention<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub attn: CrossAttention<B>,
    pub attn_gate: TanhGate<B>,
    pub ffw_norm: RmsNorm<B>,
    pub ffw: Mlp<B>,
    pub ffw_gate: TanhGate<B>,
}

impl<B: Backend> GatedCrossAttention<B> {
    pub fn new(
        d_text: usize,
        d_wat: usize,
        num_heads: usize,
        intermediate: usize,
        gate_init: f64,
        eps: f64,
        device: &B::Device,
    ) -> GatedCrossAttention<B> {
        let linear = |i, o| super::linear::<B>(i, o, device);
        GatedCrossAttention {
            attn_norm: RmsNorm::ones(d_text, eps, device),
            attn: CrossAttention::new(d_text, d_wat, num_heads, device),
            attn_gate: TanhGate::new(gate_init, device),
            ffw_norm: RmsNorm::ones(d_text, eps, device),
            ffw: Mlp {
                gate_proj: linear(d_text, intermediate),
                up_proj: linear(d_text, intermediate),
                down_proj: linear(intermediate, d_text),
            },
            ffw_gate: TanhGate::new(gate_init, device),
        }
    }

    /// Updates answer positions only; question positions pass through unchanged.
    /// Every row's positions before `from` are question positions (0 when that is
    /// not known), so the block runs over the positions from `from` on alone: in a
    /// training row most positions are the question's, and each position's update
    /// reads only itself and the program.
    /// # Shapes
    /// - x: `[batch, seq, d_text]`, wat: `[batch, wat_len, d_wat]`
    /// - wat_ignore: `[batch, wat_len]` (padding), answer: `[batch, seq]` (1 at answer positions)
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        wat: Tensor<B, 3>,
        wat_ignore: &Tensor<B, 2, Bool>,
        answer: &Tensor<B, 2>,
        from: usize,
    ) -> Tensor<B, 3> {
        let s = x.dims()[1];
        match from.min(s) {
            0 => self.update(x, wat, wat_ignore, answer),
            from if from == s => x,
            from => {
                let question = x.clone().narrow(1, 0, from);
                let rest = self.update(x.narrow(1, from, s - from), wat, wat_ignore, &answer.clone().narrow(1, from, s - from));
                Tensor::cat(vec![question, rest], 1)
            }
        }
    }

    /// [`Self::forward`] over every position of `x`.
    fn update(
        &self,
        x: Tensor<B, 3>,
        wat: Tensor<B, 3>,
        wat_ignore: &Tensor<B, 2, Bool>,
        answer: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let answer = answer.clone().unsqueeze_dim::<3>(2);
        let attended = self
            .attn
            .forward(self.attn_norm.forward(x.clone()), wat, wat_ignore);
        let x = x + self.attn_gate.forward(attended) * answer.clone();
        let fed = self.ffw.forward(self.ffw_norm.forward(x.clone()));
        x + self.ffw_gate.forward(fed) * answer
    }
}
