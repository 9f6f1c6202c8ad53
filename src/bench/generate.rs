//! `wmx bench generate`: greedy generation latency of an experiment's text stream.

use std::time::Instant;

use burn::tensor::{backend::Backend};

use crate::config::Experiment;
use crate::model::qwen3::Qwen3Config;

use super::{Measured, median};

/// Greedy generation latency of the experiment's text stream: a `prompt`-token
/// question, then `new` tokens through the KV cache (batch 1, no early stop).
pub struct GenerateBench<'a> {
    pub experiment: &'a Experiment,
    pub prompt: usize,
    pub new: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub backend: &'static str,
}

impl crate::backend::BackendTask for GenerateBench<'_> {
    type Output = Result<Measured, String>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Measured, String> {
        use burn::module::Module;
        let e = self.experiment;
        crate::backend::set_float_dtype::<B>(&device, e.model.dtype)?;
        crate::backend::seed::<B>(&device, 0);
        let config = Qwen3Config::from_experiment(&e.model);
        let model = config.init::<B>(&device);
        let prompt: Vec<u32> = (0..self.prompt)
            .map(|i| ((i * 7919 + 13) % config.vocab_size) as u32)
            .collect();
        let mut seconds = Vec::new();
        for i in 0..self.warmup + self.repeats {
            B::sync(&device).map_err(|e| format!("{e:?}"))?;
            let t = Instant::now();
            let out = model.generate(&prompt, self.new, &[], &device);
            B::sync(&device).map_err(|e| format!("{e:?}"))?;
            if out.len() != self.new {
                return Err(format!("generated {} tokens, not {}", out.len(), self.new));
            }
            if i >= self.warmup {
                seconds.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(Measured {
            what: "generate".into(),
            backend: self.backend.into(),
            dtype: format!("{:?}", e.model.dtype).to_lowercase(),
            parameters: model.num_params() as u64,
            batch: 1,
            seq: self.prompt + self.new,
            median_s: median(&seconds),
            seconds,
            tokens_per_s: None,
            phases_s: None,
        })
    }
}

