//! The WorldModel: the Qwen3 text stream, the segmented WAT stream, and gated fusion
//! at the declared text layers. Training runs both streams teacher-forced; inference
//! decodes one candidate program per exit, then the answer with fusion on.

use std::path::Path;

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use super::fusion::GatedCrossAttention;
use super::qwen3::{KvSlot, Qwen3ForCausalLM, causal_mask};
use super::wat_stream::{WatStream, WatStreamConfig};
use crate::ops::cross_entropy::{masked_mean, nll};
use crate::tokenize::wat::{BOS, EOS, PAD};

#[derive(Module, Debug)]
pub struct WorldModel<B: Backend> {
    pub text: Qwen3ForCausalLM<B>,
    pub wat: WatStream<B>,
    /// One gated cross-attention block per fusion layer.
    pub fusion: Vec<GatedCrossAttention<B>>,
    /// Text layers ℓk (0-based) before which segment k is fused.
    pub fusion_layers: Vec<usize>,
    /// The copy head (`model.answer = "copy"`): from the text stream's final
    /// normed state, one logit per [`CopyAction`], beside the text head's.
    pub copy: Option<burn::nn::Linear<B>>,
}

/// What the copy head can write into an answer: the computed value, copied verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyAction {
    /// The value as a number, at the experiment's rounding.
    Value,
    /// The value as yes or no (yes for anything but 0).
    Truth,
}

impl CopyAction {
    pub const ALL: [CopyAction; 2] = [CopyAction::Value, CopyAction::Truth];

    /// The action's index among the copy head's logits; a batch's `copy_actions`
    /// hold it plus one (0 is a text token).
    pub fn index(self) -> usize {
        match self {
            CopyAction::Value => 0,
            CopyAction::Truth => 1,
        }
    }
}

/// A teacher-forced batch. Text rows are `question ++ answer`; WAT rows are
/// `<bos> program` with targets `program <eos>`.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// `[batch, seq]`
    pub text_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`: next-token targets.
    pub text_targets: Tensor<B, 2, Int>,
    /// `[batch, seq]`: 1 where the target is an answer token to predict.
    pub text_loss_mask: Tensor<B, 2>,
    /// `[batch, seq]`: where the next thing in the answer is the copied value, 1 +
    /// the [`CopyAction`]'s index; 0 where it is the text target (and everywhere
    /// without a copy head).
    pub copy_actions: Tensor<B, 2, Int>,
    /// `[batch, seq]`: true at question positions (fusion acts after them).
    pub question: Tensor<B, 2, Bool>,
    /// `[batch, seq]`: true where the WAT stream may read — the question, less
    /// the arguments' own tokens when those are masked (`wat.read_arguments`).
    pub wat_reads: Tensor<B, 2, Bool>,
    /// Every row's positions before this one are question positions, which the
    /// fusion blocks leave as they are, and carry no loss: the fusion blocks and
    /// the text stream's last layer run over the positions from here on only, for
    /// the losses. 0 is always right.
    ///
    /// Training bounds its batches only on the CPU (`collate`), where the
    /// work saved is the time saved. On a GPU a small model's step is bound by its
    /// launches, which the narrowed views add to, and each new bound is a new
    /// shape for its kernels: base.toml's steps were slower bounded on an H100
    /// (bench/RESULTS.md).
    pub answers_from: usize,
    /// No row lets the WAT stream read a position at or after this one: its
    /// cross-attention reads the text before it only. `seq` is always right.
    pub reads_before: usize,
    /// `[batch, wat_len]`
    pub wat_ids: Tensor<B, 2, Int>,
    /// `[batch, wat_len]`
    pub wat_targets: Tensor<B, 2, Int>,
    /// `[batch, wat_len]`: 1 where the target is a program token or `<eos>`.
    pub wat_loss_mask: Tensor<B, 2>,
}

/// `t`'s positions (second dimension) from `from` on; `t` itself at 0.
fn positions_from<B: Backend, K: burn::tensor::BasicOps<B>>(t: Tensor<B, 2, K>, from: usize) -> Tensor<B, 2, K> {
    match from {
        0 => t,
        from => {
            let s = t.dims()[1];
            t.narrow(1, from, s - from)
        }
    }
}

/// What a teacher-forced forward pass gives.
#[derive(Debug, Clone)]
pub struct Output<B: Backend> {
    /// `[batch, seq, vocab]`
    pub text_logits: Tensor<B, 3>,
    /// One `[batch, wat_len, wat_vocab]` per exit.
    pub wat_logits: Vec<Tensor<B, 3>>,
    /// `[batch, seq, actions]`: the copy head's logits, when the model has one.
    pub copy_logits: Option<Tensor<B, 3>>,
}

/// Mean cross-entropy of `logits` against `targets` where `mask` is 1; a scalar `[1]`.
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    masked_mean(nll(logits, targets), mask)
}

/// [`masked_cross_entropy`] where each position chooses among the text vocabulary
/// and the copy head's actions: `-log p(choice)` under one softmax over the text
/// logits `[batch, seq, vocab]` and the copy logits `[batch, seq, actions]`, the
/// choice being the text target where `actions` is 0 and copy action `actions - 1`
/// elsewhere. The text part's log-sum-exp comes from the per-token loss (`nll +
/// logit[target]`), so the full log-probabilities are never formed.
pub fn copy_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    copy: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    actions: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let picked = logits.clone().gather(2, targets.clone().unsqueeze_dim::<3>(2));
    let lse_text = nll(logits, targets).unsqueeze_dim::<3>(2) + picked.clone();
    copy_choice(lse_text, picked, copy, actions, mask)
}

