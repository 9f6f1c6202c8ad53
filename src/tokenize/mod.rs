//! Tokenizers: the text stream's (a Hugging Face `tokenizer.json`, e.g. Qwen3's, or
//! a BPE trained on the curriculum) and, in `wat`, the WAT stream's closed vocabulary.

pub mod wat;

use std::path::Path;

/// Errors loading or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{path}: cannot load tokenizer: {message}")]
    Load { path: String, message: String },
    #[error("tokenizer: {0}")]
    Codec(String),
    #[error("WAT tokenizer: {0}")]
    Wat(wat::UnknownToken),
    #[error("{what}: {tokens} tokens, where `{key}` allows {limit}")]
    TooLong { what: &'static str, tokens: usize, limit: usize, key: &'static str },
}

/// Each token's `(start, end)` character range in the encoded text.
pub type Offsets = Vec<(usize, usize)>;

/// The text stream's tokenizer: encodes and decodes exactly as transformers does.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<TextTokenizer, TokenizeError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizeError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(TextTokenizer { inner })
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizeError::Codec(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// [`encode`](Self::encode) with each token's character range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Offsets), TokenizeError> {
        let encoding = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(|e| TokenizeError::Codec(e.to_string()))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizeError::Codec(e.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Special tokens of a tokenizer trained here: chat markup, the computed span, and
/// the placeholder a bound argument becomes under `model.arguments = "placeholder"`.
pub const SPECIAL_TOKENS: [&str; 6] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<computed>",
    "</computed>",
    "<|arg|>",
];

impl TextTokenizer {
    /// Trains a byte-level BPE on `texts` (the curriculum), Qwen-style: digits are
    /// split one per token, and [`SPECIAL_TOKENS`] are single tokens.
    pub fn train_bpe<'a>(
        texts: impl Iterator<Item = &'a str> + Send,
        vocab_size: usize,
    ) -> Result<TextTokenizer, TokenizeError> {
        use tokenizers::models::TrainerWrapper;
        use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::{AddedToken, DecoderWrapper, ModelWrapper, PreTokenizerWrapper};

        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let mut inner = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let mut trainer = TrainerWrapper::BpeTrainer(
            BpeTrainerBuilder::new()
                .vocab_size(vocab_size)
                .show_progress(false)
                .special_tokens(specials.clone())
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .build(),
        );
        inner
            .train(&mut trainer, texts)
            .map_err(|e| TokenizeError::Codec(format!("training BPE: {e}")))?;
        inner.add_special_tokens(&specials);
        Ok(TextTokenizer { inner })
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), TokenizeError> {
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| TokenizeError::Codec(e.to_string()))?;
        crate::fs::write_atomic(path, json.as_bytes())
            .map_err(|e| TokenizeError::Codec(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_bpe_splits_digits_keeps_specials_and_round_trips() {
        let texts = [
            "What is 12 * 7? The answer is 84.",
            "Add 1,234.5 and 6.",
            "Count the 's' in \"sandbox\"",
        ];
        let corpus: Vec<&str> = texts.iter().copied().cycle().take(60).collect();
        let tokenizer = TextTokenizer::train_bpe(corpus.into_iter(), 300).unwrap();
        let text = "<|im_start|>user\nWhat is 1234 + 5?<|im_end|>\n<computed>1239</computed> The answer is 1239.";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        for special in SPECIAL_TOKENS {
            let id = tokenizer.token_id(special).unwrap();
            assert_eq!(tokenizer.encode(special).unwrap(), vec![id]);
        }
        let digits = tokenizer.encode("1234").unwrap();
        assert_eq!(digits.len(), 4, "digits are one token each");
        let dir = tempfile::tempdir().unwrap();
        tokenizer.save(&dir.path().join("tokenizer.json")).unwrap();
        let reloaded = TextTokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
        assert_eq!(reloaded.encode(text).unwrap(), ids);
    }
}
