//! The real `wmx` binary, run in fresh temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wmx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wmx"))
        .args(args)
        .current_dir(dir)
        .env_remove("WMX_TRAIN__BATCH_SIZE")
        .output()
        .expect("run wmx")
}

/// Each line of stdout as JSON (`--json` prints one object per line).
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn shipped_experiments_and_curriculum_validate() {
    for file in ["experiments/base.toml", "curricula/standard.toml"] {
        let out = wmx(&repo(), &["validate", file]);
        assert!(out.status.success(), "{file}: {}", text(&out));
        assert!(text(&out).contains("ok:"), "{}", text(&out));
    }
    // The seed's experiment needs a Hugging Face directory: without one, validate
    // says so; with the 0.6B config.json and the Qwen3 tokenizer (no weights here),
    // it validates at init = "random".
    let out = wmx(&repo(), &["validate", "experiments/qwen3-0.6b.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model.checkpoint"), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("tests/fixtures/qwen3/tokenizer/tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let config = r#"{"architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936, "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
        "rope_theta": 1000000, "rms_norm_eps": 1e-06, "tie_word_embeddings": true}"#;
    write(dir.path(), "config.json", config);
    let checkpoint = format!("model.checkpoint={}", dir.path().display());
    let out = wmx(&repo(), &["validate", "experiments/qwen3-0.6b.toml", "--set", &checkpoint]);
    assert_eq!(out.status.code(), Some(2), "no weights for pretrained: {}", text(&out));
    assert!(text(&out).contains("safetensors"), "{}", text(&out));
    let out = wmx(&repo(), &["validate", "experiments/qwen3-0.6b.toml", "--set", &checkpoint, "--set", "model.init=random"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("[3, 7, 11]"), "{}", text(&out));
    // The placeholder mode needs a token the Qwen3 tokenizer lacks: refused, naming the fix.
    let out = wmx(
        &repo(),
        &["validate", "experiments/qwen3-0.6b.toml", "--set", &checkpoint, "--set", "model.init=random", "--set", "model.arguments=placeholder"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model.arguments = \"tokens\""), "{}", text(&out));
    // A declared shape the checkpoint contradicts is named.
    let out = wmx(
        &repo(),
        &["validate", "experiments/qwen3-0.6b.toml", "--set", &checkpoint, "--set", "model.init=random", "--set", "model.hidden_size=512"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model.hidden_size"), "{}", text(&out));
}

/// Each bad file exits 2 with a message naming the key (or the problem) and the file.
#[test]
fn bad_experiment_files_exit_2_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let curriculum = repo().join("curricula/standard.toml");
    let head = format!("curriculum = {:?}\n", curriculum.display().to_string());
    let cases = [
        (
            "unknown.toml",
            format!("{head}[train]\nbatch_sise = 4\n"),
            vec!["train.batch_sise", "unknown.toml"],
        ),
        (
            "wrong_type.toml",
            format!("{head}[train]\nbatch_size = \"big\"\n"),
            vec!["train.batch_size", "wrong_type.toml"],
        ),
        (
            "zero_batch.toml",
            format!("{head}[train]\nbatch_size = 0\n"),
            vec!["train.batch_size", "zero_batch.toml"],
        ),
        (
            "negative_fuel.toml",
            format!("{head}[sandbox]\nfuel = -5\n"),
            vec!["sandbox.fuel", "negative_fuel.toml"],
        ),
        (
            "fusion.toml",
            format!("{head}[model]\nnum_hidden_layers = 4\n[fusion]\nlayers = [1, 9]\n"),
            vec!["fusion.layers", "fusion.toml", "out of range"],
        ),
        (
            "extends.toml",
            format!("{head}extends = \"missing-parent.toml\"\n"),
            vec!["missing-parent.toml", "extends.toml", "not found"],
        ),
        (
            "syntax.toml",
            "seed = \n".to_string(),
            vec!["syntax.toml", "line 1"],
        ),
    ];
    for (name, body, needles) in cases {
        let path = write(dir.path(), name, &body);
        let out = wmx(dir.path(), &["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        for needle in needles {
            assert!(
                text(&out).contains(needle),
                "{name}: expected {needle:?} in {}",
                text(&out)
            );
        }
    }
    let out = wmx(dir.path(), &["validate", "no-such-file.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no-such-file.toml"));
}

#[test]
fn environment_and_set_override_the_file_last_wins() {
    let out = Command::new(env!("CARGO_BIN_EXE_wmx"))
        .args([
            "validate",
            "experiments/base.toml",
            "--set",
            "fusion.layers=[0, 3]",
        ])
        .current_dir(repo())
        .env("WMX_FUSION__LAYERS", "[2]")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("[0, 3]"), "{}", text(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_wmx"))
        .args(["validate", "experiments/base.toml"])
        .current_dir(repo())
        .env("WMX_FUSION__LAYERS", "[7]")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("fusion.layers"), "{}", text(&out));
    // The backend's switches are not experiment keys.
    let mut validate = Command::new(env!("CARGO_BIN_EXE_wmx"));
    validate.args(["validate", "experiments/base.toml"]).current_dir(repo());
    for switch in ["CUBLAS", "CUDA_MEMORY", "FUSED_ADAMW", "FUSED_NORM", "FUSED_ROTARY", "FUSED_SOFTMAX", "FUSED_SWIGLU", "FUSED_HEADS", "ON_POOL"] {
        validate.env(format!("WMX_{switch}"), "0");
    }
    let out = validate.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn data_writes_verified_splits_and_prints_stage_counts() {
    let dir = tempfile::tempdir().unwrap();
    let curriculum = repo().join("curricula/standard.toml");
    let out = wmx(
        dir.path(),
        &["data", curriculum.to_str().unwrap(), "--out", "out"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    for line in [
        "arithmetic",
        "760",
        "system_operations",
        "200",
        "complex_logic",
        "820",
    ] {
        assert!(printed.contains(line), "{printed}");
    }
    let train = std::fs::read_to_string(dir.path().join("out/train.jsonl")).unwrap();
    assert_eq!(train.lines().count(), 760 + 200 + 820);
    let first: serde_json::Value = serde_json::from_str(train.lines().next().unwrap()).unwrap();
    for field in ["question", "program", "args", "value", "answer"] {
        assert!(first.get(field).is_some(), "missing {field} in {first}");
    }
    assert!(dir.path().join("out/test.jsonl").is_file());
}

#[test]
fn data_import_reports_each_rejected_example() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo().join("tests/fixtures/seed-data/system_operations_training.txt");
    let out = wmx(
        dir.path(),
        &[
            "data",
            "--import",
            seed.to_str().unwrap(),
            "--format",
            "worldmodel",
            "--out",
            "imp",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("system_operations_training.txt:1: rejected: placeholder program"),
        "{printed}"
    );
    assert!(
        printed.contains("27 examples, kept 0, rejected 27"),
        "{printed}"
    );
    let rejected = std::fs::read_to_string(
        dir.path()
            .join("imp/system_operations_training.rejected.jsonl"),
    )
    .unwrap();
    assert_eq!(rejected.lines().count(), 27);
}

#[test]
fn exec_binds_questions_and_arguments_and_reports_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let add = write(
        dir.path(),
        "add.wat",
        "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))",
    );
    let out = wmx(
        dir.path(),
        &[
            "exec",
            add.to_str().unwrap(),
            "--question",
            "What is 1,200 + -3.5?",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("value 1196.5"), "{}", text(&out));
    let out = wmx(
        dir.path(),
        &[
            "exec",
            add.to_str().unwrap(),
            "--args",
            "3",
            "4.5",
            "--json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"]["kind"], "value");
    assert_eq!(json["outcome"]["detail"], 7.5);
    let spin = write(
        dir.path(),
        "spin.wat",
        "(module (func (export \"compute\") (result f64) (loop $l (br $l)) (f64.const 0)))",
    );
    let out = wmx(dir.path(), &["exec", spin.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("trap: out of fuel"), "{}", text(&out));
}

#[test]
fn exec_system_policy_reads_declared_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("n.txt"), "value: 77\n").unwrap();
    let curriculum = wmx::curriculum::tasks::Task::FileNumber;
    let sample = [("file", wmx::curriculum::tasks::Slot::Text("n.txt".into()))]
        .into_iter()
        .collect();
    let program = write(
        dir.path(),
        "read.wat",
        &curriculum.program(&["file"], &sample),
    );
    let args = [
        "exec",
        program.to_str().unwrap(),
        "--question",
        "Read \"n.txt\"",
    ];
    let denied = wmx(dir.path(), &args);
    assert_eq!(denied.status.code(), Some(2));
    assert!(
        text(&denied).contains("denied import `wasi_snapshot_preview1.path_open`"),
        "{}",
        text(&denied)
    );
    let mut allowed = args.to_vec();
    allowed.extend(["--policy", "system", "--files", files.to_str().unwrap()]);
    let out = wmx(dir.path(), &allowed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("value 77"), "{}", text(&out));
}

#[test]
fn generate_matches_transformers_greedy_ids() {
    let dir = repo().join("tests/fixtures/qwen3/tiny-tied");
    let prompt = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n";
    let out = wmx(
        &repo(),
        &[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            prompt,
            "--max-new-tokens",
            "32",
            "--ids",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<String> = expected
        .tensor("generated_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()).to_string())
        .collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ids.join(" "));
    let missing = wmx(&repo(), &["generate", "--model", "no/such/dir", "hi"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("no/such/dir"), "{}", text(&missing));
}

#[test]
fn a_carrier_without_its_core_slot_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[stages]]\nname = \"s\"\ncount = 4\nepochs = 1\ncarriers = [\"What is it?\"]\n[[stages.families]]\ntask = \"add\"\ncores = [\"{a} + {b}\"]\n",
    )
    .unwrap();
    let out = wmx(dir.path(), &["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("carriers") && err.contains("{core}"), "{err}");
    // Training-only frames are checked the same way, and a family's own training
    // frames need the family's own carriers.
    for (stage, family, named) in [
        ("train_carriers = [\"Work it out.\"]\n", "", "stages[0] (s).train_carriers"),
        ("", "train_carriers = [\"Say {core}.\"]\n", "families[0] (add).train_carriers"),
    ] {
        std::fs::write(
            &path,
            format!(
                "[[stages]]\nname = \"s\"\ncount = 4\nepochs = 1\ncarriers = [\"What is {{core}}?\"]\n{stage}\
                 [[stages.families]]\ntask = \"add\"\ncores = [\"{{a}} + {{b}}\"]\n{family}"
            ),
        )
        .unwrap();
        let out = wmx(dir.path(), &["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{err}");
    }
}

#[test]
fn an_intent_without_words_is_named() {
    let base = repo().join("experiments/base.toml");
    let dir = tempfile::tempdir().unwrap();
    let ok = wmx(
        dir.path(),
        &["validate", base.to_str().unwrap(), "--set", r#"selection.intents=[{op = "div", words = ["per"]}]"#],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let bad = wmx(
        dir.path(),
        &["validate", base.to_str().unwrap(), "--set", r#"selection.intents=[{op = "div", words = []}]"#],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("selection.intents[0]"), "{}", text(&bad));
}

#[test]
fn bench_parity_passes_in_f32_and_bf16_on_the_cpu() {
    // Each dtype in its own process: a device's float dtype is set once.
    for dtype in ["f32", "bf16"] {
        let out = wmx(&repo(), &["bench", "parity", "--dtype", dtype, "--json"]);
        assert!(out.status.success(), "{dtype}: {}", text(&out));
        let rows = json_lines(&out);
        assert_eq!(rows.len(), 2, "two fixtures");
        for row in rows {
            assert_eq!(row["pass"], true, "{row}");
            let scaled = row["parity"]["logits_bf16"]["max_scaled"].as_f64().unwrap();
            if dtype == "bf16" {
                assert!(scaled <= 1e-2, "{row}");
            } else {
                assert!(row["parity"]["logits"]["f32_excess"].as_f64().unwrap() <= 0.0, "{row}");
            }
        }
    }
}

#[test]
fn a_missing_checkpoint_stops_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let exp = repo().join("experiments/qwen3-0.6b.toml");
    let out = wmx(dir.path(), &["run", exp.to_str().unwrap(), "--backend", "cpu"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("model.checkpoint") && err.contains("Qwen3-0.6B") && err.contains("init = \"random\""), "{err}");
    assert!(!dir.path().join("runs").exists(), "a run directory was created");
}

#[test]
fn bench_train_times_a_step_and_with_phases_each_phase() {
    let args = ["bench", "train", "experiments/base.toml", "--batch", "1", "--seq", "16", "--warmup", "0", "--repeats", "2"];
    let plain = wmx(&repo(), &[&args[..], &["--json"]].concat());
    assert!(plain.status.success(), "{}", text(&plain));
    let row: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&plain.stdout).trim()).unwrap();
    assert_eq!(row["seconds"].as_array().unwrap().len(), 2, "{row}");
    assert!(row.get("phases_s").is_none(), "phases only when asked: {row}");

    let out = wmx(&repo(), &[&args[..], &["--phases", "--json"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let row: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let phases = &row["phases_s"];
    for phase in ["forward", "backward", "optimizer"] {
        assert!(phases[phase].as_f64().is_some_and(|s| s > 0.0), "{phase}: {row}");
    }

    // The host profile: folded stacks from a build with the `profile` feature,
    // otherwise a refusal that names the feature, before any step runs.
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("host.folded");
    let out = wmx(&repo(), &[&args[..], &["--host-profile", folded.to_str().unwrap()]].concat());
    if cfg!(feature = "profile") {
        assert!(out.status.success(), "{}", text(&out));
        let stacks = std::fs::read_to_string(&folded).unwrap();
        assert!(stacks.lines().all(|l| l.rsplit_once(' ').is_some_and(|(_, n)| n.parse::<u64>().is_ok())), "{stacks}");
    } else {
        assert!(!out.status.success());
        assert!(text(&out).contains("`profile` feature"), "{}", text(&out));
        assert!(!folded.exists());
    }
}

#[test]
fn bench_parity_trace_steps_through_every_layer_of_each_fixture() {
    let out = wmx(&repo(), &["bench", "parity", "--trace", "--dtype", "bf16", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2, "one row per fixture: {rows:?}");
    for row in &rows {
        let steps = row["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        // Each fixture has two layers of ten steps, between the embedding and the head.
        assert_eq!(names.len(), 1 + 2 * 10 + 3, "{names:?}");
        assert_eq!(names[0], "embed");
        assert!(names.contains(&"layer.1.mlp down_proj"), "{names:?}");
        assert_eq!(names.last(), Some(&"logits (whole forward)"));
        // The CPU traced against itself: every step agrees exactly.
        for s in steps {
            assert_eq!(s["differing"].as_f64(), Some(0.0), "{s}");
            assert_eq!(s["distance"]["max_abs"].as_f64(), Some(0.0), "{s}");
        }
    }
}

#[test]
fn bench_kernels_checks_each_fused_operation_in_f32_and_bf16() {
    for dtype in ["f32", "bf16"] {
        let out = wmx(&repo(), &["bench", "kernels", "--dtype", dtype, "--json"]);
        assert!(out.status.success(), "{dtype}: {}", text(&out));
        let rows = json_lines(&out);
        let ops: Vec<&str> = rows.iter().map(|r| r["check"]["op"].as_str().unwrap()).collect();
        // AdamW with clipping is checked in f32 only.
        let mut want_ops = vec!["rms_norm", "rms_norm", "rotary", "softmax causal", "softmax", "swiglu", "linear"];
        if dtype == "f32" {
            want_ops.push("adamw clip");
        }
        // A seed's initial weights, against the CPU backend's.
        want_ops.push("init");
        assert_eq!(ops, want_ops, "{rows:?}");
        for row in &rows {
            let check = &row["check"];
            assert_eq!(check["pass"], true, "{row}");
            let bound = check["bound"].as_f64().unwrap();
            let want: f32 = if dtype == "f32" { 1e-5 } else { 2e-2 };
            assert_eq!(bound, want as f64, "{row}");
            let grads = check["grads"].as_array().unwrap();
            let want_grads = match check["op"].as_str() {
                Some("rms_norm" | "swiglu" | "linear" | "adamw clip") => 2,
                Some("init") => 0,
                _ => 1,
            };
            assert_eq!(grads.len(), want_grads, "{row}");
            for g in grads {
                assert!(g[1].as_f64().unwrap() <= bound, "{row}");
            }
        }
    }
}
