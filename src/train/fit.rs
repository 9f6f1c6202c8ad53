//! The training loop, top to bottom: plan the epoch → for each optimizer step, set
//! the learning rate → forward / backward over the accumulated micro-batches →
//! step → report. Checkpointing, logging and stopping live in the [`Hooks`].

use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::data::{Encoded, collate, drop_carrier, drop_words};
use super::schedule::{learning_rate, stage_warmup};
use crate::config::TrainConfig;
use crate::curriculum::rng::Rng;
use crate::model::world::WorldModel;
use super::world::World;

/// One stage's encoded data.
#[derive(Debug, Clone)]
pub struct EncodedStage {
    pub name: String,
    pub epochs: usize,
    pub replay: f64,
    pub train: Vec<Encoded>,
    /// Copy-practice variants of each training example (see
    /// [`copy_variant`](super::data::copy_variant)); empty where there are none.
    pub copies: Vec<Vec<Encoded>>,
    pub validation: Vec<Encoded>,
}

/// Where training is: everything besides the model and optimizer a resume needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Optimizer steps taken.
    pub step: usize,
    pub stage: usize,
    pub epoch: usize,
    /// Optimizer steps taken within the current epoch.
    pub step_in_epoch: usize,
    /// Lowest validation loss seen, with the step it was seen at.
    pub best_validation: Option<(f64, usize)>,
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub stage: String,
    pub epoch: usize,
    pub step: usize,
    pub learning_rate: f64,
    pub text_loss: f64,
    pub wat_losses: Vec<f64>,
    pub grad_norm: f64,
    pub seconds: f64,
    pub tokens: usize,
    /// Optimizer steps in this epoch, for progress.
    pub steps_in_epoch: usize,
}

/// What the loop should do after a step or epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Everything outside the loop's body: logging, checkpoints, interruption.
pub trait Hooks<B: AutodiffBackend, O> {
    fn after_step(
        &mut self,
        report: &StepReport,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
    ) -> Control;
    fn after_epoch(
        &mut self,
        validation_loss: f64,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
    ) -> Control;
}

