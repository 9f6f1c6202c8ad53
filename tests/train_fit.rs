//! The training loop on a tiny curriculum: losses fall, replay mixes stages, and a
//! run stopped and resumed from its state continues exactly as one never stopped.

use burn::module::Module;
use burn::optim::{AdamWConfig, Optimizer, adaptor::OptimizerAdaptor};
use burn::tensor::backend::Backend;
use wmx::backend::CpuTrain;
use wmx::config::TrainConfig;
use wmx::curriculum::Curriculum;
use wmx::model::qwen3::Qwen3Config;
use wmx::model::wat_stream::WatStreamConfig;
use wmx::model::world::WorldModel;
use wmx::tokenize::TextTokenizer;
use wmx::tokenize::wat::WatVocab;
use wmx::train::data::Encoder;
use wmx::train::world::World;
use wmx::train::fit::{Control, Cursor, Hooks, EncodedStage, StepReport, batch_gradients, epoch_plan, fit};

type B = CpuTrain;
type Optim = OptimizerAdaptor<burn::optim::AdamW, WorldModel<B>, B>;

const CURRICULUM: &str = r#"
seed = 3
[[stages]]
name = "one"
count = 24
epochs = 2
[[stages.families]]
task = "add"
phrasings = ["What is {a} + {b}?"]
held_out = ["Add {a} and {b}."]
[[stages]]
name = "two"
count = 16
epochs = 2
replay = 0.25
[[stages.families]]
task = "mul"
phrasings = ["What is {a} * {b}?"]
held_out = ["Multiply {a} by {b}."]
"#;

fn setup() -> (Vec<EncodedStage>, u32, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, CURRICULUM).unwrap();
    let dataset = Curriculum::load(&path).unwrap().generate().unwrap();
    let texts: Vec<String> = dataset
        .stages
        .iter()
        .flat_map(|s| s.train.iter())
        .map(|e| {
            format!(
                "{} {} {}",
                e.question,
                wmx::prompt::computed_span(e.value),
                e.answer
            )
        })
        .collect();
    let text = TextTokenizer::train_bpe(texts.iter().map(String::as_str), 200).unwrap();
    let wat = WatVocab::new();
    let pad = text.token_id("<|endoftext|>").unwrap();
    let encoder = Encoder {
        text: &text,
        wat: &wat,
        pad,
        read_arguments: false,
        arguments: wmx::config::ArgumentView::Tokens,
        max_text_tokens: 512,
        max_wat_tokens: 512,
        copy_places: None,
    };
    let stages = dataset
        .stages
        .iter()
        .map(|s| EncodedStage {
            name: s.name.clone(),
            epochs: s.epochs,
            replay: s.replay,
            train: s.train.iter().map(|e| encoder.encode(e).unwrap()).collect(),
            copies: Vec::new(),
            validation: s
                .validation
                .iter()
                .map(|e| encoder.encode(e).unwrap())
                .collect(),
        })
        .collect();
    (stages, pad, text.vocab_size())
}

fn model(vocab: usize) -> WorldModel<B> {
    let device = Default::default();
    B::seed(&device, 11);
    let mut m = wmx::config::ModelConfig {
        vocab_size: vocab,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        ..Default::default()
    };
    m.max_position_embeddings = 128;
    let text = Qwen3Config::from_experiment(&m).init(&device);
    let wat = WatStreamConfig {
        vocab_size: WatVocab::new().len(),
        hidden_size: 32,
        num_attention_heads: 2,
        intermediate_size: 64,
        layers_per_segment: 1,
        segments: 2,
        text_hidden_size: 32,
        max_tokens: 64,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
    };
    WorldModel::new(text, &wat, vec![0, 1], 2, 0.0, &device)
}

fn config() -> TrainConfig {
    TrainConfig {
        batch_size: 8,
        grad_accum: 1,
        learning_rate: 3e-3,
        warmup_steps: 2,
        ..TrainConfig::default()
    }
}

fn optim() -> Optim {
    AdamWConfig::new().with_weight_decay(0.01).init()
}

/// A model, optimizer state and cursor kept when a run stops.
type Saved = (
    WorldModel<B>,
    <Optim as Optimizer<WorldModel<B>, B>>::Record,
    Cursor,
);

/// Records every step; stops after `stop_at` steps when set, keeping the state.
struct Recorder {
    losses: Vec<(f64, Vec<f64>)>,
    stop_at: Option<usize>,
    saved: Option<Saved>,
    epochs: usize,
}

