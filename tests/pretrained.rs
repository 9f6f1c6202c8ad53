//! The seed's setup end to end on the CPU: `experiments/qwen3-0.6b.toml` pointed at
//! a small random Qwen3 directory (the real Qwen3 tokenizer, 12 layers so fusion at
//! 3, 7 and 11 fits), written the Hugging Face way. Then what a trained run is good
//! for: `wmx export`, `--init-from` and continuing a finished run.

use std::path::{Path, PathBuf};
use std::process::Output;

use wmx::backend::Cpu;
use wmx::model::qwen3::Qwen3Config;

mod common;
use common::CURRICULUM;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn wmx(dir: &Path, args: &[&str]) -> Output {
    common::wmx(dir).args(args).output().unwrap()
}

/// A small random Qwen3 directory in `dir`: `config.json` in transformers 5.x's style
/// (`rope_parameters`) or 4.x's (top-level `rope_theta`), random weights saved by
/// wmx's exporter, and the real Qwen3 `tokenizer.json`.
fn small_qwen3(dir: &Path, tied: bool, new_style: bool) -> PathBuf {
    let rope = match new_style {
        true => r#""rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}"#,
        false => r#""rope_theta": 1000000.0"#,
    };
    let config = format!(
        r#"{{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 12,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "max_position_embeddings": 1024, {rope}, "rms_norm_eps": 1e-06,
        "tie_word_embeddings": {tied}, "eos_token_id": 151645}}"#
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), &config).unwrap();
    let shape = Qwen3Config::from_dir(dir).unwrap();
    let model = shape.init::<Cpu>(&Default::default());
    let tokenizer = repo().join("tests/fixtures/qwen3/tokenizer/tokenizer.json");
    wmx::model::hf::export_hf(&model, &shape, Some(&tokenizer), dir).unwrap();
    // The exporter writes the current style; put the requested one back.
    std::fs::write(dir.join("config.json"), &config).unwrap();
    dir.to_path_buf()
}

/// `qwen3-0.6b.toml` as shipped, on the CPU, pointed at `checkpoint`, on the tests'
/// small curriculum: the arguments every run here shares.
fn seed_setup(checkpoint: &Path) -> Vec<String> {
    vec![
        "--backend".into(),
        "cpu".into(),
        "--set".into(),
        format!("model.checkpoint={}", checkpoint.display()),
        "--set".into(),
        "curriculum=curriculum.toml".into(),
        "--set".into(),
        "train.epoch_scale=0.1".into(),
        "--set".into(),
        "eval.max_new_tokens=4".into(),
    ]
}

fn only_run(root: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(root.join("runs").join(name))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap()
}

#[test]
fn the_seed_experiment_runs_as_shipped_on_a_small_qwen3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("curriculum.toml"), CURRICULUM).unwrap();
    let checkpoint = small_qwen3(&dir.join("qwen3-small"), true, true);
    let file = repo().join("experiments/qwen3-0.6b.toml");
    let mut args = vec!["run".to_string(), file.display().to_string()];
    args.extend(seed_setup(&checkpoint));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = wmx(dir, &args);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run(dir, "qwen3-0.6b");
    let meta = std::fs::read_to_string(run.join("meta.json")).unwrap();
    assert!(meta.contains("\"complete\""), "{meta}");
    // The shapes came from config.json, and the run keeps them.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("num_hidden_layers = 12"), "{config}");
    assert!(config.contains("hidden_size = 32"), "{config}");
    assert!(run.join("eval/summary.json").is_file());
    assert!(run.join("report/index.html").is_file());
}