/// Trains `model` through the stages from `cursor` on; returns the model and
/// whether it ran to the end (`false` when a hook stopped it). With several ranks
/// in `world`, this process trains its share of each batch's shards and the ranks'
/// gradients are summed before each step (see [`World`]).
#[allow(clippy::too_many_arguments)]
pub fn fit<B: AutodiffBackend, O: Optimizer<WorldModel<B>, B>>(
    mut model: WorldModel<B>,
    optim: &mut O,
    stages: &[EncodedStage],
    config: &TrainConfig,
    seed: u64,
    pad: u32,
    cursor: &mut Cursor,
    hooks: &mut dyn Hooks<B, O>,
    world: &World,
) -> (WorldModel<B>, bool) {
    let device = model.text.rotary.cos.device();
    let examples_per_step = config.batch_size * config.grad_accum;
    let total_steps = total_steps(stages, config);
    let mut profile = HostSampling::from_env();
    while cursor.stage < stages.len() {
        let stage = &stages[cursor.stage];
        let epochs = stage_epochs(stage, config);
        while cursor.epoch < epochs {
            let plan = epoch_plan(stages, cursor.stage, cursor.epoch, seed, config.batch_size);
            let steps_in_epoch = plan.len().div_ceil(examples_per_step);
            while cursor.step_in_epoch < steps_in_epoch {
                let into_stage = cursor.epoch * steps_in_epoch + cursor.step_in_epoch;
                let lr = learning_rate(
                    cursor.step,
                    total_steps,
                    config.learning_rate,
                    config.warmup_steps,
                    config.min_lr_ratio,
                ) * if cursor.stage > 0 {
                    stage_warmup(into_stage, config.stage_warmup_steps)
                } else {
                    1.0
                };
                profile.before_step(cursor.step);
                let started = Instant::now();
                let group = &plan[cursor.step_in_epoch * examples_per_step
                    ..((cursor.step_in_epoch + 1) * examples_per_step).min(plan.len())];
                let mut accumulator = GradientsAccumulator::<WorldModel<B>>::new();
                let (mut text_sum, mut wat_sums, mut tokens) =
                    (0.0, vec![0.0; model.fusion.len()], 0);
                let micro_batches: Vec<&[(usize, usize)]> =
                    group.chunks(config.batch_size).collect();
                let scale = 1.0 / micro_batches.len() as f64;
                for micro in &micro_batches {
                    let owned: Vec<Encoded>;
                    let mut rows: Vec<&Encoded> = micro
                        .iter()
                        .map(|&(s, i)| training_row(stages, (s, i), cursor, seed, config))
                        .collect();
                    if config.word_dropout > 0.0 || config.carrier_dropout > 0.0 {
                        owned = micro
                            .iter()
                            .zip(&rows)
                            .map(|(&(s, i), row)| {
                                let mut rng = Rng::stream(
                                    seed,
                                    &[0xd207, cursor.stage as u64, cursor.epoch as u64, s as u64, i as u64],
                                );
                                let mut row = (*row).clone();
                                if config.carrier_dropout > 0.0 && rng.unit() < config.carrier_dropout {
                                    drop_carrier(&mut row, pad);
                                }
                                if config.word_dropout > 0.0 {
                                    drop_words(&mut row, config.word_dropout, pad, &mut rng);
                                }
                                row
                            })
                            .collect();
                        rows = owned.iter().collect();
                    }
                    tokens += rows
                        .iter()
                        .map(|r| r.text.len() + r.wat.len() + 1)
                        .sum::<usize>();
                    for part in micro_batch_gradients(&model, &rows, config, pad, scale, world, &device) {
                        text_sum += part.text;
                        for (sum, l) in wat_sums.iter_mut().zip(part.wat) {
                            *sum += l;
                        }
                        accumulator.accumulate(&model, part.grads);
                    }
                }
                let grads = accumulator.grads();
                let (grads, text_sum, wat_sums) = if world.is_solo() {
                    (grads, text_sum, wat_sums)
                } else {
                    let mut values = vec![text_sum];
                    values.extend(&wat_sums);
                    let (grads, values) = world.sum_step(&model, grads, &values, &device);
                    (grads, values[0], values[1..].to_vec())
                };
                let grad_norm = grad_norm(&model, &grads);
                model = optim.step(lr, model, grads);
                cursor.step += 1;
                cursor.step_in_epoch += 1;
                let report = StepReport {
                    stage: stage.name.clone(),
                    epoch: cursor.epoch,
                    step: cursor.step,
                    learning_rate: lr,
                    text_loss: text_sum,
                    wat_losses: wat_sums,
                    grad_norm,
                    seconds: started.elapsed().as_secs_f64(),
                    tokens,
                    steps_in_epoch,
                };
                profile.after_step(cursor.step);
                let control = hooks.after_step(&report, &model, optim, cursor);
                if world.any::<B>(control == Control::Stop, &device) {
                    return (model, false);
                }
            }
            let validation = validation_loss_shared(&model.valid(), &stage.validation, config, pad, world);
            cursor.epoch += 1;
            cursor.step_in_epoch = 0;
            if cursor
                .best_validation
                .is_none_or(|(best, _)| validation < best)
            {
                cursor.best_validation = Some((validation, cursor.step));
            }
            let control = hooks.after_epoch(validation, &model, optim, cursor);
            if world.any::<B>(control == Control::Stop, &device) {
                return (model, false);
            }
        }
        cursor.stage += 1;
        cursor.epoch = 0;
    }
    (model, true)
}

/// `WMX_HOST_PROFILE=FILE`: the host's stacks sampled over a training run's
/// optimizer steps `WMX_HOST_PROFILE_STEPS` (`FROM..TO`, default `100..400`),
/// written to FILE when step TO ends ([`crate::profile`]; needs the `profile`
/// feature). What a real run's steps spend, shapes and all, where
/// `wmx bench train` times the text stream alone.
struct HostSampling {
    file: Option<std::path::PathBuf>,
    steps: std::ops::Range<usize>,
    running: Option<crate::profile::HostProfile>,
}

impl HostSampling {
    fn from_env() -> HostSampling {
        let file = std::env::var_os("WMX_HOST_PROFILE").map(std::path::PathBuf::from);
        let steps = std::env::var("WMX_HOST_PROFILE_STEPS")
            .ok()
            .and_then(|s| {
                let (from, to) = s.split_once("..")?;
                Some(from.trim().parse().ok()?..to.trim().parse().ok()?)
            })
            .unwrap_or(100..400);
        HostSampling { file, steps, running: None }
    }

    fn before_step(&mut self, step: usize) {
        if let Some(file) = &self.file
            && step == self.steps.start
        {
            match crate::profile::HostProfile::start(file) {
                Ok(p) => self.running = Some(p),
                Err(e) => log::warn!("WMX_HOST_PROFILE: {e}"),
            }
        }
    }