/// [`copy_cross_entropy`] from each token's text loss and target logit
/// `[batch, seq, 2]` ([`crate::ops::head_nll`]) rather than the text logits.
pub fn copy_cross_entropy_of<B: Backend>(
    nll_and_picked: Tensor<B, 3>,
    copy: Tensor<B, 3>,
    actions: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let picked = nll_and_picked.clone().narrow(2, 1, 1);
    let lse_text = nll_and_picked.narrow(2, 0, 1) + picked.clone();
    copy_choice(lse_text, picked, copy, actions, mask)
}

/// The copy loss from the text vocabulary's log-sum-exp and target logit
/// (`[batch, seq, 1]` each) and the copy logits.
fn copy_choice<B: Backend>(
    lse_text: Tensor<B, 3>,
    picked: Tensor<B, 3>,
    copy: Tensor<B, 3>,
    actions: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let all = Tensor::cat(vec![lse_text, copy.clone()], 2);
    let max = all.clone().max_dim(2).detach();
    let lse = (all - max.clone()).exp().sum_dim(2).log() + max;
    let chosen = Tensor::cat(vec![picked, copy], 2).gather(2, actions.unsqueeze_dim::<3>(2));
    masked_mean((lse - chosen).squeeze_dim::<2>(2), mask)
}

impl<B: Backend> WorldModel<B> {
    pub fn new(
        text: Qwen3ForCausalLM<B>,
        wat: &WatStreamConfig,
        fusion_layers: Vec<usize>,
        fusion_heads: usize,
        gate_init: f64,
        device: &B::Device,
    ) -> WorldModel<B> {
        let d_text = text.model.embed_tokens.weight.dims()[1];
        let eps = text.model.norm.eps;
        let fusion = fusion_layers
            .iter()
            .map(|_| {
                GatedCrossAttention::new(
                    d_text,
                    wat.hidden_size,
                    fusion_heads,
                    2 * d_text,
                    gate_init,
                    eps,
                    device,
                )
            })
            .collect();
        WorldModel {
            text,
            wat: wat.init(device),
            fusion,
            fusion_layers,
            copy: None,
        }
    }

    /// The model with a copy head (`model.answer = "copy"`), newly initialised.
    pub fn with_copy_head(mut self, device: &B::Device) -> WorldModel<B> {
        let d_text = self.text.model.embed_tokens.weight.dims()[1];
        self.copy = Some(super::linear(d_text, CopyAction::ALL.len(), device));
        self
    }

