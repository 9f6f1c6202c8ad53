//! Parity with transformers on the committed Qwen3 fixtures (made by
//! `scripts/qwen3_fixtures.py`): the logits of `input_ids` and the greedy tokens
//! of a chat prompt, against what transformers computed. The tests run it on the
//! CPU; `wmx bench parity --backend cuda` runs it on a GPU, in f32 or bf16.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use safetensors::SafeTensors;

use super::ModelError;
use super::qwen3::Qwen3ForCausalLM;
use crate::tokenize::TextTokenizer;

/// What transformers computed for a fixture (`expected.safetensors`).
pub struct Expected {
    pub input_ids: Vec<i64>,
    pub input_shape: Vec<usize>,
    pub logits: Vec<f32>,
    /// transformers' logits with the model in bf16 (absent from older fixtures).
    pub logits_bf16: Option<Vec<f32>>,
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
}

/// The chat prompt whose greedy continuation the fixtures record.
pub const PROMPT: &str = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n";

impl Expected {
    pub fn read(dir: &Path) -> Result<Expected, ModelError> {
        let path = dir.join("expected.safetensors");
        let bad = |message: String| ModelError::Format { path: path.clone(), message };
        let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let raw = |name: &str| st.tensor(name).map_err(|e| bad(format!("{name}: {e}")));
        let floats = |name: &str| -> Result<Vec<f32>, ModelError> {
            Ok(raw(name)?
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect())
        };
        let ints = |name: &str| -> Result<Vec<i64>, ModelError> {
            Ok(raw(name)?
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect())
        };
        Ok(Expected {
            input_ids: ints("input_ids")?,
            input_shape: raw("input_ids")?.shape().to_vec(),
            logits: floats("logits")?,
            logits_bf16: floats("logits_bf16").ok(),
            prompt_ids: ints("prompt_ids")?.into_iter().map(|v| v as u32).collect(),
            generated_ids: ints("generated_ids")?.into_iter().map(|v| v as u32).collect(),
        })
    }
}

/// The model's logits for `ids` (`[batch, seq]` flattened), as f32.
pub fn logits<B: Backend>(model: &Qwen3ForCausalLM<B>, ids: &[i64], shape: &[usize], device: &B::Device) -> Vec<f32> {
    let data = TensorData::new(ids.iter().map(|&v| v as i32).collect::<Vec<_>>(), [shape[0], shape[1]]);
    model
        .forward(Tensor::<B, 2, Int>::from_data(data, device), None)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits")
}

/// How far `got` is from `want`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Distance {
    /// max |got − want|.
    pub max_abs: f32,
    /// max |got − want| / max |want|: the error on the logits' own scale.
    pub max_scaled: f32,
    /// max over elements of |got − want| − (1e-4·|want| + 1e-5): ≤ 0 is f32 parity.
    pub f32_excess: f32,
}

pub fn distance(got: &[f32], want: &[f32]) -> Distance {
    assert_eq!(got.len(), want.len(), "logit counts differ");
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs())).max(1e-12);
    let mut d = Distance { max_abs: 0.0, max_scaled: 0.0, f32_excess: f32::MIN };
    for (g, w) in got.iter().zip(want) {
        let err = (g - w).abs();
        d.max_abs = d.max_abs.max(err);
        d.f32_excess = d.f32_excess.max(err - (1e-4 * w.abs() + 1e-5));
    }
    d.max_scaled = d.max_abs / scale;
    d
}

/// One fixture checked on one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parity {
    pub fixture: String,
    /// Against transformers in f32.
    pub logits: Distance,
    /// Against transformers in bf16, when the fixture has its logits.
    pub logits_bf16: Option<Distance>,
    /// Greedy tokens equal transformers' (f32 only: bf16 rounding may flip a near tie).
    pub greedy_equal: bool,
}

pub fn check<B: Backend>(dir: &Path, device: &B::Device) -> anyhow::Result<Parity> {
    let (model, config) = Qwen3ForCausalLM::<B>::from_hf_dir(dir, device)?;
    let e = Expected::read(dir)?;
    let got = logits(&model, &e.input_ids, &e.input_shape, device);
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let prompt = tokenizer.encode(PROMPT)?;
    let generated = model.generate(&prompt, e.generated_ids.len(), &config.eos_ids(), device);
    Ok(Parity {
        fixture: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        logits: distance(&got, &e.logits),
        logits_bf16: e.logits_bf16.as_ref().map(|l| distance(&got, l)),
        greedy_equal: prompt == e.prompt_ids && generated == e.generated_ids,
    })
}

/// One step of the decoder computed on two backends from the same input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    /// `embed`, `layer.N.<part>`, `norm`, `head`.
    pub name: String,
    /// The traced backend against the reference, on the reference's scale.
    pub distance: Distance,
    /// Share of elements whose values differ at all.
    pub differing: f64,
}

