//! `wmx bench train`: the training throughput of an experiment's text stream.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::Experiment;
use crate::model::qwen3::Qwen3Config;

use super::{Measured, Phases, median};

/// Training throughput of the experiment's text stream (what the PyTorch
/// reference trains): forward, cross-entropy over every position, backward and
/// an AdamW step, timed from the host with the device synchronised.
pub struct TrainBench<'a> {
    pub experiment: &'a Experiment,
    pub batch: usize,
    pub seq: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Also time the step's phases apart ([`Phases`]).
    pub phases: bool,
    /// Sample the host's stacks over the timed steps into this file ([`crate::profile`]).
    pub host_profile: Option<&'a std::path::Path>,
    pub backend: &'static str,
}

fn random_ids<B: Backend>(batch: usize, n: usize, vocab: usize, salt: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i32> = (0..batch * n)
        .map(|i| (((i + salt) * 7919 + 13 * salt + 1) % vocab) as i32)
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, n]), device)
}

impl crate::backend::BackendTask for TrainBench<'_> {
    type Output = Result<Measured, String>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Measured, String> {
        use burn::module::Module;
        use burn::optim::{GradientsParams, Optimizer};
        type A<B> = Autodiff<B>;
        let e = self.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype)?;
        crate::backend::seed::<A<B>>(&device, 0);
        let config = Qwen3Config::from_experiment(&e.model);
        let mut model = config.init::<A<B>>(&device);
        let parameters = model.num_params() as u64;
        let mut optim = crate::train::adamw::AdamW::new(e.train.weight_decay as f32)
            .init::<A<B>, crate::model::qwen3::Qwen3ForCausalLM<A<B>>>(None);
        let (batch, seq) = (self.batch, self.seq);
        let mask = Tensor::<A<B>, 2>::ones([batch, seq], &device);
        let sync = || B::sync(&device).map_err(|e| format!("{e:?}"));
        // Warm-up steps, timed steps, then (with `phases`) as many again with the
        // device synchronised after each phase.
        let timed = self.warmup + self.repeats;
        let steps = timed + if self.phases { self.repeats } else { 0 };
        let mut seconds = Vec::new();
        let mut each: [Vec<f64>; 3] = Default::default();
        let mut profile = None;
        for i in 0..steps {
            let split = i >= timed;
            if i == self.warmup
                && let Some(path) = self.host_profile
            {
                profile = Some(crate::profile::HostProfile::start(path)?);
            }
            if i == timed
                && let Some(p) = profile.take()
            {
                p.finish()?;
            }
            let ids = random_ids::<A<B>>(batch, seq, config.vocab_size, i, &device);
            let targets = random_ids::<A<B>>(batch, seq, config.vocab_size, i + 1, &device);
            sync()?;
            let t = Instant::now();
            let loss = model.masked_loss(ids, targets, mask.clone());
            if split {
                sync()?;
            }
            let forward = t.elapsed().as_secs_f64();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            if split {
                sync()?;
            }
            let backward = t.elapsed().as_secs_f64();
            model = optim.step(e.train.learning_rate, model, grads);
            sync()?;
            let step = t.elapsed().as_secs_f64();
            if split {
                for (v, s) in each.iter_mut().zip([forward, backward - forward, step - backward]) {
                    v.push(s);
                }
            } else if i >= self.warmup {
                seconds.push(step);
            }
        }
        if let Some(p) = profile.take() {
            p.finish()?;
        }
        let median_s = median(&seconds);
        let phases_s = self.phases.then(|| Phases {
            forward: median(&each[0]),
            backward: median(&each[1]),
            optimizer: median(&each[2]),
        });
        Ok(Measured {
            what: "train".into(),
            backend: self.backend.into(),
            dtype: format!("{:?}", e.model.dtype).to_lowercase(),
            parameters,
            batch,
            seq,
            tokens_per_s: Some((batch * seq) as f64 / median_s),
            seconds,
            median_s,
            phases_s,
        })
    }
}

