//! The WorldModel's information flow, pinned: answer tokens never reach the WAT
//! stream, WAT tokens never reach question positions, closed gates leave the text
//! stream exactly as plain Qwen3, and both streams learn.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use wmx::backend::{Cpu, CpuTrain};
use wmx::model::qwen3::Qwen3Config;
use wmx::model::wat_stream::WatStreamConfig;
use wmx::model::world::{Batch, Restating, TokenGuide, ValueVocab, WorldModel};

const Q: usize = 5;
const S: usize = 9;
const W: usize = 7;

fn config() -> Qwen3Config {
    Qwen3Config::from_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3/tiny-tied"),
    )
    .unwrap()
}

fn model<B: Backend>(gate_init: f64) -> WorldModel<B> {
    let device = Default::default();
    B::seed(&device, 3);
    let text_config = config();
    let text = text_config.init::<B>(&device);
    let wat = WatStreamConfig {
        vocab_size: 400,
        hidden_size: 32,
        num_attention_heads: 4,
        intermediate_size: 64,
        layers_per_segment: 1,
        segments: 2,
        text_hidden_size: text_config.hidden_size,
        max_tokens: 64,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
    };
    WorldModel::new(text, &wat, vec![0, 1], 4, gate_init, &device)
}

fn ints<B: Backend>(rows: &[Vec<i32>]) -> Tensor<B, 2, Int> {
    let (b, n) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, n]), &Default::default())
}

fn floats<B: Backend>(rows: &[Vec<f32>]) -> Tensor<B, 2> {
    let (b, n) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, n]), &Default::default())
}

