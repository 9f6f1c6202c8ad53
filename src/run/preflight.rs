//! Everything `wmx run` will need, checked before anything runs: `wmx validate`
//! makes the same checks.

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{Experiment, InitFrom, InitState, Loaded};
use crate::rundir::OpenedRun;
use crate::curriculum::{Curriculum, Dataset, Split};
use crate::prompt::{computed_span, prompt, shown_question};
use crate::sandbox::Sandbox;
use crate::tokenize::TextTokenizer;
use crate::tokenize::wat::WatVocab;
use crate::train::data::Encoder;

/// What [`preflight`] prepared: the curriculum, its generated dataset and the text tokenizer.
pub struct Prepared {
    /// The curriculum as loaded (for `validate` to describe).
    pub curriculum: Curriculum,
    pub dataset: Dataset,
    pub tokenizer: TextTokenizer,
    /// The run `train.init_from` names, opened at its checkpoint.
    pub source: Option<OpenedRun>,
}

/// Everything `run` will need, checked before anything runs (`wmx validate` and the
/// start of `wmx run`): the curriculum loads and generates, each program fits
/// `wat.max_tokens`, the sandbox's engine and files directory work, and a checkpoint's
/// tokenizer and `config.json` agree with the experiment. Returns the dataset.
pub fn preflight(loaded: &Loaded) -> Result<Prepared> {
    let e = &loaded.experiment;
    let key_error = |key: &str, message: String| crate::config::ConfigError::key(key, loaded.path.display().to_string(), message);
    Sandbox::new(&e.sandbox)?;
    let curriculum = Curriculum::load(&e.curriculum).with_context(|| {
        format!("{}: key `curriculum` names {}", loaded.path.display(), e.curriculum.display())
    })?;
    let dataset = curriculum.generate()?;
    if let Some(dir) = e.model.checkpoint.as_ref().filter(|_| e.model.checkpoint_tokenizer().is_some()) {
        let weights = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.path().extension().is_some_and(|x| x == "safetensors"));
        if e.model.init == crate::config::Init::Pretrained && !weights {
            return Err(key_error(
                "model.checkpoint",
                format!("{} has no *.safetensors weights for init = \"pretrained\" (init = \"random\" takes its shapes and tokenizer alone)", dir.display()),
            )
            .into());
        }
    }
    let source = match &e.train.init_from {
        Some(init) => Some(open_source(loaded, init)?),
        None => None,
    };
    // A run started from another keeps that run's tokenizer: its weights index it.
    let tokenizer = match &source {
        Some(source) => source.tokenizer.clone(),
        None => new_tokenizer(e, &dataset)?,
    };
    if e.model.arguments == crate::config::ArgumentView::Placeholder
        && tokenizer.token_id(crate::prompt::ARGUMENT_TOKEN).is_none()
    {
        return Err(key_error(
            "model.arguments",
            format!(
                "\"placeholder\" needs the token {} in the tokenizer, and {} has none; set model.arguments = \"tokens\"",
                crate::prompt::ARGUMENT_TOKEN,
                e.model.checkpoint_tokenizer().unwrap_or_default().display()
            ),
        )
        .into());
    }
    // Every example fits the sequence lengths the experiment declares.
    let wat = WatVocab::new();
    let encoder = Encoder {
        text: &tokenizer,
        wat: &wat,
        pad: 0,
        read_arguments: e.wat.read_arguments,
        arguments: e.model.arguments,
        max_text_tokens: e.train.max_seq_len.min(e.model.max_position_embeddings),
        max_wat_tokens: e.wat.max_tokens,
        copy_places: e.copy_places(),
    };
    for x in dataset.stages.iter().flat_map(|s| s.train.iter().chain(&s.validation).chain(&s.test)) {
        if let Err(err) = encoder.encode(x) {
            let key = match &err {
                crate::tokenize::TokenizeError::TooLong { key, .. } => *key,
                _ => "curriculum",
            };
            return Err(key_error(key, format!("example {}: {err}", x.id)).into());
        }
    }
    Ok(Prepared { curriculum, dataset, tokenizer, source })
}

