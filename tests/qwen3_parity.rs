//! Parity with transformers on the committed random Qwen3 fixtures (built by
//! `scripts/qwen3_fixtures.py`): logits, greedy generation and the real tokenizer.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use wmx::backend::Cpu;
use wmx::model::ModelError;
use wmx::model::parity::{self, Expected};
use wmx::model::qwen3::{KvCache, Qwen3ForCausalLM};
use wmx::tokenize::TextTokenizer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen3")
        .join(name)
}

fn expected(dir: &Path) -> Expected {
    Expected::read(dir).unwrap()
}

fn logits_of(model: &Qwen3ForCausalLM<Cpu>, ids: &[i64], shape: &[usize]) -> Vec<f32> {
    parity::logits(model, ids, shape, &Default::default())
}

/// |a - b| ≤ 1e-4·|b| + 1e-5 everywhere (f32, relative).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let d = parity::distance(got, want);
    assert!(d.f32_excess <= 0.0, "{what}: {d:?}");
}

fn check_logits(name: &str) {
    let dir = fixture(name);
    let (model, _) = Qwen3ForCausalLM::<Cpu>::from_hf_dir(&dir, &Default::default()).unwrap();
    let e = expected(&dir);
    assert_close(
        &logits_of(&model, &e.input_ids, &e.input_shape),
        &e.logits,
        name,
    );
}

#[test]
fn parity_logits_tied_f32_single_file() {
    check_logits("tiny-tied");
}

#[test]
fn parity_logits_untied_bf16_sharded() {
    check_logits("tiny-untied");
}

#[test]
fn parity_greedy_generation_matches_transformers() {
    for name in ["tiny-tied", "tiny-untied"] {
        let dir = fixture(name);
        let (model, config) =
            Qwen3ForCausalLM::<Cpu>::from_hf_dir(&dir, &Default::default()).unwrap();
        let e = expected(&dir);
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let prompt = tokenizer.encode(parity::PROMPT).unwrap();
        assert_eq!(prompt, e.prompt_ids, "{name}: prompt tokens");
        let generated = model.generate(&prompt, 32, &config.eos_ids(), &Default::default());
        assert_eq!(generated, e.generated_ids, "{name}: greedy tokens");
        // The same through the library's check, as `wmx bench parity` runs it on a GPU.
        let checked = parity::check::<Cpu>(&dir, &Default::default()).unwrap();
        assert!(checked.greedy_equal && checked.logits.f32_excess <= 0.0, "{checked:?}");
    }
}

#[test]
fn cached_decoding_matches_a_full_forward() {
    let dir = fixture("tiny-untied");
    let (model, _) = Qwen3ForCausalLM::<Cpu>::from_hf_dir(&dir, &Default::default()).unwrap();
    let e = expected(&dir);
    let seq = e.input_shape[1];
    let first: Vec<i64> = e.input_ids[..seq].to_vec();
    let full = logits_of(&model, &first, &[1, seq]);
    let mut cache = KvCache::new(2);
    let device = Default::default();
    let mut stepped = Vec::new();
    // Prefill four tokens, then one at a time.
    for chunk in [&first[..4], &first[4..5], &first[5..]] {
        for piece in chunk.chunks(if chunk.len() > 1 && stepped.is_empty() {
            chunk.len()
        } else {
            1
        }) {
            let data = TensorData::new(
                piece.iter().map(|&v| v as i32).collect::<Vec<_>>(),
                [1, piece.len()],
            );
            let out = model.forward(
                Tensor::<Cpu, 2, Int>::from_data(data, &device),
                Some(&mut cache),
            );
            stepped.extend(out.into_data().to_vec::<f32>().unwrap());
        }
    }
    assert_eq!(cache.len(), seq);
    assert_close(&stepped, &full, "cached decoding");
}

#[test]
fn parity_tokenizer_matches_transformers_on_chat_texts() {
    let dir = fixture("tokenizer");
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "encode {text:?}");
        assert_eq!(
            tokenizer.decode(&ids).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decode {text:?}"
        );
    }
    // The example from NOTES.md, digits split one per token.
    let ids = tokenizer
        .encode("<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert_eq!(
        ids,
        [
            151644, 872, 198, 3838, 374, 220, 16, 17, 353, 220, 22, 30, 151645, 198, 151644, 77091,
            198
        ]
    );
}

#[test]
fn exported_safetensors_reload_to_the_same_logits() {
    let dir = fixture("tiny-untied");
    let (model, config) = Qwen3ForCausalLM::<Cpu>::from_hf_dir(&dir, &Default::default()).unwrap();
    // Kept under target/ so `scripts/qwen3_fixtures.py --check-export` can load it with transformers.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exported-tiny-untied");
    wmx::model::hf::export_hf(&model, &config, Some(&dir.join("tokenizer.json")), &out).unwrap();
    let (reloaded, _) = Qwen3ForCausalLM::<Cpu>::from_hf_dir(&out, &Default::default()).unwrap();
    let e = expected(&dir);
    assert_close(
        &logits_of(&reloaded, &e.input_ids, &e.input_shape),
        &e.logits,
        "exported",
    );
}

#[test]
fn broken_checkpoints_name_the_file_or_tensor() {
    let src = fixture("tiny-tied");
    let dir = tempfile::tempdir().unwrap();
    let err = Qwen3ForCausalLM::<Cpu>::from_hf_dir(dir.path(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let err = Qwen3ForCausalLM::<Cpu>::from_hf_dir(dir.path(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    match Qwen3ForCausalLM::<Cpu>::from_hf_dir(dir.path(), &Default::default()) {
        Err(ModelError::Shape {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!((expected, found), (vec![96, 64], vec![128, 64]));
        }
        other => panic!("expected a shape error, got {:?}", other.map(|_| ())),
    }
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let err = Qwen3ForCausalLM::<Cpu>::from_hf_dir(dir.path(), &Default::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.layers.2.input_layernorm.weight"),
        "{err}"
    );
}