    /// Saves every parameter (both streams and the fusion blocks) to `path` (`.mpk`).
    pub fn save(&self, path: &Path) -> Result<(), super::ModelError> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        self.clone()
            .save_file(path.to_path_buf(), &recorder)
            .map_err(|e| super::ModelError::io(path, e))
    }

    /// Loads parameters saved by [`WorldModel::save`] into a model of the same shape.
    /// A file of another shape (a hand-edited `config.toml`, say) is an error naming
    /// the first tensor that differs, never a model that fails later.
    pub fn load(self, path: &Path, device: &B::Device) -> Result<WorldModel<B>, super::ModelError> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let expected = param_shapes(&self);
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.load_file(path.to_path_buf(), &recorder, device)
        }))
        .map_err(|_| super::ModelError::format(path, "its tensors do not fit the model the config declares".into()))?
        .map_err(|e| super::ModelError::io(path, e))?;
        let found = param_shapes(&loaded);
        if found.len() != expected.len() {
            return Err(super::ModelError::format(
                path,
                format!("it holds {} tensors; the model the config declares has {}", found.len(), expected.len()),
            ));
        }
        for ((name, shape), (_, f)) in expected.iter().zip(&found) {
            if f != shape {
                return Err(super::ModelError::format(
                    path,
                    format!("tensor `{name}` has shape {f:?}; the config declares {shape:?}"),
                ));
            }
        }
        Ok(loaded)
    }

    /// Teacher-forced forward pass of both streams.
    pub fn forward(&self, batch: &Batch<B>) -> Output<B> {
        let (h, wat_logits) = self.states(batch, 0);
        Output {
            copy_logits: self.copy.as_ref().map(|c| crate::ops::linear(c, h.clone())),
            text_logits: self.text.logits(h),
            wat_logits,
        }
    }

    /// The text stream's final normed states at positions `from..` (`from` below
    /// the batch's length; its last layer runs its queries there alone) and the
    /// WAT logits of each exit, teacher-forced.
    fn states(&self, batch: &Batch<B>, from: usize) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let [_, s] = batch.text_ids.dims();
        let device = batch.text_ids.device();
        let causal = causal_mask::<B>(s, 0, &device);
        let text_ignore = batch.wat_reads.clone().bool_not();
        let answer = batch.question.clone().bool_not().float();
        let wat_ignore = batch
            .wat_ids
            .clone()
            .equal_elem(crate::tokenize::wat::PAD as i32);
        let mut x = self.text.embed(batch.text_ids.clone());
        let mut w = self.wat.embed_tokens.forward(batch.wat_ids.clone());
        let mut wat_logits = Vec::new();
        let mut segment = 0;
        // The WAT stream reads the text before `reads_before` only.
        let reads = batch.reads_before.clamp(1, s);
        let text_ignore = if reads < s { text_ignore.narrow(1, 0, reads) } else { text_ignore };
        let last = self.text.model.layers.len().saturating_sub(1);
        for (i, layer) in self.text.model.layers.iter().enumerate() {
            while segment < self.fusion_layers.len() && self.fusion_layers[segment] == i {
                let seg = &self.wat.segments[segment];
                let read = if reads < s { x.clone().narrow(1, 0, reads) } else { x.clone() };
                w = seg.forward(w, &read, &text_ignore, &self.wat.rotary);
                wat_logits.push(seg.exit(w.clone()));
                x = self.fusion[segment].forward(x, w.clone(), &wat_ignore, &answer, batch.answers_from);
                segment += 1;
            }
            x = if i == last && from > 0 {
                layer.forward_from(x, &self.text.rotary, from)
            } else {
                layer.forward(x, &self.text.rotary, 0, Some(&causal), None)
            };
        }
        (self.text.model.norm.forward(x), wat_logits)
    }

    /// Text loss and one WAT loss per exit. Where [`crate::ops::head_nll`] fuses
    /// the text head's product with its loss (CUDA, large vocabularies:
    /// [`Qwen3ForCausalLM::fuses_loss`]), the text logits are never formed.
    pub fn losses(&self, batch: &Batch<B>) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
        // No loss is taken before `answers_from`: the text states from there on.
        let s = batch.text_ids.dims()[1];
        let from = batch.answers_from.min(s - 1);
        let (h, wat_logits) = self.states(batch, from);
        let copy = self.copy.as_ref().map(|c| crate::ops::linear(c, h.clone()));
        let (targets, actions, mask) = (
            positions_from(batch.text_targets.clone(), from),
            positions_from(batch.copy_actions.clone(), from),
            positions_from(batch.text_loss_mask.clone(), from),
        );
        let text = match copy {
            None => self.text.masked_loss_of(h, targets, mask),
            Some(copy) if self.text.fuses_loss(&h) => {
                copy_cross_entropy_of(self.text.nll_and_picked(h, targets), copy, actions, mask)
            }
            Some(copy) => copy_cross_entropy(self.text.logits(h), copy, targets, actions, mask),
        };
        let wat = wat_logits
            .into_iter()
            .map(|logits| {
                masked_cross_entropy(
                    logits,
                    batch.wat_targets.clone(),
                    batch.wat_loss_mask.clone(),
                )
            })
            .collect();
        (text, wat)
    }

    /// Text states entering each fusion layer, for a question of one row.
    /// # Shapes
    /// - question: `[1, q]` → one `[1, q, d_text]` per fusion layer
    pub fn question_states(&self, question: &[u32], device: &B::Device) -> Vec<Tensor<B, 3>> {
        self.prefill(&[question.to_vec()], &[Vec::new()], device).states
    }

    /// The text states of `prompts` (answered together) entering each fusion layer,
    /// and what the WAT stream may read of them: every position of a prompt but its
    /// `unread` ones. Prompts are right-padded to the longest: causal attention keeps
    /// a prompt's states from reading the padding after it, so each row's states
    /// are those it has alone.
    pub fn prefill(&self, prompts: &[Vec<u32>], unread: &[Vec<usize>], device: &B::Device) -> Prefill<B> {
        let q = prompts.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let causal = causal_mask::<B>(q, 0, device);
        let mut x = self.text.embed(padded_ids::<B>(prompts, q, 0, device));
        let mut states = Vec::new();
        let last = self.fusion_layers.last().copied().unwrap_or(0);
        for (i, layer) in self.text.model.layers.iter().enumerate().take(last + 1) {
            while states.len() < self.fusion_layers.len() && self.fusion_layers[states.len()] == i {
                states.push(x.clone());
            }
            x = layer.forward(x, &self.text.rotary, 0, Some(&causal), None);
        }
        let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
        Prefill { states, ignore: unread_mask::<B>(&lens, q, unread, device) }
    }

    /// Greedily decodes a candidate program from exit `exit`; returns its tokens
    /// (without `<bos>`/`<eos>`) and their mean log-probability (the exit's confidence).
    pub fn decode_candidate(
        &self,
        states: &[Tensor<B, 3>],
        exit: usize,
        max_tokens: usize,
        device: &B::Device,
    ) -> (Vec<u32>, f64) {
        let q = states[0].dims()[1];
        let prefill = Prefill { states: states.to_vec(), ignore: unread_mask::<B>(&[q], q, &[Vec::new()], device) };
        self.decode_programs(&prefill, exit, max_tokens, &mut [&mut Unguided])
            .remove(0)
    }

    /// Greedily decodes one candidate program per prefilled question from exit
    /// `exit`: per row its tokens (without `<bos>`/`<eos>`) and their mean
    /// log-probability (the exit's confidence). Each step takes the most probable
    /// token the row's guide allows (the confidence still uses the model's own
    /// log-probabilities, so a forced token lowers it), and feeds one token per row
    /// through segments `0..=exit` with their attention caches. Every program
    /// starts at `<bos>`, so the rows stay at the same position; a row that has
    /// finished leaves the batch (its caches and states are dropped), so the
    /// batch's work is that of its rows alone.
    pub fn decode_programs(
        &self,
        prefill: &Prefill<B>,
        exit: usize,
        max_tokens: usize,
        guides: &mut [&mut dyn TokenGuide],
    ) -> Vec<(Vec<u32>, f64)> {
        let n = guides.len();
        let device = &prefill.ignore.device();
        let mut caches: Vec<Vec<KvSlot<B>>> = self.wat.segments[..=exit]
            .iter()
            .map(|s| vec![None; s.blocks.len()])
            .collect();
        let mut programs = vec![vec![BOS]; n];
        let mut logprob = vec![0.0; n];
        // The rows still decoding, in the order of the batch's tensors.
        let mut active: Vec<usize> = (0..n).collect();
        let mut states: Vec<Tensor<B, 3>> = prefill.states[..=exit].to_vec();
        let mut ignore = prefill.ignore.clone();
        let started = std::time::Instant::now();
        for step in 0..max_tokens {
            if active.is_empty() {
                break;
            }
            let last: Vec<Vec<u32>> = active.iter().map(|&i| vec![programs[i][programs[i].len() - 1]]).collect();
            let mut w = self.wat.embed_tokens.forward(padded_ids::<B>(&last, 1, PAD, device));
            for (k, cache) in caches.iter_mut().enumerate() {
                w = self.wat.segments[k].forward_cached(w, &states[k], &ignore, &self.wat.rotary, step, cache);
            }
            let logits = self.wat.segments[exit].exit(w);
            let vocab = logits.dims()[2];
            let logp = rows_f32(log_softmax(logits.reshape([active.len(), vocab]), 1));
            let mut kept = Vec::with_capacity(active.len());
            for (j, &i) in active.iter().enumerate() {
                let (next, lp) = argmax_allowed(&logp[j * vocab..(j + 1) * vocab], &*guides[i]);
                logprob[i] += lp;
                if next != EOS {
                    guides[i].push(next);
                    programs[i].push(next);
                    kept.push(j);
                }
            }
            log::trace!(
                "exit {exit}: WAT step {step}, {} of {n} rows, {:.1} ms in",
                active.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
            if kept.len() < active.len() && !kept.is_empty() {
                let index = rows_index::<B>(&kept, device);
                let keep = |t: Tensor<B, 4>| t.select(0, index.clone());
                states = states.into_iter().map(|s| s.select(0, index.clone())).collect();
                ignore = ignore.select(0, index.clone());
                for slot in caches.iter_mut().flatten() {
                    *slot = slot.take().map(|(k, v)| (keep(k), keep(v)));
                }
            }
            active = kept.into_iter().map(|j| active[j]).collect();
        }
        programs
            .into_iter()
            .zip(logprob)
            .map(|(mut program, logprob)| {
                let len = program.len().max(1) as f64;
                program.remove(0);
                (program, logprob / len)
            })
            .collect()
    }

    /// Greedily decodes the answer after `prefix` (question plus injected computed
    /// span), with fusion reading each exit's candidate (whose WAT states read the
    /// question but `unread`). Stops after a `stop` id.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_answer(
        &self,
        prefix: &[u32],
        question_len: usize,
        candidates: &[Vec<u32>],
        states: &[Tensor<B, 3>],
        unread: &[usize],
        max_new: usize,
        stop: &[u32],
    ) -> Vec<u32> {
        let device = &states[0].device();
        let q = states[0].dims()[1];
        let prefill = Prefill { states: states.to_vec(), ignore: unread_mask::<B>(&[q], q, &[unread.to_vec()], device) };
        let programs: Vec<Vec<Vec<u32>>> = candidates.iter().map(|c| vec![c.clone()]).collect();
        self.decode_answers(&prefill, &[prefix.to_vec()], &[question_len], &programs, &[max_new], stop, None)
            .remove(0)
            .tokens
    }

    /// Greedily decodes each prefilled question's answer after its `prefixes` row
    /// (question plus injected computed span, the question being the row's first
    /// `question_lens` tokens), with fusion reading each exit's candidates
    /// (`programs[exit][row]`, without `<bos>`); at most `budgets[row]` tokens,
    /// stopping after a `stop` id. Rows are right-padded to the longest: each step
    /// runs the text stream over every row and reads the logits at each row's own
    /// last position.
    ///
    /// With a copy head and `restating`, a row with a computed value states it
    /// only by a [`CopyAction`], which writes the value's tokens verbatim: the row
    /// never writes a token that [`Restating::states_value`] marks, may not stop
    /// before it has copied, and copies once — forced when its budget has just room
    /// for the value left.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_answers(
        &self,
        prefill: &Prefill<B>,
        prefixes: &[Vec<u32>],
        question_lens: &[usize],
        programs: &[Vec<Vec<u32>>],
        budgets: &[usize],
        stop: &[u32],
        restating: Option<&Restating<'_>>,
    ) -> Vec<Decoded> {
        let n = prefixes.len();
        let device = &prefill.ignore.device();
        let wat: Vec<(Tensor<B, 3>, Tensor<B, 2, Bool>)> = programs
            .iter()
            .enumerate()
            .map(|(k, rows)| {
                let rows: Vec<Vec<u32>> = rows
                    .iter()
                    .map(|p| std::iter::once(BOS).chain(p.iter().copied()).collect())
                    .collect();
                let len = rows.iter().map(Vec::len).max().unwrap_or(1);
                let mut w = self.wat.embed_tokens.forward(padded_ids::<B>(&rows, len, PAD, device));
                for (j, seg) in self.wat.segments[..=k].iter().enumerate() {
                    w = seg.forward(w, &prefill.states[j], &prefill.ignore, &self.wat.rotary);
                }
                let ignore: Vec<bool> = rows
                    .iter()
                    .flat_map(|r| (0..len).map(move |i| i >= r.len()))
                    .collect();
                (w, Tensor::from_data(TensorData::new(ignore, [n, len]), device))
            })
            .collect();
        log::trace!("answers: the candidates' WAT states computed");
        let mut ids = prefixes.to_vec();
        let mut out: Vec<Decoded> = (0..n).map(|_| Decoded { tokens: Vec::new(), copied: None }).collect();
        // Per row, what each copy action writes, when the row restates through the
        // head, and what it has written so far.
        let writes: Vec<Option<&[Option<Vec<u32>>; 2]>> = (0..n)
            .map(|r| match (&self.copy, restating) {
                (Some(_), Some(restating)) => restating.rows[r].as_ref(),
                _ => None,
            })
            .collect();
        let mut written: Vec<Written> = (0..n).map(|_| Written::new()).collect();
        // The rows still decoding, in the order of `wat`'s rows; a finished row
        // leaves the batch.
        let keep_rows = |wat: Vec<(Tensor<B, 3>, Tensor<B, 2, Bool>)>, rows: &[usize]| {
            let index = rows_index::<B>(rows, device);
            wat.into_iter()
                .map(|(w, i)| (w.select(0, index.clone()), i.select(0, index.clone())))
                .collect::<Vec<_>>()
        };
        let mut active: Vec<usize> = (0..n).filter(|&r| budgets[r] > 0).collect();
        let mut wat = wat;
        if active.len() < n && !active.is_empty() {
            wat = keep_rows(wat, &active);
        }
        let started = std::time::Instant::now();
        while !active.is_empty() {
            let a = active.len();
            let rows: Vec<Vec<u32>> = active.iter().map(|&r| ids[r].clone()).collect();
            let s = rows.iter().map(Vec::len).max().unwrap_or(1);
            let causal = causal_mask::<B>(s, 0, device);
            let answer: Vec<f32> = active
                .iter()
                .flat_map(|&r| (0..s).map(move |i| if i >= question_lens[r] { 1.0 } else { 0.0 }))
                .collect();
            let answer = Tensor::<B, 2>::from_data(TensorData::new(answer, [a, s]), device);
            // Where it pays (see `Batch::answers_from`), the fusion blocks run from
            // the first answer position on, and the last layer from the first
            // position read out.
            let bounded = crate::backend::runs_on_host::<B>();
            let answers_from = if bounded { active.iter().map(|&r| question_lens[r]).min().unwrap_or(0) } else { 0 };
            let mut x = self.text.embed(padded_ids::<B>(&rows, s, 0, device));
            let mut segment = 0;
            // Only each row's last position is read out: the last layer runs its
            // queries from the first of those on.
            let from = if bounded { rows.iter().map(|r| r.len() - 1).min().unwrap_or(0) } else { 0 };
            let top = self.text.model.layers.len().saturating_sub(1);
            for (i, layer) in self.text.model.layers.iter().enumerate() {
                while segment < self.fusion_layers.len() && self.fusion_layers[segment] == i {
                    let (w, ignore) = &wat[segment];
                    x = self.fusion[segment].forward(x, w.clone(), ignore, &answer, answers_from);
                    segment += 1;
                }
                x = if i == top && from > 0 {
                    layer.forward_from(x, &self.text.rotary, from)
                } else {
                    layer.forward(x, &self.text.rotary, 0, Some(&causal), None)
                };
            }
            let (d, kept) = (x.dims()[2], s - from);
            let last: Vec<usize> = rows.iter().enumerate().map(|(j, r)| j * kept + r.len() - 1 - from).collect();
            let x = x.reshape([a * kept, d]).select(0, rows_index::<B>(&last, device)).reshape([a, 1, d]);
            let h = self.text.model.norm.forward(x);
            let copy = self.copy.as_ref().map(|c| rows_f32(crate::ops::linear(c, h.clone()).reshape([a, CopyAction::ALL.len()])));
            let logits = self.text.logits(h);
            let vocab = logits.dims()[2];
            let logits = rows_f32(logits.reshape([a, vocab]));
            let mut kept = Vec::with_capacity(a);
            for (j, &r) in active.iter().enumerate() {
                let text = &logits[j * vocab..(j + 1) * vocab];
                let step = match (writes[r], &copy, restating) {
                    (Some(writes), Some(copy), Some(restating)) => {
                        let copy = &copy[j * CopyAction::ALL.len()..(j + 1) * CopyAction::ALL.len()];
                        let remaining = budgets[r].saturating_sub(out[r].tokens.len());
                        restating_step(text, copy, writes, out[r].copied.is_some(), remaining, &written[r], restating.vocab, stop)
                    }
                    _ => Step::Token(argmax_allowed(text, &Unguided).0),
                };
                let appended = match (step, restating) {
                    (Step::Token(next), restating) => {
                        if let Some(piece) = restating.and_then(|v| v.vocab.pieces.get(next as usize)) {
                            written[r].push(piece);
                        }
                        vec![next]
                    }
                    (Step::Copy(action), Some(restating)) => {
                        let mut value = if written[r].boundary { Vec::new() } else { restating.vocab.space.clone() };
                        let at = out[r].tokens.len() + value.len();
                        let copy = writes[r].and_then(|w| w[action.index()].clone()).unwrap_or_default();
                        out[r].copied = Some(Copied { action, at, len: copy.len() });
                        written[r].copied(action);
                        value.extend(copy);
                        value
                    }
                    (Step::Copy(_), None) => unreachable!("a copy step needs restating rows"),
                };
                out[r].tokens.extend(&appended);
                let next = *appended.last().unwrap_or(&stop.first().copied().unwrap_or(0));
                if !stop.contains(&next) && out[r].tokens.len() < budgets[r] {
                    ids[r].extend(appended);
                    kept.push(j);
                }
            }
            log::trace!(
                "answers: a token decoded at length {s} for {a} of {n} rows, {:.1} ms in",
                started.elapsed().as_secs_f64() * 1e3
            );
            if kept.len() < a && !kept.is_empty() {
                wat = keep_rows(wat, &kept);
            }
            active = kept.into_iter().map(|j| active[j]).collect();
        }
        out
    }
}

