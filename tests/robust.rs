//! Runs that cannot be corrupted and inputs that fail at `validate` (issue 19): a
//! run killed at random points ends exactly as an uninterrupted one, a second run of
//! the same experiment is refused, every run ends with a final status, run
//! directories work from anywhere, and each bad input is exit 2 naming what and where.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn meta(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap()
}

/// The final checkpoint: its step, cursor and a digest of its weights' values.
fn final_checkpoint(run: &Path) -> (usize, String, String) {
    use wmx::rundir::checkpoint::Which;
    let opened = wmx::rundir::OpenedRun::open(run, Which::Latest).unwrap();
    let model = opened.model::<wmx::backend::Cpu>(&Default::default()).unwrap();
    let cursor = std::fs::read_to_string(opened.model_path.with_file_name("cursor.json")).unwrap();
    (opened.step, cursor, wmx::model::world::weights_digest(&model))
}

/// Names under `checkpoints/` that are not complete checkpoints.
fn leftovers(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("step-"))
        .collect()
}

/// A small deterministic generator for kill times (no dependency needed).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn chaos_sigkill_at_random_points_ends_as_an_uninterrupted_run() {
    let straight = tempfile::tempdir().unwrap();
    let exp = experiment(straight.path());
    let started = Instant::now();
    run_ok(straight.path(), &exp);
    let full = started.elapsed().max(Duration::from_secs(5));
    let run = run_dir(straight.path());
    let (expected, expected_checkpoint) = (trajectory(&run), final_checkpoint(&run));
    let expected_accuracy = meta_accuracy(&run);

    let chaos = tempfile::tempdir().unwrap();
    let exp = experiment(chaos.path());
    let steps = expected.len();
    let mut rng = Lcg(19);
    // Kill points: during start-up, at 10 random steps of training (each followed by
    // up to 150 ms more, to land in steps and checkpoint writes alike), and during the
    // final evaluation.
    let mut targets: Vec<usize> = (0..10).map(|_| 2 + rng.below(steps as u64 - 3) as usize).collect();
    targets.sort_unstable();
    let mut plan = vec![Kill::After(Duration::from_millis(300))];
    plan.extend(targets.into_iter().map(|rows| Kill::AtRows(rows + 1, Duration::from_millis(rng.below(150)))));
    plan.push(Kill::AtRows(steps + 1, Duration::from_millis(200 + rng.below(400))));
    let mut kills = 0;
    for kill in plan {
        let mut child = wmx(chaos.path())
            .args(["run", exp.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (rows, extra) = match kill {
            Kill::After(wait) => (0, wait),
            Kill::AtRows(rows, extra) => (rows, extra),
        };
        let started = Instant::now();
        while started.elapsed() < full * 3 && metrics_rows(chaos.path()) < rows && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(extra);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 10, "only {kills} kills landed before the run finished");
    // Whatever state the last kill left, one more run finishes it (or reports it complete).
    run_ok(chaos.path(), &exp);
    let run = run_dir(chaos.path());
    assert_eq!(trajectory(&run), expected, "after {kills} kills");
    assert_eq!(final_checkpoint(&run), expected_checkpoint);
    assert_eq!(meta_accuracy(&run), expected_accuracy);
    assert_eq!(meta(&run)["status"], "complete");
    assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
}

enum Kill {
    After(Duration),
    /// Once `metrics.csv` has this many lines, then after the duration.
    AtRows(usize, Duration),
}

fn meta_accuracy(run: &Path) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/summary.json")).unwrap()).unwrap();
    summary["accuracy"].clone()
}

#[test]
fn a_second_run_of_the_same_experiment_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let mut first = start_run(dir.path(), &exp, 3);
    let second = wmx(dir.path()).args(["run", exp.to_str().unwrap()]).output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        text(&second).contains(&format!("in use by another wmx (pid {})", first.id())),
        "{}",
        text(&second)
    );
    assert!(first.wait().unwrap().success());
    let run = run_dir(dir.path());
    assert_eq!(meta(&run)["status"], "complete");
    // Every step is there once, in order.
    let steps: Vec<usize> = trajectory(&run).iter().map(|(s, _)| s.parse().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len()).collect::<Vec<_>>());
    // The finished run's lock is free again: `wmx ls` shows it complete.
    let ls = wmx(dir.path()).arg("ls").output().unwrap();
    assert!(text(&ls).contains("complete"), "{}", text(&ls));
}