    fn after_step(&mut self, step: usize) {
        if step >= self.steps.end
            && let Some(p) = self.running.take()
        {
            match p.finish() {
                Ok(n) => log::info!("WMX_HOST_PROFILE: {n} samples of steps {:?}", self.steps),
                Err(e) => log::warn!("WMX_HOST_PROFILE: {e}"),
            }
        }
    }
}

/// This rank's gradients for one batch of `rows` (its shards of them, summed), with
/// its shares of the batch's text loss and of each exit's WAT loss: what the ranks'
/// sum adds up to the batch's gradient and losses.
pub fn batch_gradients<B: AutodiffBackend>(
    model: &WorldModel<B>,
    rows: &[&Encoded],
    config: &TrainConfig,
    pad: u32,
    world: &World,
) -> (GradientsParams, f64, Vec<f64>) {
    let device = model.text.rotary.cos.device();
    let mut accumulator = GradientsAccumulator::<WorldModel<B>>::new();
    let (mut text, mut wat) = (0.0, vec![0.0; model.fusion.len()]);
    for part in micro_batch_gradients(model, rows, config, pad, 1.0, world, &device) {
        text += part.text;
        for (sum, l) in wat.iter_mut().zip(part.wat) {
            *sum += l;
        }
        accumulator.accumulate(model, part.grads);
    }
    (accumulator.grads(), text, wat)
}

/// One shard's gradients and its share of the micro-batch's losses.
struct ShardGradients {
    grads: GradientsParams,
    text: f64,
    wat: Vec<f64>,
}

/// Forward and backward over one micro-batch, split into `config.shards` shards.
/// On the CPU each shard trains, forward and backward, on one thread of its own,
/// the shards side by side (`backend::on_threads`, which says why not on rayon's
/// threads): a shard's operations are too small to share well between threads.
/// On a GPU (whose device one thread drives best, and whose allocator is not safe
/// to share between threads training at once) the shards this process trains run
/// as one batch. Each shard's losses are weighted by its share of the
/// micro-batch's loss tokens, so the shards' gradients sum to exactly the gradient
/// of the whole micro-batch's mean loss (times `scale`). With more than one shard,
/// each shard trains its own copy of the model (same parameter ids, separate
/// autodiff graphs). With several ranks, this process trains only its own shards
/// ([`World::shards`]); a rank whose shards hold no rows returns none.
#[allow(clippy::too_many_arguments)]
fn micro_batch_gradients<B: AutodiffBackend>(
    model: &WorldModel<B>,
    rows: &[&Encoded],
    config: &TrainConfig,
    pad: u32,
    scale: f64,
    world: &World,
    device: &B::Device,
) -> Vec<ShardGradients> {
    let answer_tokens = |r: &&Encoded| r.text.len().saturating_sub(r.answer_start).max(1) as f64;
    let wat_tokens = |r: &&Encoded| (r.wat.len() + 1) as f64;
    let (text_total, wat_total): (f64, f64) = (
        rows.iter().map(answer_tokens).sum(),
        rows.iter().map(wat_tokens).sum(),
    );
    let forward = |model: &WorldModel<B>, part: &[&Encoded]| {
        let text_share = part.iter().map(answer_tokens).sum::<f64>() / text_total;
        let wat_share = part.iter().map(wat_tokens).sum::<f64>() / wat_total;
        let (text, wat) = model.losses(&collate::<B>(part, pad, device));
        let exits = wat.len().max(1) as f64;
        let wat_mean = wat
            .iter()
            .cloned()
            .reduce(|a, b| a + b)
            .map_or_else(|| text.zeros_like(), |s| s / exits);
        let loss = (text.clone() * text_share + wat_mean * (wat_share * config.wat_loss_weight))
            * scale;
        // Read back after the backward pass is queued, all in one transfer (f32
        // holds any float dtype's loss exactly): on a GPU each read waits for the
        // device, which would idle between the passes.
        let losses = std::iter::once(text).chain(wat).map(|l| l.detach().cast(FloatDType::F32));
        (loss, Tensor::cat(losses.collect(), 0), text_share, wat_share)
    };
    let backward = |model: &WorldModel<B>, (loss, losses, text_share, wat_share): (Tensor<B, 1>, Tensor<B, 1>, f64, f64)| {
        let grads = GradientsParams::from_grads(loss.backward(), model);
        let values = values(losses);
        ShardGradients {
            grads,
            text: values[0] * text_share * scale,
            wat: values[1..].iter().map(|l| l * wat_share * scale).collect(),
        }
    };
    let shards = shards(config.shards, world.size);
    let all: Vec<&[&Encoded]> = rows.chunks(rows.len().div_ceil(shards).max(1)).collect();
    let mine = world.shards(shards);
    let parts = &all[mine.start.min(all.len())..mine.end.min(all.len())];
    if parts.len() <= 1 {
        return parts.first().map(|part| backward(model, forward(model, part))).into_iter().collect();
    }
    if !crate::backend::runs_on_host::<B>() {
        // One after another, shards would only add their launches and host
        // hand-offs: on a GPU this rank's shards train as one batch, whose loss
        // shares add up to theirs — the same gradient, summed in another order.
        let merged: Vec<&Encoded> = parts.iter().flat_map(|part| part.iter().copied()).collect();
        return vec![backward(model, forward(model, &merged))];
    }
    // `fork` detaches: fresh leaves, same parameter ids and values.
    let copies: Vec<WorldModel<B>> = parts.iter().map(|_| model.clone().fork(device)).collect();
    crate::backend::on_threads(parts.len(), |i| backward(&copies[i], forward(&copies[i], parts[i])))
}

