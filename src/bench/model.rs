//! `wmx bench model`: forward and backward time per batch of an experiment's model.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::config::Experiment;
use crate::model::qwen3::Qwen3Config;
use crate::model::wat_stream::WatStreamConfig;
use crate::model::world::{Batch, WorldModel, masked_cross_entropy};

use super::Row;

/// Shapes of the model benchmark's batch.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    pub batch: usize,
    pub seq: usize,
    pub wat_len: usize,
    pub repeats: usize,
}

/// Forward + backward time per batch of an experiment's model: the text stream
/// alone (what the PyTorch reference runs) and the whole WorldModel.
pub struct ModelBench<'a> {
    pub experiment: &'a Experiment,
    pub shape: StepShape,
}

impl crate::backend::BackendTask for ModelBench<'_> {
    type Output = Vec<Row>;

    fn run<B: Backend>(self, device: B::Device) -> Vec<Row> {
        type A<B> = Autodiff<B>;
        let e = self.experiment;
        let StepShape {
            batch,
            seq,
            wat_len,
            repeats,
        } = self.shape;
        crate::backend::seed::<A<B>>(&device, 0);
        let text_config = Qwen3Config::from_experiment(&e.model);
        let wat_vocab = crate::tokenize::wat::WatVocab::new().len();
        let wat = WatStreamConfig {
            vocab_size: wat_vocab,
            hidden_size: e.wat.hidden_size,
            num_attention_heads: e.wat.num_attention_heads,
            intermediate_size: e.wat.intermediate_size,
            layers_per_segment: e.wat.layers_per_segment,
            segments: e.fusion.layers.len(),
            text_hidden_size: e.model.hidden_size,
            max_tokens: e.wat.max_tokens.max(wat_len),
            rms_norm_eps: e.model.rms_norm_eps,
            rope_theta: 10_000.0,
        };
        let model = WorldModel::<A<B>>::new(
            text_config.init(&device),
            &wat,
            e.fusion.layers.clone(),
            e.fusion.num_attention_heads,
            0.1,
            &device,
        );
        let ids = |n: usize, vocab: usize| {
            let data: Vec<i32> = (0..batch * n)
                .map(|i| ((i * 7919 + 13) % vocab) as i32)
                .collect();
            Tensor::<A<B>, 2, Int>::from_data(TensorData::new(data, [batch, n]), &device)
        };
        // Like a training row: the question is the first half; the loss starts
        // at its last position (whose target is the first answer token).
        let question: Vec<bool> = (0..batch * seq).map(|i| i % seq < seq / 2).collect();
        let first_loss = (seq / 2).saturating_sub(1);
        let loss: Vec<f32> = (0..batch * seq).map(|i| if i % seq >= first_loss { 1.0 } else { 0.0 }).collect();
        let b = Batch {
            text_ids: ids(seq, text_config.vocab_size),
            text_targets: ids(seq, text_config.vocab_size),
            text_loss_mask: Tensor::from_data(TensorData::new(loss, [batch, seq]), &device),
            copy_actions: Tensor::zeros([batch, seq], &device),
            question: Tensor::<A<B>, 2, Bool>::from_data(
                TensorData::new(question.clone(), [batch, seq]),
                &device,
            ),
            wat_reads: Tensor::<A<B>, 2, Bool>::from_data(
                TensorData::new(question, [batch, seq]),
                &device,
            ),
            answers_from: first_loss,
            reads_before: seq / 2,
            wat_ids: ids(wat_len, wat_vocab),
            wat_targets: ids(wat_len, wat_vocab),
            wat_loss_mask: Tensor::ones([batch, wat_len], &device),
        };
        // The steps run on a rayon pool, as training's do (`backend::on_pool`).
        let time = |f: &(dyn Fn() + Sync)| {
            crate::backend::on_pool::<B, _>(|| {
                f();
                f();
                let mut times: Vec<f64> = (0..repeats)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                times[times.len() / 2]
            })
        };
        let text_only = time(&|| {
            let logits = model.text.forward(b.text_ids.clone(), None);
            let loss =
                masked_cross_entropy(logits, b.text_targets.clone(), b.text_loss_mask.clone());
            let grads = loss.backward();
            std::hint::black_box(grads);
        });
        let whole = time(&|| {
            let (text, wat) = model.losses(&b);
            let loss = wat.into_iter().fold(text, |acc, l| acc + l);
            let grads = loss.backward();
            std::hint::black_box(grads);
        });
        let tokens = (batch * seq) as f64;
        let shape =
            format!("batch {batch} × {seq} text tokens, {wat_len} WAT tokens; median of {repeats}");
        vec![
            Row {
                name: format!(
                    "text stream fwd+bwd ({} layers × {})",
                    e.model.num_hidden_layers, e.model.hidden_size
                ),
                value: format!("{text_only:.1} ms"),
                note: format!("{:.0} tokens/s; {shape}", tokens / text_only * 1e3),
            },
            Row {
                name: format!("WorldModel fwd+bwd ({} exits)", e.fusion.layers.len()),
                value: format!("{whole:.1} ms"),
                note: format!("{:.0} text tokens/s; {shape}", tokens / whole * 1e3),
            },
        ]
    }
}