#[test]
fn sweep_members_that_resolve_to_one_run_train_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let exp = sweep_experiment(dir.path(), "\"train.batch_size\" = [16, 16]");
    let out = wmx(dir.path()).args(["sweep", exp.to_str().unwrap(), "--jobs", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("member 2/2 resolves to the same run as member 1"), "{}", text(&out));
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs/tiny")).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
    assert_eq!(runs.len(), 1);
    let run = run_dir(dir.path());
    let steps: Vec<usize> = trajectory(&run).iter().map(|(s, _)| s.parse().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len()).collect::<Vec<_>>());
}

#[test]
fn a_run_killed_outright_shows_as_died_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let mut child = start_run(dir.path(), &exp, 10);
    child.kill().unwrap();
    child.wait().unwrap();
    let ls = wmx(dir.path()).arg("ls").output().unwrap();
    assert!(text(&ls).contains("died"), "{}", text(&ls));
    let out = run_ok(dir.path(), &exp);
    assert!(text(&out).contains("ended without a final status"), "{}", text(&out));
    let run = run_dir(dir.path());
    let meta = meta(&run);
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["resumes"], 1);
    // The report is drawn after the final status.
    let report = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(report.contains("complete") && !report.contains("running"), "{report}");
}

#[test]
fn sigterm_checkpoints_and_ends_interrupted_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let child = start_run(dir.path(), &exp, 6);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let run = run_dir(dir.path());
    let meta = meta(&run);
    assert_eq!(meta["status"], "interrupted");
    assert!(meta["reason"].as_str().unwrap().contains("signal"), "{meta}");
    assert!(meta["ended"].is_string());
    assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
}

#[test]
fn sigterm_during_evaluation_ends_interrupted_and_the_next_run_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    // More questions than the tiny curriculum's five, one epoch: evaluation takes a
    // while, in many groups of batches (on the CPU each group is a batch per core,
    // and a signal is heard between groups).
    let curriculum = std::fs::read_to_string(dir.path().join("curriculum.toml")).unwrap();
    std::fs::write(dir.path().join("curriculum.toml"), curriculum.replace("count = 48", "count = 2400")).unwrap();
    let child = wmx(dir.path())
        .args(["run", exp.to_str().unwrap(), "--set", "train.epoch_scale=0.05"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_dir(dir.path().join("runs/tiny")).ok().into_iter().flatten().flatten()
        .find_map(|e| std::fs::read_to_string(e.path().join("log.txt")).ok()).unwrap_or_default();
    let started = std::time::Instant::now();
    while !log().contains("evaluating on test: ") {
        assert!(started.elapsed().as_secs() < 300, "no evaluation progress: {}", log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", log());
    let run = run_dir(dir.path());
    assert_eq!(meta(&run)["status"], "interrupted");
    assert!(log().contains("interrupted: evaluation stopped after"), "{}", log());
    assert!(!run.join("eval/summary.json").exists());
    let again = wmx(dir.path()).args(["run", exp.to_str().unwrap(), "--set", "train.epoch_scale=0.05"]).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(meta(&run)["status"], "complete");
    assert!(run.join("eval/summary.json").is_file());
}

/// A file-size limit (`ulimit -f`, with SIGXFSZ ignored) makes writes fail as a full
/// disk does.
#[test]
fn a_full_disk_during_a_checkpoint_fails_the_run_with_that_error_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {} run {}",
        env!("CARGO_BIN_EXE_wmx"),
        exp.display()
    );
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("checkpoint"), "the checkpoint's error is shown: {}", text(&out));
    assert!(text(&out).contains("File too large"), "the operating system's reason: {}", text(&out));
    let run = run_dir(dir.path());
    let meta = meta(&run);
    assert_eq!(meta["status"], "failed");
    assert!(meta["reason"].as_str().unwrap().contains("File too large"), "{meta}");
    assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
    // With room again, the same command trains it to the end.
    run_ok(dir.path(), &exp);
    assert_eq!(super_meta_status(&run), "complete");
}

