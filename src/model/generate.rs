//! Greedy generation with a Hugging Face Qwen3's text stream alone (`wmx generate`).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;

use super::qwen3::Qwen3ForCausalLM;
use crate::tokenize::TextTokenizer;

/// Continue `prompt` (given to the tokenizer as is) with the model in `dir`.
pub struct Generate {
    pub dir: PathBuf,
    pub prompt: String,
    pub max_new_tokens: usize,
}

/// The new tokens, as ids and as text.
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
}

impl crate::backend::BackendTask for Generate {
    type Output = Result<Generated>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Generated> {
        let (model, config) = Qwen3ForCausalLM::<B>::from_hf_dir(&self.dir, &device)?;
        let tokenizer = TextTokenizer::from_file(&self.dir.join("tokenizer.json"))?;
        let prompt = tokenizer.encode(&self.prompt)?;
        let ids = model.generate(&prompt, self.max_new_tokens, &config.eos_ids(), &device);
        let text = tokenizer.decode(&ids)?;
        Ok(Generated { ids, text })
    }
}