impl Hooks<B, Optim> for Recorder {
    fn after_step(
        &mut self,
        report: &StepReport,
        model: &WorldModel<B>,
        optim: &Optim,
        cursor: &Cursor,
    ) -> Control {
        self.losses
            .push((report.text_loss, report.wat_losses.clone()));
        if Some(report.step) == self.stop_at {
            self.saved = Some((model.clone(), optim.to_record(), cursor.clone()));
            return Control::Stop;
        }
        Control::Continue
    }
    fn after_epoch(
        &mut self,
        validation: f64,
        _: &WorldModel<B>,
        _: &Optim,
        _: &Cursor,
    ) -> Control {
        assert!(validation.is_finite());
        self.epochs += 1;
        Control::Continue
    }
}

fn recorder(stop_at: Option<usize>) -> Recorder {
    Recorder {
        losses: Vec::new(),
        stop_at,
        saved: None,
        epochs: 0,
    }
}

/// Trains a fresh model from the curriculum's start, recording every step.
fn train_fresh(
    (stages, pad, vocab): (&[EncodedStage], u32, usize),
    config: &TrainConfig,
    seed: u64,
    stop_at: Option<usize>,
) -> (Recorder, WorldModel<B>, bool) {
    let mut rec = recorder(stop_at);
    let (trained, finished) = fit(
        model(vocab),
        &mut optim(),
        stages,
        config,
        seed,
        pad,
        &mut Cursor::default(),
        &mut rec,
        &World::solo(),
    );
    (rec, trained, finished)
}

#[test]
fn resumed_training_matches_uninterrupted() {
    let (stages, pad, vocab) = setup();
    let config = config();
    let (straight, _, finished) = train_fresh((&stages, pad, vocab), &config, 5, None);
    assert!(finished);
    assert_eq!(straight.epochs, 4);
    let steps = straight.losses.len();
    // 24 examples → 3 steps an epoch; 16 + 5 replayed → 3 steps; 2 epochs each.
    assert_eq!(steps, 12);

    let (mut first, _, finished) = train_fresh((&stages, pad, vocab), &config, 5, Some(4));
    assert!(!finished);
    let (saved_model, optim_record, mut cursor) = first.saved.take().unwrap();
    assert_eq!(cursor.step, 4);
    // A fresh process would load these from a checkpoint.
    let restored = model(vocab).load_record(saved_model.into_record());
    let mut second = recorder(None);
    let (_, finished) = fit(
        restored,
        &mut optim().load_record(optim_record),
        &stages,
        &config,
        5,
        pad,
        &mut cursor,
        &mut second,
        &World::solo(),
    );
    assert!(finished);
    let resumed: Vec<_> = first.losses.into_iter().chain(second.losses).collect();
    assert_eq!(resumed, straight.losses);
}

#[test]
fn losses_fall_over_the_curriculum() {
    let (stages, pad, vocab) = setup();
    let config = TrainConfig {
        epoch_scale: 4.0,
        ..config()
    };
    let (rec, _, _) = train_fresh((&stages, pad, vocab), &config, 1, None);
    let (first, last) = (&rec.losses[0], rec.losses.last().unwrap());
    assert!(last.0 < first.0 * 0.6, "text {} → {}", first.0, last.0);
    for (a, b) in first.1.iter().zip(&last.1) {
        assert!(b < &(a * 0.6), "wat {a} → {b}");
    }
}

#[test]
fn epochs_replay_earlier_stages_deterministically() {
    let (stages, _, _) = setup();
    let plan = epoch_plan(&stages, 1, 0, 9, 8);
    assert_eq!(plan, epoch_plan(&stages, 1, 0, 9, 8));
    assert_ne!(plan, epoch_plan(&stages, 1, 1, 9, 8));
    let replayed = plan.iter().filter(|(s, _)| *s == 0).count();
    assert_eq!(replayed, 5, "16 × 0.25 / 0.75 ≈ 5 examples from stage one");
    assert_eq!(plan.len(), 21);
}

#[test]
fn shards_train_the_same_trajectory_on_parallel_threads() {
    let (stages, pad, vocab) = setup();
    let run = |shards: usize| {
        let config = TrainConfig {
            shards,
            ..config()
        };
        let (rec, _, finished) = train_fresh((&stages, pad, vocab), &config, 5, None);
        assert!(finished);
        rec.losses
    };
    let one = run(1);
    let three = run(3);
    // Shards weigh their losses by their share of the loss tokens, so the summed
    // gradients are the whole batch's: only the float summation order differs.
    assert_eq!(one.len(), three.len());
    for (step, (a, b)) in one.iter().zip(&three).enumerate() {
        assert!((a.0 - b.0).abs() <= 1e-3 * a.0.abs().max(1e-3), "step {step}: text {} vs {}", a.0, b.0);
        for (x, y) in a.1.iter().zip(&b.1) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-3), "step {step}: wat {x} vs {y}");
        }
    }
    // The same shard count is the same trajectory, bit for bit.
    assert_eq!(three, run(3));
}

