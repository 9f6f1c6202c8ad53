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
    let out = wmx(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
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
    // The text stream is frozen, as in the seed: the run's is the checkpoint's.
    let (pretrained, _) =
        wmx::model::qwen3::Qwen3ForCausalLM::<Cpu>::from_hf_dir(&checkpoint, &Default::default()).unwrap();
    let pretrained: Vec<(String, Vec<f32>)> = wmx::model::world::named_tensors(&pretrained)
        .unwrap()
        .into_iter()
        .map(|(name, (_, values))| (name, values.into_iter().map(bf16).collect()))
        .collect();
    assert_eq!(text_tensors(&run, "latest"), pretrained);
    // `train.parameters = "all"` trains it too: every text layer moved (at a rate
    // whose steps are more than a bf16 unit; shorter programs, for a shorter
    // evaluation).
    args.extend(["train.parameters=all", "train.learning_rate=1e-2", "wat.max_tokens=96"].map(|kv| ["--set".to_string(), kv.to_string()]).concat());
    let all_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = wmx(dir, &all_args);
    assert!(out.status.success(), "{}", text(&out));
    let all = std::fs::read_dir(dir.join("runs/qwen3-0.6b"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && *p != run)
        .unwrap();
    assert!(std::fs::read_to_string(all.join("meta.json")).unwrap().contains("\"complete\""));
    let trained = text_tensors(&all, "latest");
    for ((name, before), (_, after)) in pretrained.iter().zip(&trained) {
        if name.contains(".layers.") && name.ends_with("proj.weight") {
            assert_ne!(before, after, "{name} did not train");
        }
    }
    // transformers 4.x's config.json style (a top-level rope_theta), an untied head:
    // the same file validates, its shapes taken from there.
    let old = small_qwen3(&dir.join("qwen3-old-style"), false, false);
    let out = wmx(dir, &["validate", file.to_str().unwrap(), "--set", &format!("model.checkpoint={}", old.display())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("12 layers × 32 hidden"), "{}", text(&out));
}

/// The Python that has torch and transformers (`.ci/run` makes a virtual
/// environment and names it in `WMX_TRANSFORMERS_PYTHON`).
fn transformers_python() -> PathBuf {
    std::env::var_os("WMX_TRANSFORMERS_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"))
}

/// The tiny experiment trained to completion in `dir`; its run directory.
fn trained_tiny(dir: &Path) -> PathBuf {
    let exp = common::experiment(dir);
    common::run_ok(dir, &exp);
    common::run_dir(dir)
}

#[test]
fn an_exported_run_loads_in_transformers_with_the_same_logits() {
    use burn::tensor::backend::Backend as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_tiny(dir);
    let out = dir.join("exported");
    let shown = wmx(dir, &["export", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--checkpoint", "best"]);
    assert!(shown.status.success(), "{}", text(&shown));
    for file in ["config.json", "model.safetensors", "tokenizer.json", "worldmodel.safetensors", "worldmodel.json"] {
        assert!(out.join(file).is_file(), "no {file}: {}", text(&shown));
    }
    // The whole WorldModel's tensors are the checkpoint's, named as worldmodel.json lists them.
    let opened = wmx::rundir::OpenedRun::open(&run, "best".parse().unwrap()).unwrap();
    let device = Default::default();
    Cpu::seed(&device, 0);
    let model = opened.model::<Cpu>(&device).unwrap();
    let description: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("worldmodel.json")).unwrap()).unwrap();
    let listed = description["tensors"].as_array().unwrap();
    let bytes = std::fs::read(out.join("worldmodel.safetensors")).unwrap();
    let stored = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mine = wmx::model::world::named_tensors(&model).unwrap();
    assert_eq!(listed.len(), mine.len());
    assert_eq!(stored.len(), mine.len());
    for (name, (shape, values)) in &mine {
        let t = stored.tensor(name).unwrap();
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        let got: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(&got, values, "{name}");
    }
    assert!(description["wat_vocabulary"].as_array().unwrap().len() > 10);
    // transformers loads the text stream and computes wmx's logits, and the
    // exported tokenizer gives wmx's ids.
    let question = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n";
    let ids: Vec<i64> = opened.tokenizer.encode(question).unwrap().into_iter().map(i64::from).collect();
    let shape = [1, ids.len()];
    let logits = wmx::model::parity::logits(&model.text, &ids, &shape, &device);
    let expected = dir.join("expected.safetensors");
    let id_bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let vocab = logits.len() / ids.len();
    let views = vec![
        ("input_ids", safetensors::tensor::TensorView::new(safetensors::Dtype::I64, shape.to_vec(), &id_bytes).unwrap()),
        ("logits", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, ids.len(), vocab], &logit_bytes).unwrap()),
    ];
    let metadata = std::collections::HashMap::from([("text".to_string(), question.to_string())]);
    std::fs::write(&expected, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
    let script = repo().join("scripts/qwen3_fixtures.py");
    let checked = std::process::Command::new(transformers_python())
        .args([script.as_os_str(), "--check-export".as_ref(), out.as_os_str(), "--expected".as_ref(), expected.as_os_str()])
        .output()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}): install torch and transformers (.ci/run does) or set WMX_TRANSFORMERS_PYTHON", transformers_python().display()));
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(text(&checked).contains("tokenizer:"), "{}", text(&checked));
}