/// Opens the run `train.init_from` names, and checks that its model has this
/// experiment's shapes and, to continue it (`state = "all"`), that this experiment
/// trains on the same data in the same order.
fn open_source(loaded: &Loaded, init: &InitFrom) -> Result<OpenedRun> {
    let e = &loaded.experiment;
    let source = OpenedRun::open(&init.run, init.checkpoint).context("train.init_from")?;
    let s = &source.experiment;
    let (m, sm) = (&e.model, &s.model);
    let mut differ: Vec<(&str, String, String)> = Vec::new();
    let mut same = |key: &'static str, here: String, there: String| {
        if here != there {
            differ.push((key, here, there));
        }
    };
    for (key, here, there) in [
        ("model.hidden_size", m.hidden_size, sm.hidden_size),
        ("model.intermediate_size", m.intermediate_size, sm.intermediate_size),
        ("model.num_hidden_layers", m.num_hidden_layers, sm.num_hidden_layers),
        ("model.num_attention_heads", m.num_attention_heads, sm.num_attention_heads),
        ("model.num_key_value_heads", m.num_key_value_heads, sm.num_key_value_heads),
        ("model.head_dim", m.head_dim, sm.head_dim),
        ("wat.hidden_size", e.wat.hidden_size, s.wat.hidden_size),
        ("wat.layers_per_segment", e.wat.layers_per_segment, s.wat.layers_per_segment),
        ("wat.num_attention_heads", e.wat.num_attention_heads, s.wat.num_attention_heads),
        ("wat.intermediate_size", e.wat.intermediate_size, s.wat.intermediate_size),
        ("wat.max_tokens", e.wat.max_tokens, s.wat.max_tokens),
        ("fusion.num_attention_heads", e.fusion.num_attention_heads, s.fusion.num_attention_heads),
    ] {
        same(key, here.to_string(), there.to_string());
    }
    same("model.tie_word_embeddings", m.tie_word_embeddings.to_string(), sm.tie_word_embeddings.to_string());
    same("fusion.layers", format!("{:?}", e.fusion.layers), format!("{:?}", s.fusion.layers));
    if init.state == InitState::All {
        let digest = |p: &Path| std::fs::read(p).map(|b| crate::rundir::checkpoint::hex_sha256(&b)).unwrap_or_default();
        same("seed", e.seed.to_string(), s.seed.to_string());
        same("curriculum", digest(&e.curriculum), digest(&s.curriculum));
        same("train.batch_size", e.train.batch_size.to_string(), s.train.batch_size.to_string());
        same("train.grad_accum", e.train.grad_accum.to_string(), s.train.grad_accum.to_string());
        same("model.arguments", format!("{:?}", m.arguments), format!("{:?}", sm.arguments));
    }
    if let Some((key, here, there)) = differ.first() {
        let what = if init.state == InitState::All {
            "continuing a run (state = \"all\") needs its model, data and batches; to start from its weights alone, use --init-from"
        } else {
            "its weights must fit this experiment's model"
        };
        let differs = match *key {
            "curriculum" => format!("the curriculum's content differs from the one {} trained on", init.run.display()),
            _ => format!("`{key}` is {here} here but {there} in {}", init.run.display()),
        };
        return Err(crate::config::ConfigError::key(
            "train.init_from",
            loaded.path.display().to_string(),
            format!("{differs}; {what}"),
        )
        .into());
    }
    Ok(source)
}

/// The text tokenizer a new run starts from: the checkpoint's, or a BPE trained on
/// the curriculum's training split (deterministic: the same curriculum gives the same
/// tokenizer).
pub(super) fn new_tokenizer(e: &Experiment, dataset: &Dataset) -> Result<TextTokenizer> {
    if let Some(path) = e.model.checkpoint_tokenizer() {
        return Ok(TextTokenizer::from_file(&path)?);
    }
    let texts: Vec<String> = dataset
        .examples(Split::Train)
        .map(|x| {
            format!(
                "{}{}{}",
                prompt(&shown_question(&x.question, e.model.arguments).0),
                computed_span(x.value),
                x.answer
            )
        })
        .collect();
    Ok(TextTokenizer::train_bpe(texts.iter().map(String::as_str), e.model.vocab_size)?)
}