/// One decoded answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The answer's tokens, the copied value's among them (and the stop id, when it
    /// stopped).
    pub tokens: Vec<u32>,
    /// Where the copy head wrote the value, when it did.
    pub copied: Option<Copied>,
}

/// The value a copy action wrote into an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub action: CopyAction,
    /// Index of its first token in [`Decoded::tokens`].
    pub at: usize,
    /// How many tokens it wrote.
    pub len: usize,
}

/// How answers restate their computed values through the copy head.
pub struct Restating<'a> {
    /// Per row: the tokens each [`CopyAction`] writes (in [`CopyAction::ALL`]'s
    /// order; `None` where the action cannot state the row's value, such as yes/no
    /// for 7); `None` for a row without a computed value, which decodes freely.
    pub rows: Vec<Option<[Option<Vec<u32>>; 2]>>,
    pub vocab: &'a ValueVocab,
}

/// What decoding needs to know of the text tokens to keep a restating answer from
/// stating a value itself.
pub struct ValueVocab {
    /// Each token id's text.
    pub pieces: Vec<String>,
    /// Per token id: whether it would state a value itself (it holds a digit, or
    /// is the word yes, no, true or false); ids without a piece are marked too.
    pub states_value: Vec<bool>,
    /// The tokens of one space, written before a copied value that would
    /// otherwise touch the word before it.
    pub space: Vec<u32>,
}