/// `wmx run` trains on rayon's pool (`backend::on_pool`), and a micro-batch's
/// shards share the pool's threads. burn's autodiff holds a graph's lock through
/// a backward pass and then takes every graph's lock to clean up, so a backward
/// pass on the pool could wait for a lock held by a thread that waits for the
/// pool (it hung CI once). Sharded and unsharded runs at once, on the pool as
/// `wmx run` trains and from plain threads, must all finish.
#[test]
fn sharded_runs_on_rayons_pool_and_beside_it_both_finish() {
    let (done, finished) = std::sync::mpsc::channel();
    let runs = [(3, true), (3, false), (1, false), (1, true)];
    for (shards, on_pool) in runs {
        let done = done.clone();
        // Detached, so a deadlocked run cannot keep the test from failing.
        std::thread::spawn(move || {
            let (stages, pad, vocab) = setup();
            let config = TrainConfig {
                shards,
                epoch_scale: 3.0,
                ..config()
            };
            let train = || train_fresh((&stages, pad, vocab), &config, 5, None).2;
            let ok = if on_pool { wmx::backend::on_pool::<B, _>(train) } else { train() };
            done.send(ok).unwrap();
        });
    }
    for _ in runs {
        // Minutes more than the runs need: only a deadlock gets here.
        let ok = finished.recv_timeout(std::time::Duration::from_secs(600));
        assert_eq!(ok, Ok(true), "sharded runs on rayon's pool did not finish: a deadlock");
    }
}

#[test]
fn replay_shares_evenly_between_earlier_stages_whatever_their_size() {
    let (stages, _, _) = setup();
    // Stage one has 24 examples, stage two 16; a third stage of 18 at replay 0.4
    // replays 12: six from each, not 7 and 5 by size.
    let mut third = stages[0].clone();
    third.name = "three".into();
    third.train.truncate(18);
    third.replay = 0.4;
    let mut three = stages.clone();
    three.push(third);
    let plan = epoch_plan(&three, 2, 0, 9, 8);
    let from = |stage: usize| plan.iter().filter(|(s, _)| *s == stage).count();
    assert_eq!((from(0), from(1), from(2)), (6, 6, 18));
    // No example is replayed twice within an epoch.
    let mut seen = plan.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), plan.len());
}

#[test]
fn checkpoints_round_trip_and_corruption_falls_back_to_the_previous_one() {
    use wmx::rundir::checkpoint::Checkpoints;
    let (stages, pad, vocab) = setup();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = Checkpoints {
        dir: dir.path().join("checkpoints"),
        keep_last: 2,
    };
    struct Saver<'a> {
        checkpoints: &'a Checkpoints,
        losses: Vec<f64>,
    }
    impl Hooks<B, Optim> for Saver<'_> {
        fn after_step(
            &mut self,
            r: &StepReport,
            model: &WorldModel<B>,
            optim: &Optim,
            cursor: &Cursor,
        ) -> Control {
            self.losses.push(r.text_loss);
            self.checkpoints.save(model, optim, cursor, None).unwrap();
            if r.step == 5 {
                Control::Stop
            } else {
                Control::Continue
            }
        }
        fn after_epoch(&mut self, _: f64, _: &WorldModel<B>, _: &Optim, _: &Cursor) -> Control {
            Control::Continue
        }
    }
    let mut saver = Saver {
        checkpoints: &checkpoints,
        losses: Vec::new(),
    };
    fit(
        model(vocab),
        &mut optim(),
        &stages,
        &config(),
        5,
        pad,
        &mut Cursor::default(),
        &mut saver,
        &World::solo(),
    );
    // The newest two are kept, and step 3, which closed the first epoch with the best validation loss.
    assert_eq!(checkpoints.steps(), vec![5, 4, 3]);
    // Flip one byte of the newest model: it is reported, and step 4 is used.
    let model_file = checkpoints.dir.join("step-00000005/model.mpk");
    let mut bytes = std::fs::read(&model_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&model_file, bytes).unwrap();
    let (loaded, skipped) = checkpoints
        .load_latest(model(vocab), optim(), &Default::default())
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].to_string().contains("step-00000005")
            && skipped[0].to_string().contains("model.mpk"),
        "{}",
        skipped[0]
    );
    let (restored, mut restored_optim, mut cursor, step) = loaded.unwrap();
    assert_eq!((step, cursor.step), (4, 4));
    // Continuing from step 4 reproduces step 5's loss.
    let mut rec = recorder(Some(5));
    fit(
        restored,
        &mut restored_optim,
        &stages,
        &config(),
        5,
        pad,
        &mut cursor,
        &mut rec,
        &World::solo(),
    );
    assert_eq!(rec.losses[0].0, saver.losses[4]);
}