/// A vector's values as f64s (NaN where they cannot be read).
fn values<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    let n = t.dims()[0];
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap_or_else(|_| vec![f64::NAN; n])
}

/// The row example `(s, i)` trains on this epoch: itself, or — for a
/// `copy_practice` share of rows, drawn from the seed — one of its copy variants.
fn training_row<'a>(
    stages: &'a [EncodedStage],
    (s, i): (usize, usize),
    cursor: &Cursor,
    seed: u64,
    config: &TrainConfig,
) -> &'a Encoded {
    let variants = stages[s].copies.get(i).map_or(&[][..], Vec::as_slice);
    if config.copy_practice > 0.0 && !variants.is_empty() {
        let mut rng = Rng::stream(
            seed,
            &[0xc0de, cursor.stage as u64, cursor.epoch as u64, s as u64, i as u64],
        );
        if rng.unit() <= config.copy_practice {
            return &variants[rng.below(variants.len())];
        }
    }
    &stages[s].train[i]
}

/// A stage's epochs after `epoch_scale` (at least one).
pub fn stage_epochs(stage: &EncodedStage, config: &TrainConfig) -> usize {
    ((stage.epochs as f64 * config.epoch_scale).round() as usize).max(1)
}

/// Optimizer steps of the whole curriculum, for the schedule.
pub fn total_steps(stages: &[EncodedStage], config: &TrainConfig) -> usize {
    let per_step = config.batch_size * config.grad_accum;
    (0..stages.len())
        .map(|s| stage_epochs(&stages[s], config) * epoch_len(stages, s).div_ceil(per_step))
        .sum::<usize>()
        .max(1)
}

fn replay_count(stages: &[EncodedStage], stage: usize) -> usize {
    let replay = stages[stage].replay;
    let earlier: usize = stages[..stage].iter().map(|s| s.train.len()).sum();
    if earlier == 0 || replay <= 0.0 {
        return 0;
    }
    ((stages[stage].train.len() as f64 * replay / (1.0 - replay)).round() as usize).min(earlier)
}

fn epoch_len(stages: &[EncodedStage], stage: usize) -> usize {
    stages[stage].train.len() + replay_count(stages, stage)
}

/// The examples of one epoch as `(stage, index)`, in training order: the stage's
/// own examples plus a replay share drawn evenly from earlier stages, shuffled from the
/// seed, then grouped so each batch holds examples of similar program length.
pub fn epoch_plan(
    stages: &[EncodedStage],
    stage: usize,
    epoch: usize,
    seed: u64,
    batch: usize,
) -> Vec<(usize, usize)> {
    let mut rng = Rng::stream(seed, &[0x7ea1, stage as u64, epoch as u64]);
    let mut plan: Vec<(usize, usize)> =
        (0..stages[stage].train.len()).map(|i| (stage, i)).collect();
    plan.extend(replay_draw(stages, stage, replay_count(stages, stage), &mut rng));
    rng.shuffle(&mut plan);
    // Sort windows of a few batches by WAT length: less padding, still mixed.
    let window = batch.max(1) * 8;
    for chunk in plan.chunks_mut(window) {
        chunk.sort_by_key(|&(s, i)| stages[s].train[i].wat.len());
    }
    let mut batches: Vec<Vec<(usize, usize)>> =
        plan.chunks(batch.max(1)).map(<[_]>::to_vec).collect();
    rng.shuffle(&mut batches);
    batches.concat()
}