impl ValueVocab {
    /// From each token id's text and the tokens of a space.
    pub fn new(pieces: Vec<String>, space: Vec<u32>) -> ValueVocab {
        let states_value = pieces
            .iter()
            .map(|p| p.chars().any(|c| c.is_ascii_digit()) || truth_word(&p.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()))
            .collect();
        ValueVocab { pieces, states_value, space }
    }
}

/// Whether a lowercase word states a truth value (and so 1 or 0).
fn truth_word(word: &str) -> bool {
    matches!(word, "yes" | "no" | "true" | "false")
}

/// A restating row's answer so far, as far as stating values goes.
#[derive(Default)]
struct Written {
    /// The letters and digits the free tokens have written since the last
    /// non-alphanumeric character, lowercased: the word being written.
    word: String,
    /// Whether the text is empty or ends in whitespace (a number copied next
    /// starts a word of its own).
    boundary: bool,
    /// Whether the last thing written was a yes/no the copy head wrote (a letter
    /// next would turn it into another word).
    after_truth: bool,
}

impl Written {
    fn new() -> Written {
        Written { boundary: true, ..Written::default() }
    }

    /// The word being written after `piece`, and the word `piece` ends, if it ends one.
    fn after(&self, piece: &str) -> (String, Option<String>) {
        let lead: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
        let joined = format!("{}{}", self.word, lead.to_lowercase());
        if lead.len() == piece.len() {
            return (joined, None);
        }
        let tail: String = piece.chars().rev().take_while(|c| c.is_alphanumeric()).collect::<Vec<_>>().into_iter().rev().collect();
        (tail.to_lowercase(), Some(joined))
    }