fn batch<B: Backend>(text: [i32; S], wat: [i32; W]) -> Batch<B> {
    let mut targets = text[1..].to_vec();
    targets.push(0);
    let loss: Vec<f32> = (0..S)
        .map(|i| if i + 1 >= Q && i + 1 < S { 1.0 } else { 0.0 })
        .collect();
    let question: Vec<bool> = (0..S).map(|i| i < Q).collect();
    let mut wat_targets = wat[1..].to_vec();
    wat_targets.push(2);
    Batch {
        text_ids: ints(&[text.to_vec()]),
        text_targets: ints(&[targets]),
        text_loss_mask: floats(&[loss]),
        copy_actions: Tensor::zeros([1, S], &Default::default()),
        question: Tensor::<B, 2, Bool>::from_data(
            TensorData::new(question.clone(), [1, S]),
            &Default::default(),
        ),
        wat_reads: Tensor::<B, 2, Bool>::from_data(
            TensorData::new(question, [1, S]),
            &Default::default(),
        ),
        // The first loss is at position Q - 1 (its target is the first answer token).
        answers_from: Q - 1,
        reads_before: Q,
        wat_ids: ints(&[wat.to_vec()]),
        wat_targets: ints(&[wat_targets]),
        wat_loss_mask: floats(&[vec![1.0; W]]),
    }
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const TEXT: [i32; S] = [10, 11, 12, 13, 14, 15, 16, 17, 18];
const WAT: [i32; W] = [1, 20, 21, 22, 23, 24, 25];

#[test]
fn closed_gates_leave_the_text_stream_as_plain_qwen3() {
    let model = model::<Cpu>(0.0);
    let b = batch::<Cpu>(TEXT, WAT);
    let fused = values(model.forward(&b).text_logits);
    let plain = values(model.text.forward(b.text_ids.clone(), None));
    assert!(
        max_diff(&fused, &plain) <= 1e-6,
        "{}",
        max_diff(&fused, &plain)
    );
}

#[test]
fn answer_tokens_never_reach_the_wat_stream() {
    let model = model::<Cpu>(0.7);
    let before = model.forward(&batch::<Cpu>(TEXT, WAT));
    let mut changed = TEXT;
    changed[Q] = 99;
    changed[S - 1] = 98;
    let after = model.forward(&batch::<Cpu>(changed, WAT));
    assert_eq!(before.wat_logits.len(), 2);
    for (a, b) in before.wat_logits.into_iter().zip(after.wat_logits) {
        assert_eq!(values(a), values(b));
    }
}

#[test]
fn unread_argument_tokens_never_reach_the_wat_stream() {
    // The question's last token stands for an argument: left unread, changing it
    // moves no WAT logit (no question position after it could carry it over);
    // read, it does.
    let model = model::<Cpu>(0.7);
    let unread = |text: [i32; S]| {
        let mut b = batch::<Cpu>(text, WAT);
        let mut reads: Vec<bool> = (0..S).map(|i| i < Q).collect();
        reads[Q - 1] = false;
        b.wat_reads = Tensor::from_data(TensorData::new(reads, [1, S]), &Default::default());
        b
    };
    let mut changed = TEXT;
    changed[Q - 1] = 97;
    let wat = |b: Batch<Cpu>| -> Vec<Vec<f32>> {
        model.forward(&b).wat_logits.into_iter().map(values).collect()
    };
    assert_eq!(wat(unread(TEXT)), wat(unread(changed)));
    assert_ne!(wat(batch::<Cpu>(TEXT, WAT)), wat(batch::<Cpu>(changed, WAT)));
}

#[test]
fn wat_tokens_never_reach_question_positions() {
    let model = model::<Cpu>(0.7);
    let before = model.forward(&batch::<Cpu>(TEXT, WAT)).text_logits;
    let mut changed = WAT;
    changed[2] = 30;
    changed[5] = 31;
    let after = model.forward(&batch::<Cpu>(TEXT, changed)).text_logits;
    let vocab = before.dims()[2];
    let question = |t: Tensor<Cpu, 3>| values(t.narrow(1, 0, Q));
    assert_eq!(question(before.clone()), question(after.clone()));
    // With the gates open, answer positions do read the program.
    let answer = |t: Tensor<Cpu, 3>| values(t.narrow(1, Q, S - Q));
    assert!(
        max_diff(&answer(before), &answer(after)) > 1e-4,
        "fusion had no effect ({vocab} vocab)"
    );
}

/// The fusion blocks and the text stream's last layer run over the positions
/// from the batch's `answers_from` on, and the WAT stream reads the text before
/// its `reads_before` only: bounds that hold (no row's question reaches past
/// them, no loss before them) give the losses and every gradient of the whole
/// sequence, and a bound tighter than that is seen.
#[test]
fn fusion_and_reading_bounded_to_their_positions_give_the_whole_sequences_gradients() {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<f32>,
        tracked: usize,
    }
    impl ModuleVisitor<CpuTrain> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<CpuTrain, D>>) {
            if let Some(g) = self.grads.get::<Cpu, D>(param.id) {
                self.tracked += 1;
                self.out.extend(values(g));
            }
        }
    }
    let model = model::<CpuTrain>(0.7);
    let run = |answers_from: usize, reads_before: usize| {
        let mut b = batch::<CpuTrain>(TEXT, WAT);
        (b.answers_from, b.reads_before) = (answers_from, reads_before);
        let (text, wat) = model.losses(&b);
        let losses: Vec<f32> = std::iter::once(text.clone()).chain(wat.clone()).flat_map(values).collect();
        let loss = wat.into_iter().fold(text, |a, c| a + c);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut c = Collect { grads: &grads, out: Vec::new(), tracked: 0 };
        model.visit(&mut c);
        (losses, c.out, c.tracked)
    };
    let (whole_losses, whole, tracked) = run(0, S);
    let (losses, bounded, bounded_tracked) = run(Q - 1, Q);
    assert!(tracked > 30, "{tracked} parameters have gradients");
    assert_eq!(bounded_tracked, tracked);
    assert!(max_diff(&losses, &whole_losses) <= 1e-6, "{losses:?} vs {whole_losses:?}");
    let scale = whole.iter().fold(0f32, |m, g| m.max(g.abs()));
    assert!(max_diff(&bounded, &whole) <= 1e-5 * scale, "{} of {scale}", max_diff(&bounded, &whole));
    // Looser bounds are right too; a tighter one changes what is computed.
    let (_, loose, _) = run(2, Q + 2);
    assert!(max_diff(&loose, &whole) <= 1e-5 * scale);
    let (too_tight, _, _) = run(Q, Q);
    assert!(max_diff(&too_tight, &whole_losses) > 1e-6, "the loss at position {} did not count", Q - 1);
    let (too_tight, _, _) = run(0, Q - 1);
    assert!(max_diff(&too_tight, &whole_losses) > 1e-6, "the WAT stream did not read position {}", Q - 1);
}