/// `n` examples replayed from the stages before `stage`, shared evenly between
/// them rather than by size, so a small stage (the system tasks) is not crowded
/// out by a large one; a stage with fewer examples than its share gives the rest
/// to the others. Each stage's examples are drawn without repeats.
fn replay_draw(
    stages: &[EncodedStage],
    stage: usize,
    n: usize,
    rng: &mut Rng,
) -> Vec<(usize, usize)> {
    let mut pools: Vec<Vec<(usize, usize)>> = (0..stage)
        .map(|s| {
            let mut pool: Vec<(usize, usize)> = (0..stages[s].train.len()).map(|i| (s, i)).collect();
            rng.shuffle(&mut pool);
            pool
        })
        .collect();
    let mut drawn = Vec::with_capacity(n);
    while drawn.len() < n && pools.iter().any(|p| !p.is_empty()) {
        for pool in pools.iter_mut() {
            if drawn.len() < n
                && let Some(pick) = pool.pop()
            {
                drawn.push(pick);
            }
        }
    }
    drawn
}

/// How many shards each micro-batch is cut into with `devices` ranks: `shards`,
/// or one per rank when `shards` is 1 (the configuration check requires a
/// multiple of `devices` otherwise).
pub fn shards(shards: usize, devices: usize) -> usize {
    if shards <= 1 { devices.max(1) } else { shards }
}

/// Mean loss (text + weighted mean WAT) over a split, without gradients.
pub fn validation_loss<B: Backend>(
    model: &WorldModel<B>,
    rows: &[Encoded],
    config: &TrainConfig,
    pad: u32,
) -> f64 {
    validation_loss_shared(model, rows, config, pad, &World::solo())
}

/// [`validation_loss`] with the split's batches shared between the ranks of
/// `world` (rank r takes every r-th batch) and their sums added.
fn validation_loss_shared<B: Backend>(
    model: &WorldModel<B>,
    rows: &[Encoded],
    config: &TrainConfig,
    pad: u32,
    world: &World,
) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    let device = model.text.rotary.cos.device();
    let chunks: Vec<&[Encoded]> =
        rows.chunks(config.batch_size).enumerate().filter(|(i, _)| i % world.size == world.rank).map(|(_, c)| c).collect();
    let losses = |chunk: &[Encoded]| {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let (text, wat) = model.losses(&collate::<B>(&refs, pad, &device));
        let exits = wat.len();
        (std::iter::once(text).chain(wat).map(|l| l.cast(FloatDType::F32)).collect::<Vec<_>>(), exits)
    };
    let sizes: Vec<(usize, usize)>;
    let read = if crate::backend::runs_on_host::<B>() {
        // On the CPU the batches run side by side, each on a thread of its own.
        let done = crate::backend::on_threads(chunks.len(), |i| {
            let (losses, exits) = losses(chunks[i]);
            (values(Tensor::cat(losses, 0)), exits)
        });
        sizes = chunks.iter().zip(&done).map(|(c, (_, exits))| (c.len(), *exits)).collect();
        done.into_iter().flat_map(|(read, _)| read).collect()
    } else {
        // Each batch's losses stay on the device until the split is done, then are
        // read back in one transfer (a read per loss waited for a GPU each time).
        let (all, exits): (Vec<_>, Vec<_>) = chunks.iter().map(|c| losses(c)).unzip();
        sizes = chunks.iter().zip(exits).map(|(c, e)| (c.len(), e)).collect();
        let all: Vec<_> = all.into_iter().flatten().collect();
        if all.is_empty() { Vec::new() } else { values(Tensor::cat(all, 0)) }
    };
    let mut total = 0.0;
    let mut at = 0;
    for (rows, exits) in sizes {
        let (text, wat) = (read[at], &read[at + 1..at + 1 + exits]);
        at += 1 + exits;
        let wat_mean = wat.iter().sum::<f64>() / exits.max(1) as f64;
        total += (text + config.wat_loss_weight * wat_mean) * rows as f64;
    }
    world.sum_values::<B>(&[total], &device)[0] / rows.len() as f64
}

/// The global L2 norm of the gradients (before clipping). Each parameter's sum of
/// squares is computed on the device and all of them are read back in one
/// transfer, then added on the host in parameter order: on a GPU a read per
/// parameter waited for the device once per tensor, every step.
fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    struct Sums<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        sums: Vec<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sums<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                // f32 holds any float dtype's sum exactly.
                self.sums.push(g.square().sum().cast(FloatDType::F32));
            }
        }
    }
    let mut visitor = Sums::<B> { grads, sums: Vec::new() };
    model.visit(&mut visitor);
    if visitor.sums.is_empty() {
        return 0.0;
    }
    values(Tensor::cat(visitor.sums, 0)).iter().sum::<f64>().sqrt()
}