    fn push(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        let (word, _) = self.after(piece);
        self.word = word;
        self.boundary = piece.ends_with(char::is_whitespace);
        self.after_truth = false;
    }

    fn copied(&mut self, action: CopyAction) {
        self.word.clear();
        self.boundary = false;
        self.after_truth = action == CopyAction::Truth;
    }
}

enum Step {
    Token(u32),
    Copy(CopyAction),
}

/// One decoding step of a row that restates its value through the copy head: the
/// best free token that states no value (and stops only after the copy), or the
/// best copy action while the row has not copied, forced when `remaining` has just
/// room for it.
#[allow(clippy::too_many_arguments)]
fn restating_step(
    text: &[f32],
    copy: &[f32],
    writes: &[Option<Vec<u32>>; 2],
    copied: bool,
    remaining: usize,
    written: &Written,
    vocab: &ValueVocab,
    stop: &[u32],
) -> Step {
    struct Free<'a> {
        vocab: &'a ValueVocab,
        written: &'a Written,
        stop: &'a [u32],
        copied: bool,
        last: bool,
    }
    impl TokenGuide for Free<'_> {
        fn allows(&self, id: u32) -> bool {
            if self.stop.contains(&id) {
                return self.copied && !truth_word(&self.written.word);
            }
            let Some(piece) = self.vocab.pieces.get(id as usize) else {
                return false;
            };
            if self.vocab.states_value.get(id as usize).copied().unwrap_or(true) {
                return false;
            }
            if self.written.after_truth && piece.starts_with(char::is_alphanumeric) {
                return false;
            }
            let (word, ended) = self.written.after(piece);
            !(ended.is_some_and(|w| truth_word(&w)) || self.last && truth_word(&word))
        }
        fn push(&mut self, _: u32) {}
    }
    let free = Free { vocab, written, stop, copied, last: remaining <= 1 };
    let (token, score) = argmax_allowed(text, &free);
    if copied {
        return Step::Token(token);
    }
    let best = CopyAction::ALL
        .into_iter()
        .filter(|a| writes[a.index()].is_some())
        .max_by(|a, b| copy[a.index()].total_cmp(&copy[b.index()]));
    let Some(action) = best else {
        return Step::Token(token);
    };
    let longest = writes.iter().flatten().map(Vec::len).max().unwrap_or(0) + vocab.space.len();
    if remaining <= longest || f64::from(copy[action.index()]) > score {
        Step::Copy(action)
    } else {
        Step::Token(token)
    }
}