fn super_meta_status(run: &Path) -> String {
    meta(run)["status"].as_str().unwrap().to_string()
}

#[test]
fn a_finished_run_answers_from_another_directory_and_refuses_what_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    run_ok(dir.path(), &exp);
    let run = run_dir(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let infer = |args: &[&str]| {
        let mut cmd = wmx(elsewhere.path());
        cmd.arg("infer").arg(&run).args(args);
        cmd.output().unwrap()
    };
    let out = infer(&["What is 2 + 3?"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = wmx(elsewhere.path()).arg("eval").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A question longer than the model's positions is refused, naming the key.
    let long: Vec<String> = (0..400).map(|i| i.to_string()).collect();
    let out = infer(&[&format!("What is the sum of {}?", long.join(" + "))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model.max_position_embeddings"), "{}", text(&out));

    // Checkpoints by name; a corrupt newest one is an error naming it, not an older one silently.
    let mut steps: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    steps.sort();
    assert!(steps.len() >= 2, "{steps:?}");
    assert!(infer(&["--checkpoint", "best", "What is 2 + 3?"]).status.success());
    let older = format!("step-{}", steps[0].trim_start_matches("step-").parse::<usize>().unwrap());
    let newest = run.join("checkpoints").join(steps.last().unwrap());
    let mut bytes = std::fs::read(newest.join("model.mpk")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(newest.join("model.mpk"), bytes).unwrap();
    let out = infer(&["What is 2 + 3?"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(steps.last().unwrap()) && text(&out).contains("corrupt"), "{}", text(&out));
    let out = infer(&["--checkpoint", &older, "What is 2 + 3?"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = infer(&["--checkpoint", "step-999999", "What is 2 + 3?"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A hand-edited config.toml: checked as validate checks it, and against the weights.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(run.join("config.toml"), config.replace("layers = [\n    0,\n    1,\n]", "layers = []")).unwrap();
    let out = infer(&["--checkpoint", &older, "What is 2 + 3?"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("fusion.layers") && text(&out).contains("config.toml"), "{}", text(&out));
    std::fs::write(run.join("config.toml"), config.replace("hidden_size = 32\nintermediate_size = 64\nnum_hidden_layers", "hidden_size = 64\nintermediate_size = 64\nnum_hidden_layers")).unwrap();
    assert_ne!(std::fs::read_to_string(run.join("config.toml")).unwrap(), config, "the edit applied");
    let out = infer(&["--checkpoint", &older, "What is 2 + 3?"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("shape"), "{}", text(&out));
}

/// `wmx validate` on the tiny experiment with one key set: exit code and output.
fn validate_with(set: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let mut cmd = wmx(dir.path());
    cmd.arg("validate").arg(&exp);
    for s in set {
        cmd.args(["--set", s]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn what_run_cannot_do_fails_at_validate_naming_the_key() {
    for (set, key) in [
        ("model.head_dim=1", "model.head_dim"),
        ("sandbox.stack_kib=4096", "sandbox.stack_kib"),
        ("wat.max_tokens=16", "wat.max_tokens"),
        ("model.max_position_embeddings=16", "train.max_seq_len"),
        ("train.max_seq_len=12", "train.max_seq_len"),
        ("model.max_position_embeddings=100000000000", "model.max_position_embeddings"),
        ("model.vocab_size=100000000000", "model.vocab_size"),
        ("name=\"/tmp/elsewhere\"", "name"),
        ("name=\"..\"", "name"),
    ] {
        let (code, out) = validate_with(&[set], &[]);
        assert_eq!(code, Some(2), "{set}: {out}");
        assert!(out.contains(key), "{set}: {out}");
        assert!(!out.contains("panicked"), "{set}: {out}");
    }
    let (code, out) = validate_with(&[], &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn only_section_key_variables_override_the_config() {
    let (code, out) = validate_with(&[], &[("WMX_SOMETHING_ELSE", "1"), ("WMX_CUBLAS", "0")]);
    assert_eq!(code, Some(0), "unrelated WMX_ variables are ignored: {out}");
    // A section key applies (here, a value the checks refuse, naming the variable).
    let (code, out) = validate_with(&[], &[("WMX_TRAIN__BATCH_SIZE", "0")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("WMX_") && out.contains("train.batch_size"), "{out}");
    let (code, out) = validate_with(&[], &[("WMX_TRAIN__BATCH_SIZ", "7")]);
    assert_eq!(code, Some(2), "a misspelt key in a section is named: {out}");
    assert!(out.contains("key `train.batch_siz`"), "{out}");
}

#[test]
fn compiling_is_bounded_by_the_modules_shape() {
    // 2,000 functions of 50,000 locals each, in a binary module under 64 KB of source.
    let mut wasm = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    let section = |id: u8, body: Vec<u8>, out: &mut Vec<u8>| {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend(body);
    };
    let n = 2000u64;
    let mut types = Vec::new();
    leb(1, &mut types);
    types.extend([0x60, 0x00, 0x01, 0x7c]); // () -> f64
    section(1, types, &mut wasm);
    let mut funcs = Vec::new();
    leb(n, &mut funcs);
    for _ in 0..n {
        funcs.push(0);
    }
    section(3, funcs, &mut wasm);
    let mut exports = Vec::new();
    leb(1, &mut exports);
    leb(7, &mut exports);
    exports.extend(b"compute");
    exports.extend([0x00, 0x00]);
    section(7, exports, &mut wasm);
    let mut code = Vec::new();
    leb(n, &mut code);
    for _ in 0..n {
        let mut body = Vec::new();
        leb(1, &mut body);
        leb(50_000, &mut body);
        body.push(0x7e); // i64
        body.extend([0x00, 0x0b]); // unreachable; end
        leb(body.len() as u64, &mut code);
        code.extend(body);
    }
    section(10, code, &mut wasm);
    let escaped: String = wasm.iter().map(|b| format!("\\{b:02x}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("wide.wat");
    std::fs::write(&program, format!("(module binary \"{escaped}\")")).unwrap();
    let started = Instant::now();
    let out = wmx(dir.path()).arg("exec").arg(&program).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("functions"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(5), "refused before compiling");
}

fn leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn a_fifo_in_the_files_directory_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("n.txt"), "7").unwrap();
    let status = Command::new("mkfifo").arg(files.join("pipe")).status().unwrap();
    assert!(status.success());
    let program = dir.path().join("p.wat");
    std::fs::write(&program, "(module (func (export \"compute\") (result f64) (f64.const 1)))").unwrap();
    let mut child = wmx(dir.path())
        .arg("exec")
        .arg(&program)
        .args(["--policy", "system", "--files"])
        .arg(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("wmx exec hung on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pipe") && text(&out).contains("not a regular file"), "{}", text(&out));
}

#[test]
fn training_on_several_devices_asks_for_cuda_and_shards_that_share_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    // The CPU backend cannot sum across processes: exit 2 naming the key, nothing written.
    let out = wmx(dir.path()).args(["run"]).arg(&exp).args(["--devices", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("train.devices") && text(&out).contains("NCCL"), "{}", text(&out));
    assert!(!dir.path().join("runs").exists(), "nothing is written");
    // Shards that do not split evenly between the devices fail at validate.
    let (code, out) = validate_with(&["train.devices=2", "train.shards=3"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("train.shards") && out.contains("multiple of train.devices"), "{out}");
    let (code, out) = validate_with(&["train.devices=2", "train.shards=4"], &[]);
    assert_eq!(code, Some(0), "{out}");
}