#[test]
fn a_frozen_text_stream_does_not_move() {
    let (stages, pad, vocab) = setup();
    let mut m = model(vocab);
    m.text = m.text.no_grad();
    let before = m.text.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .into_data();
    let wat_before = m.wat.segments[0].exit_head.weight.val().into_data();
    let mut rec = recorder(Some(2));
    let (trained, _) = fit(
        m,
        &mut optim(),
        &stages,
        &config(),
        5,
        pad,
        &mut Cursor::default(),
        &mut rec,
        &World::solo(),
    );
    assert_eq!(
        trained.text.model.layers[0]
            .self_attn
            .q_proj
            .weight
            .val()
            .into_data(),
        before
    );
    assert_ne!(
        trained.wat.segments[0].exit_head.weight.val().into_data(),
        wat_before
    );
}

/// Every parameter's gradient in `grads`, in the model's order (absent ones empty).
fn gradient_values(m: &WorldModel<B>, grads: &burn::optim::GradientsParams) -> Vec<Vec<f32>> {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Collect<'a> {
        grads: &'a burn::optim::GradientsParams,
        out: Vec<Vec<f32>>,
    }
    impl ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = self.grads.get::<wmx::backend::Cpu, D>(param.id);
            self.out.push(g.map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap()).unwrap_or_default());
        }
    }
    let mut c = Collect { grads, out: Vec::new() };
    m.visit(&mut c);
    c.out
}

#[test]
fn ranks_share_a_batchs_shards_and_their_gradients_sum_to_the_batchs_gradient() {
    let (stages, pad, vocab) = setup();
    let m = model(vocab);
    let rows: Vec<_> = stages[0].train[..6].iter().collect();
    let with = |shards: usize, devices: usize| TrainConfig { shards, devices, ..config() };
    // One process, the batch in two shards; two ranks, one shard each (shards = 1
    // with two devices means one each).
    let (whole, text, wat) = batch_gradients(&m, &rows, &with(2, 1), pad, &World::solo());
    let (first, text0, wat0) = batch_gradients(&m, &rows, &with(1, 2), pad, &World::unsummed(0, 2));
    let (second, text1, wat1) = batch_gradients(&m, &rows, &with(1, 2), pad, &World::unsummed(1, 2));
    let (whole, first, second) = (gradient_values(&m, &whole), gradient_values(&m, &first), gradient_values(&m, &second));
    assert!(whole.iter().filter(|g| !g.is_empty()).count() > 10, "the batch trains the model's parameters");
    for (i, w) in whole.iter().enumerate() {
        assert_eq!(first[i].len(), w.len(), "parameter {i}: rank 0 has a gradient wherever the batch has");
        assert_eq!(second[i].len(), w.len(), "parameter {i}: rank 1 has a gradient wherever the batch has");
        for (j, &v) in w.iter().enumerate() {
            // The same two shards, added in the same order: the same numbers.
            assert_eq!(first[i][j] + second[i][j], v, "parameter {i}, element {j}");
        }
    }
    assert!(first.iter().zip(&second).any(|(a, b)| a != b), "the ranks trained different rows");
    assert_eq!(text0 + text1, text, "the ranks' text losses add up to the batch's");
    assert_eq!(wat0.len(), wat.len());
    for (k, w) in wat.iter().enumerate() {
        assert_eq!(wat0[k] + wat1[k], *w, "exit {k}'s WAT loss");
    }
    // Four shards on two ranks: two each, the same gradient as one process's four.
    let (four, _, _) = batch_gradients(&m, &rows, &with(4, 1), pad, &World::solo());
    let (a, _, _) = batch_gradients(&m, &rows, &with(4, 2), pad, &World::unsummed(0, 2));
    let (b, _, _) = batch_gradients(&m, &rows, &with(4, 2), pad, &World::unsummed(1, 2));
    let (four, a, b) = (gradient_values(&m, &four), gradient_values(&m, &a), gradient_values(&m, &b));
    for (i, w) in four.iter().enumerate() {
        for (j, &v) in w.iter().enumerate() {
            let sum = a[i][j] + b[i][j];
            assert!((sum - v).abs() <= 1e-6 * v.abs().max(1.0), "parameter {i}, element {j}: {sum} vs {v}");
        }
    }
    // A batch with fewer rows than ranks: the rank without rows trains nothing.
    let one = &rows[..1];
    let (g, t, _) = batch_gradients(&m, one, &with(1, 2), pad, &World::unsummed(1, 2));
    assert!(gradient_values(&m, &g).iter().all(Vec::is_empty) && t == 0.0);
    let (g, t, _) = batch_gradients(&m, one, &with(1, 2), pad, &World::unsummed(0, 2));
    assert!(!gradient_values(&m, &g).iter().all(Vec::is_empty) && t > 0.0);
}