/// Questions answered together, after the text stream's prefill.
pub struct Prefill<B: Backend> {
    /// One `[n, q, d_text]` per fusion layer: the states entering it, rows
    /// right-padded to the longest prompt.
    pub states: Vec<Tensor<B, 3>>,
    /// `[n, q]`: true at the positions the WAT stream does not read (padding, and
    /// each prompt's unread positions).
    pub ignore: Tensor<B, 2, Bool>,
}

/// `[rows, q]`: true where the WAT stream does not read a row's question — the
/// padding after its `lens[row]` tokens, and its positions in `unread[row]`.
fn unread_mask<B: Backend>(lens: &[usize], q: usize, unread: &[Vec<usize>], device: &B::Device) -> Tensor<B, 2, Bool> {
    let mut mask = vec![false; lens.len() * q];
    for (row, (&len, unread)) in lens.iter().zip(unread).enumerate() {
        let row = &mut mask[row * q..(row + 1) * q];
        row[len..].fill(true);
        for &i in unread {
            if let Some(m) = row.get_mut(i) {
                *m = true;
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [lens.len(), q]), device)
}

/// `[rows, len]`: each row's ids, then `pad` up to `len`.
fn padded_ids<B: Backend>(rows: &[Vec<u32>], len: usize, pad: u32, device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i32> = rows
        .iter()
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat(pad)).take(len).map(|t| t as i32))
        .collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), len]), device)
}

/// `[rows.len()]`: positions along a batch, as an index tensor for `select`.
pub fn rows_index<B: Backend>(rows: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let data: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
    Tensor::from_data(TensorData::new(data, [rows.len()]), device)
}

/// A `[rows, n]` tensor's values as f32, row after row.
fn rows_f32<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// Restricts which token a decoding step may take.
pub trait TokenGuide {
    /// Whether `id` may come next.
    fn allows(&self, id: u32) -> bool;
    /// Records the token taken.
    fn push(&mut self, id: u32);
}