#[test]
fn both_streams_learn_a_batch() {
    let mut model = model::<CpuTrain>(0.0);
    let mut optim = AdamWConfig::new().init();
    let b = batch::<CpuTrain>(TEXT, WAT);
    let mut first = None;
    let mut last = (0.0, 0.0);
    for _ in 0..40 {
        let (text, wat) = model.losses(&b);
        let wat_mean = wat.into_iter().reduce(|a, c| a + c).unwrap() / 2.0;
        let loss = text.clone() + wat_mean.clone();
        let values = (
            text.clone().into_scalar() as f64,
            wat_mean.clone().into_scalar() as f64,
        );
        first.get_or_insert(values);
        last = values;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let first = first.unwrap();
    assert!(last.0 < first.0 * 0.5, "text loss {first:?} → {last:?}");
    assert!(last.1 < first.1 * 0.5, "wat loss {first:?} → {last:?}");
    // Greedy decoding from the last exit reproduces the memorised program.
    let inner = model.valid();
    let device = Default::default();
    let question: Vec<u32> = TEXT[..Q].iter().map(|&t| t as u32).collect();
    let states = inner.question_states(&question, &device);
    let (program, confidence) = inner.decode_candidate(&states, 1, 10, &device);
    assert_eq!(
        program,
        WAT[1..].iter().map(|&t| t as u32).collect::<Vec<_>>()
    );
    assert!(confidence < 0.0 && confidence > -1.0, "{confidence}");
}

#[test]
fn saved_models_load_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.mpk");
    let original = model::<Cpu>(0.5);
    original.save(&path).unwrap();
    let device = Default::default();
    Cpu::seed(&device, 99);
    let fresh = model::<Cpu>(0.1);
    let b = batch::<Cpu>(TEXT, WAT);
    assert_ne!(
        values(fresh.forward(&b).text_logits),
        values(original.forward(&b).text_logits)
    );
    let loaded = fresh.load(&path, &device).unwrap();
    let (a, c) = (original.forward(&b), loaded.forward(&b));
    let (x, y) = (values(a.text_logits), values(c.text_logits));
    assert_eq!(x, y, "max diff {}", max_diff(&x, &y));
    for (x, y) in a.wat_logits.into_iter().zip(c.wat_logits) {
        assert_eq!(values(x), values(y));
    }
    let missing = model::<Cpu>(0.0).load(&dir.path().join("absent.mpk"), &device);
    assert!(missing.unwrap_err().to_string().contains("absent.mpk"));
}

#[test]
fn answers_decode_like_plain_qwen3_when_gates_are_closed() {
    let model = model::<Cpu>(0.0);
    let device = Default::default();
    let question: Vec<u32> = TEXT[..Q].iter().map(|&t| t as u32).collect();
    let states = model.question_states(&question, &device);
    assert_eq!(states.len(), 2);
    let candidates: Vec<Vec<u32>> = (0..2)
        .map(|k| model.decode_candidate(&states, k, 6, &device).0)
        .collect();
    let prefix: Vec<u32> = TEXT[..7].iter().map(|&t| t as u32).collect();
    let fused = model.decode_answer(&prefix, Q, &candidates, &states, &[], 8, &[]);
    let plain = model.text.generate(&prefix, 8, &[], &device);
    assert_eq!(fused, plain);
    assert_eq!(fused.len(), 8);
}

#[test]
fn cached_candidate_decoding_matches_the_teacher_forced_stream() {
    // Incremental decoding (one token per step through the attention caches) must
    // pick, at every position, the token the full teacher-forced pass ranks first.
    let model = model::<Cpu>(0.5);
    let device = Default::default();
    let question: Vec<u32> = TEXT[..Q].iter().map(|&t| t as u32).collect();
    let states = model.question_states(&question, &device);
    for exit in 0..2 {
        let (program, _) = model.decode_candidate(&states, exit, W - 1, &device);
        assert_eq!(program.len(), W - 1, "exit {exit} stopped early: {program:?}");
        let mut wat = [1i32; W];
        for (slot, &t) in wat[1..].iter_mut().zip(&program) {
            *slot = t as i32;
        }
        let logits = model.forward(&batch::<Cpu>(TEXT, wat)).wat_logits[exit].clone();
        let argmax: Vec<u32> = values(logits.argmax(2).float())
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(&argmax[..W - 1], &program[..], "exit {exit}");
    }
}