/// The decoder of a fixture run step by step on `B` and on the reference backend
/// `R` in their current dtypes: each step takes the reference's own input (moved
/// over), so a step's distance is what that step alone adds, not what it inherits.
/// Where a backend rounds differently from another shows up as the first steps
/// that differ. The last step (`logits`) compares the two whole forward passes.
pub fn trace<R: Backend, B: Backend>(dir: &Path, reference: &R::Device, device: &B::Device) -> anyhow::Result<Vec<Step>> {
    use super::qwen3::causal_mask;
    fn moved<R: Backend, B: Backend, const D: usize>(t: &Tensor<R, D>, device: &B::Device) -> Tensor<B, D> {
        Tensor::from_data(t.to_data(), device)
    }
    fn step<R: Backend, B: Backend, const D: usize>(name: String, want: &Tensor<R, D>, got: Tensor<B, D>) -> Step {
        let floats = |d: TensorData| d.convert::<f32>().to_vec::<f32>().expect("f32 values");
        let (want, got) = (floats(want.to_data()), floats(got.into_data()));
        let differing = want.iter().zip(&got).filter(|(w, g)| w != g).count() as f64 / want.len().max(1) as f64;
        Step { name, distance: distance(&got, &want), differing }
    }
    let (rm, _) = Qwen3ForCausalLM::<R>::from_hf_dir(dir, reference)?;
    let (bm, _) = Qwen3ForCausalLM::<B>::from_hf_dir(dir, device)?;
    let e = Expected::read(dir)?;
    let ids = TensorData::new(e.input_ids.iter().map(|&v| v as i32).collect::<Vec<_>>(), [e.input_shape[0], e.input_shape[1]]);
    let ids_r = Tensor::<R, 2, Int>::from_data(ids.clone(), reference);
    let ids_b = Tensor::<B, 2, Int>::from_data(ids, device);
    let mut steps = Vec::new();
    let mut x = rm.embed(ids_r.clone());
    steps.push(step("embed".into(), &x, bm.embed(ids_b.clone())));
    let seq = e.input_shape[1];
    let (mask_r, mask_b) = (causal_mask::<R>(seq, 0, reference), causal_mask::<B>(seq, 0, device));
    for (i, (lr, lb)) in rm.model.layers.iter().zip(&bm.model.layers).enumerate() {
        let name = |part: &str| format!("layer.{i}.{part}");
        let normed = lr.input_layernorm.forward(x.clone());
        steps.push(step(name("input_layernorm"), &normed, lb.input_layernorm.forward(moved(&x, device))));
        let (q, k, v) = lr.self_attn.qkv(normed.clone(), &rm.rotary, 0);
        let (qb, kb, vb) = lb.self_attn.qkv(moved(&normed, device), &bm.rotary, 0);
        steps.push(step(name("q (proj, norm, rotary)"), &q, qb));
        steps.push(step(name("k (proj, norm, rotary)"), &k, kb));
        steps.push(step(name("v (proj)"), &v, vb));
        let (qb, kb, vb) = (moved(&q, device), moved(&k, device), moved(&v, device));
        let heads = lr.self_attn.attend(q, k, v, Some(&mask_r));
        steps.push(step(name("attention"), &heads, lb.self_attn.attend(qb, kb, vb, Some(&mask_b))));
        let o = crate::ops::linear(&lr.self_attn.o_proj, heads.clone());
        steps.push(step(name("o_proj"), &o, crate::ops::linear(&lb.self_attn.o_proj, moved(&heads, device))));
        let h = x.clone() + o.clone();
        steps.push(step(name("residual"), &h, moved::<R, B, 3>(&x, device) + moved(&o, device)));
        let normed = lr.post_attention_layernorm.forward(h.clone());
        steps.push(step(name("post_attention_layernorm"), &normed, lb.post_attention_layernorm.forward(moved(&h, device))));
        let gated = lr.mlp.gated(normed.clone());
        steps.push(step(name("mlp silu(gate)·up"), &gated, lb.mlp.gated(moved(&normed, device))));
        let m = crate::ops::linear(&lr.mlp.down_proj, gated.clone());
        steps.push(step(name("mlp down_proj"), &m, crate::ops::linear(&lb.mlp.down_proj, moved(&gated, device))));
        x = h + m;
    }
    let normed = rm.model.norm.forward(x.clone());
    steps.push(step("norm".into(), &normed, bm.model.norm.forward(moved(&x, device))));
    steps.push(step("head".into(), &rm.head(x.clone()), bm.head(moved(&x, device))));
    steps.push(step("logits (whole forward)".into(), &rm.forward(ids_r, None), bm.forward(ids_b, None)));
    Ok(steps)
}