/// Allows every token.
pub struct Unguided;

impl TokenGuide for Unguided {
    fn allows(&self, _: u32) -> bool {
        true
    }

    fn push(&mut self, _: u32) {}
}

/// The index and value of the largest element `guide` allows (the largest
/// overall when it allows none).
fn argmax_allowed(values: &[f32], guide: &dyn TokenGuide) -> (u32, f64) {
    let best = |allowed: &dyn Fn(u32) -> bool| {
        let mut best = (0u32, f64::NEG_INFINITY);
        for (i, &x) in values.iter().enumerate() {
            if f64::from(x) > best.1 && allowed(i as u32) {
                best = (i as u32, f64::from(x));
            }
        }
        best
    };
    let guided = best(&|i| guide.allows(i));
    if guided.1 == f64::NEG_INFINITY {
        best(&|_| true)
    } else {
        guided
    }
}

/// Every float parameter's path (`text.layers.0.attn.q.weight`), shape and, when
/// `values`, its values, in the order the module visits them.
fn float_params<B: Backend, M: Module<B>>(module: &M, values: bool) -> Vec<(String, Vec<usize>, Option<TensorData>)> {
    struct Params {
        path: Vec<String>,
        values: bool,
        found: Vec<(String, Vec<usize>, Option<TensorData>)>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Params {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let tensor = param.val();
            let dims = tensor.dims().to_vec();
            let data = self.values.then(|| tensor.into_data());
            self.found.push((self.path.join("."), dims, data));
        }
    }
    let mut params = Params { path: Vec::new(), values, found: Vec::new() };
    module.visit(&mut params);
    params.found
}

/// Every float parameter as path → (shape, f32 values), for export.
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M) -> Result<super::weights::Export, super::ModelError> {
    float_params(module, true)
        .into_iter()
        .map(|(path, dims, data)| {
            let values = data
                .expect("values were asked for")
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| super::ModelError::Tensor(format!("{e:?}")))?;
            Ok((path, (dims, values)))
        })
        .collect()
}

/// Every float parameter's path and shape, in the order the module visits them.
pub fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    float_params(module, false).into_iter().map(|(path, dims, _)| (path, dims)).collect()
}

/// SHA-256 (hex) of every float parameter's path, shape and values, in visiting
/// order: equal for equal weights, whatever process made them (unlike a record's
/// bytes, which carry each parameter's random id).
pub fn weights_digest<B: Backend, M: Module<B>>(module: &M) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (path, dims, data) in float_params(module, true) {
        hasher.update(path.as_bytes());
        for d in dims {
            hasher.update((d as u64).to_le_bytes());
        }
        for v in data.expect("values were asked for").convert::<f32>().iter::<f32>() {
            hasher.update(v.to_le_bytes());
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuTrain;
    use burn::tensor::Distribution;

    #[test]
    fn copy_cross_entropy_is_one_softmax_over_text_and_copy() {
        // Against the loss over the concatenated logits, value and gradients.
        let device = Default::default();
        let (b, s, v) = (2, 3, 7);
        let logits = Tensor::<CpuTrain, 3>::random([b, s, v], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let copy = Tensor::<CpuTrain, 3>::random([b, s, 2], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let targets = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(vec![1, 4, 6, 0, 2, 3], [b, s]), &device);
        let actions = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(vec![0, 1, 0, 2, 0, 1], [b, s]), &device);
        let mask = Tensor::<CpuTrain, 2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0], [b, s]), &device);
        let ours = copy_cross_entropy(logits.clone(), copy.clone(), targets.clone(), actions.clone(), mask.clone());
        // The choice's index among [vocab ++ actions].
        let choice = targets.clone().mask_where(actions.clone().greater_elem(0), actions.clone() + (v - 1));
        let all = Tensor::cat(vec![logits.clone(), copy.clone()], 2);
        let picked = log_softmax(all, 2).gather(2, choice.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
        let reference = (picked * mask.clone()).sum().neg() / mask.clone().sum();
        let close = |a: Vec<f32>, b: Vec<f32>| {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
            }
        };
        let value = |t: Tensor<CpuTrain, 1>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        close(value(ours.clone()), value(reference.clone()));
        let (g1, g2) = (ours.backward(), reference.backward());
        let grad = |g: &<CpuTrain as burn::tensor::backend::AutodiffBackend>::Gradients, t: &Tensor<CpuTrain, 3>| {
            t.grad(g).unwrap().into_data().convert::<f32>().to_vec::<f32>().unwrap()
        };
        close(grad(&g1, &logits), grad(&g2, &logits));
        close(grad(&g1, &copy), grad(&g2, &copy));
        // The same loss from each token's loss and target logit (the fused head's
        // output on CUDA), value and gradients.
        let of = copy_cross_entropy_of(crate::ops::head_nll::from_logits(logits.clone(), targets), copy.clone(), actions, mask);
        close(value(of.clone()), value(reference));
        let g3 = of.backward();
        close(grad(&g3, &logits), grad(&g2, &logits));
        close(grad(&g3, &copy), grad(&g2, &copy));
    }
}