#[test]
fn questions_decoded_together_get_the_tokens_each_gets_alone() {
    // Prompts of different lengths (right-padded together), one with unread
    // positions, gates open: every candidate program, its confidence and every
    // answer token equal those of the prompt decoded alone.
    let model = model::<Cpu>(0.5);
    let device = Default::default();
    let prompts: Vec<Vec<u32>> = vec![
        TEXT[..Q].iter().map(|&t| t as u32).collect(),
        vec![7, 3, 11],
        TEXT.iter().rev().map(|&t| t as u32).collect(),
    ];
    let unread: Vec<Vec<usize>> = vec![vec![], vec![1], vec![0, 4]];
    let together = model.prefill(&prompts, &unread, &device);
    // Rows end at different steps (and leave the batch).
    let ends = [2, 5, W];
    let mut programs = Vec::new();
    for exit in 0..2 {
        let mut guides = ends.map(EndAfter::new);
        let mut guides: Vec<&mut dyn TokenGuide> = guides.iter_mut().map(|g| g as &mut dyn TokenGuide).collect();
        let batched = model.decode_programs(&together, exit, W, &mut guides);
        for (row, (prompt, unread)) in prompts.iter().zip(&unread).enumerate() {
            let alone = model.prefill(&[prompt.clone()], &[unread.clone()], &device);
            let (program, confidence) =
                model.decode_programs(&alone, exit, W, &mut [&mut EndAfter::new(ends[row])]).remove(0);
            assert_eq!(program.len(), ends[row].min(W), "exit {exit}, row {row}");
            assert_eq!(batched[row].0, program, "exit {exit}, row {row}");
            assert!((batched[row].1 - confidence).abs() < 1e-5, "exit {exit}, row {row}");
        }
        programs.push(batched.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
    }
    let prefixes: Vec<Vec<u32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| p.iter().copied().chain((0..i as u32).map(|t| 20 + t)).collect())
        .collect();
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let budgets = [6, 3, 5];
    let answers = model.decode_answers(&together, &prefixes, &lens, &programs, &budgets, &[], None);
    for row in 0..3 {
        let alone = model.prefill(&[prompts[row].clone()], &[unread[row].clone()], &device);
        let candidates: Vec<Vec<Vec<u32>>> = programs.iter().map(|exit| vec![exit[row].clone()]).collect();
        let expected = model.decode_answers(&alone, &[prefixes[row].clone()], &[lens[row]], &candidates, &[budgets[row]], &[], None);
        assert_eq!(answers[row], expected[0], "row {row}");
        assert_eq!(answers[row].tokens.len(), budgets[row]);
    }
    // With a copy head, rows restating a value (the first and last) and one
    // without (the middle) decode together as each alone; a restating row writes
    // none of the value tokens itself and copies its value exactly once.
    let model = model.with_copy_head(&device);
    // Tokens 20..26 are digits, 9 a space, the rest words.
    let pieces: Vec<String> = (0..config().vocab_size as u32)
        .map(|t| match t {
            9 => " ".to_string(),
            20..26 => (t - 20).to_string(),
            _ => format!(" w{t}"),
        })
        .collect();
    let vocab = ValueVocab::new(pieces, vec![9]);
    let states_value = &vocab.states_value;
    let rows = vec![Some([Some(vec![21, 22, 23]), None]), None, Some([Some(vec![24]), Some(vec![25])])];
    let restating = Restating { rows: rows.clone(), vocab: &vocab };
    let answers = model.decode_answers(&together, &prefixes, &lens, &programs, &budgets, &[], Some(&restating));
    for row in 0..3 {
        let alone = model.prefill(&[prompts[row].clone()], &[unread[row].clone()], &device);
        let candidates: Vec<Vec<Vec<u32>>> = programs.iter().map(|exit| vec![exit[row].clone()]).collect();
        let one = Restating { rows: vec![rows[row].clone()], vocab: &vocab };
        let expected =
            model.decode_answers(&alone, &[prefixes[row].clone()], &[lens[row]], &candidates, &[budgets[row]], &[], Some(&one));
        assert_eq!(answers[row], expected[0], "row {row}");
        let Some(writes) = &rows[row] else {
            assert!(answers[row].copied.is_none());
            continue;
        };
        let copied = answers[row].copied.expect("a restating row copies its value");
        let written = writes[copied.action.index()].as_ref().unwrap();
        assert_eq!(&answers[row].tokens[copied.at..copied.at + copied.len], &written[..], "row {row}");
        for (i, t) in answers[row].tokens.iter().enumerate() {
            assert!(
                (copied.at..copied.at + copied.len).contains(&i) || !states_value[*t as usize],
                "row {row} wrote value token {t} itself at {i}"
            );
        }
    }
}

/// Allows any token for the first `n`, then only `<eos>`.
struct EndAfter {
    n: usize,
    taken: usize,
}

impl EndAfter {
    fn new(n: usize) -> EndAfter {
        EndAfter { n, taken: 0 }
    }
}

impl TokenGuide for EndAfter {
    fn allows(&self, id: u32) -> bool {
        self.taken < self.n || id == wmx::tokenize::wat::EOS
    }

    fn push(&mut self, _: u32) {
        self.taken += 1;
    }
}