#[test]
fn export_names_a_missing_run_or_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wmx(tmp.path(), &["export", "runs/none/abc", "--out", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("runs/none/abc"), "{}", text(&out));
    assert!(!tmp.path().join("x").exists());
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32.
fn bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    f32::from_bits((bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff_0000)
}

/// The text stream's tensors of a run's checkpoint.
fn text_tensors(run: &Path, which: &str) -> Vec<(String, Vec<f32>)> {
    let opened = wmx::rundir::OpenedRun::open(run, which.parse().unwrap()).unwrap();
    let model = opened.model::<Cpu>(&Default::default()).unwrap();
    wmx::model::world::named_tensors(&model.text)
        .unwrap()
        .into_iter()
        .map(|(name, (_, values))| (name, values))
        .collect()
}

fn run_with(dir: &Path, args: &[&str]) -> Output {
    let exp = dir.join("tiny.toml");
    let mut all = vec!["run", exp.to_str().unwrap()];
    all.extend_from_slice(args);
    wmx(dir, &all)
}

/// The run directories under runs/tiny, oldest first.
fn tiny_runs(dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs/tiny"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort_by_key(|p| std::fs::metadata(p.join("config.toml")).and_then(|m| m.modified()).unwrap());
    runs
}

#[test]
fn a_run_starts_from_another_runs_weights_on_another_curriculum() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let source = trained_tiny(dir);
    // Another curriculum: subtraction beside addition.
    let other = CURRICULUM.replace("task = \"mul\"", "task = \"sub\"").replace("{a} * {b}", "{a} - {b}").replace("Multiply {a} by {b}.", "Subtract {b} from {a}.");
    std::fs::write(dir.join("other.toml"), other).unwrap();
    let from = format!("{}:best", source.display());
    // With the text stream frozen, the new run's text stream is exactly the source's best.
    let out = run_with(dir, &["--init-from", &from, "--set", "curriculum=other.toml", "--set", "train.parameters=fusion-and-wat"]);
    assert!(out.status.success(), "{}", text(&out));
    let runs = tiny_runs(dir);
    assert_eq!(runs.len(), 2);
    let started = &runs[1];
    let log = std::fs::read_to_string(started.join("log.txt")).unwrap();
    assert!(log.contains("starting from the weights of tiny/"), "{log}");
    let config = std::fs::read_to_string(started.join("config.toml")).unwrap();
    assert!(config.contains("[train.init_from]") && config.contains("state = \"weights\""), "{config}");
    assert_eq!(text_tensors(started, "latest"), text_tensors(&source, "best"));
    // It kept the source's tokenizer, which its weights index.
    assert_eq!(
        std::fs::read_to_string(started.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(source.join("tokenizer.json")).unwrap()
    );
    // The same command again is the same (complete) run: the id is the source's weights, not the path.
    let again = run_with(dir, &["--init-from", &from, "--set", "curriculum=other.toml", "--set", "train.parameters=fusion-and-wat"]);
    assert!(text(&again).contains("already complete"), "{}", text(&again));
    // A model the weights do not fit, a missing run or checkpoint: exit 2, naming it, and no run is made.
    for (args, needle) in [
        (vec!["--init-from", from.as_str(), "--set", "wat.hidden_size=64"], "wat.hidden_size"),
        (vec!["--init-from", "runs/tiny/nothing"], "runs/tiny/nothing"),
        (vec!["--init-from", &format!("{}:step-999", source.display())], "step-999"),
    ] {
        let out = run_with(dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    assert_eq!(tiny_runs(dir).len(), 2);
}

#[test]
fn a_finished_run_continues_with_more_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let source = trained_tiny(dir);
    let before = std::fs::read_to_string(source.join("metrics.csv")).unwrap();
    let out = run_with(dir, &["--continue", source.to_str().unwrap(), "--set", "train.epoch_scale=1.5"]);
    assert!(out.status.success(), "{}", text(&out));
    let continued = &tiny_runs(dir)[1];
    let log = std::fs::read_to_string(continued.join("log.txt")).unwrap();
    assert!(log.contains("continuing tiny/") && log.contains("resuming from checkpoint step 36"), "{log}");
    // Its metrics go on from the source's: the same rows, then the new epochs' steps.
    let after = std::fs::read_to_string(continued.join("metrics.csv")).unwrap();
    assert!(after.starts_with(&before), "the source's rows come first");
    assert_eq!(before.lines().count(), 1 + 36);
    assert_eq!(after.lines().count(), 1 + 54, "12 epochs of 3 steps, then 6 more");
    assert!(continued.join("eval/summary.json").is_file());
    // The source is untouched, and continuing on other data is refused, naming why.
    assert_eq!(std::fs::read_to_string(source.join("metrics.csv")).unwrap(), before);
    let out = run_with(dir, &["--continue", source.to_str().unwrap(), "--set", "train.batch_size=8"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("train.batch_size") && text(&out).contains("--init-from"), "{}", text(&out));
}
