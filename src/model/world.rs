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
use crate::tokenize::wat::{BOS, EOS, PAD};

#[derive(Module, Debug)]
pub struct WorldModel<B: Backend> {
    pub text: Qwen3ForCausalLM<B>,
    pub wat: WatStream<B>,
    /// One gated cross-attention block per fusion layer.
    pub fusion: Vec<GatedCrossAttention<B>>,
    /// Text layers ℓk (0-based) before which segment k is fused.
    pub fusion_layers: Vec<usize>,
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
    /// `[batch, seq]`: true at question positions (fusion acts after them).
    pub question: Tensor<B, 2, Bool>,
    /// `[batch, seq]`: true where the WAT stream may read — the question, less
    /// the arguments' own tokens when those are masked (`wat.read_arguments`).
    pub wat_reads: Tensor<B, 2, Bool>,
    /// `[batch, wat_len]`
    pub wat_ids: Tensor<B, 2, Int>,
    /// `[batch, wat_len]`
    pub wat_targets: Tensor<B, 2, Int>,
    /// `[batch, wat_len]`: 1 where the target is a program token or `<eos>`.
    pub wat_loss_mask: Tensor<B, 2>,
}

/// What a teacher-forced forward pass gives.
#[derive(Debug, Clone)]
pub struct Output<B: Backend> {
    /// `[batch, seq, vocab]`
    pub text_logits: Tensor<B, 3>,
    /// One `[batch, wat_len, wat_vocab]` per exit.
    pub wat_logits: Vec<Tensor<B, 3>>,
}

/// Mean cross-entropy of `logits` against `targets` where `mask` is 1; a scalar `[1]`.
/// On CUDA each token's loss is one autodiff operation
/// ([`crate::ops::cross_entropy`]); every other backend runs the same tensor
/// operations as always.
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let total = mask.clone().sum().clamp_min(1.0);
    #[cfg(feature = "cuda")]
    if crate::ops::cross_entropy::handles::<B>() {
        return (crate::ops::cross_entropy::token_nll(logits, targets) * mask).sum() / total;
    }
    let picked = log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    (picked * mask).sum().neg() / total
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
        }
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
        for (i, layer) in self.text.model.layers.iter().enumerate() {
            while segment < self.fusion_layers.len() && self.fusion_layers[segment] == i {
                let seg = &self.wat.segments[segment];
                w = seg.forward(w, &x, &text_ignore, &self.wat.rotary);
                wat_logits.push(seg.exit(w.clone()));
                x = self.fusion[segment].forward(x, w.clone(), &wat_ignore, &answer);
                segment += 1;
            }
            x = layer.forward(x, &self.text.rotary, 0, Some(&causal), None);
        }
        Output {
            text_logits: self.text.head(x),
            wat_logits,
        }
    }

    /// Text loss and one WAT loss per exit.
    pub fn losses(&self, batch: &Batch<B>) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
        let out = self.forward(batch);
        let text = masked_cross_entropy(
            out.text_logits,
            batch.text_targets.clone(),
            batch.text_loss_mask.clone(),
        );
        let wat = out
            .wat_logits
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
        self.decode_answers(&prefill, &[prefix.to_vec()], &[question_len], &programs, &[max_new], stop)
            .remove(0)
    }

    /// Greedily decodes each prefilled question's answer after its `prefixes` row
    /// (question plus injected computed span, the question being the row's first
    /// `question_lens` tokens), with fusion reading each exit's candidates
    /// (`programs[exit][row]`, without `<bos>`); at most `budgets[row]` tokens,
    /// stopping after a `stop` id. Rows are right-padded to the longest: each step
    /// runs the text stream over every row and reads the logits at each row's own
    /// last position.
    pub fn decode_answers(
        &self,
        prefill: &Prefill<B>,
        prefixes: &[Vec<u32>],
        question_lens: &[usize],
        programs: &[Vec<Vec<u32>>],
        budgets: &[usize],
        stop: &[u32],
    ) -> Vec<Vec<u32>> {
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
        let mut out = vec![Vec::new(); n];
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
            let mut x = self.text.embed(padded_ids::<B>(&rows, s, 0, device));
            let mut segment = 0;
            for (i, layer) in self.text.model.layers.iter().enumerate() {
                while segment < self.fusion_layers.len() && self.fusion_layers[segment] == i {
                    let (w, ignore) = &wat[segment];
                    x = self.fusion[segment].forward(x, w.clone(), ignore, &answer);
                    segment += 1;
                }
                x = layer.forward(x, &self.text.rotary, 0, Some(&causal), None);
            }
            let d = x.dims()[2];
            let last: Vec<usize> = rows.iter().enumerate().map(|(j, r)| j * s + r.len() - 1).collect();
            let x = x.reshape([a * s, d]).select(0, rows_index::<B>(&last, device)).reshape([a, 1, d]);
            let logits = self.text.head(x);
            let vocab = logits.dims()[2];
            let logits = rows_f32(logits.reshape([a, vocab]));
            let mut kept = Vec::with_capacity(a);
            for (j, &r) in active.iter().enumerate() {
                let (next, _) = argmax_allowed(&logits[j * vocab..(j + 1) * vocab], &Unguided);
                out[r].push(next);
                if !stop.contains(&next) && out[r].len() < budgets[r] {
                    ids[r].push(next);
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
