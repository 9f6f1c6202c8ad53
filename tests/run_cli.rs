//! `wmx run` end to end on a tiny experiment: run directories, completion, and a
//! run killed with SIGKILL that resumes onto the very same trajectory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CURRICULUM: &str = r#"
seed = 1
[[stages]]
name = "arith"
count = 48
epochs = 12
[[stages.families]]
task = "add"
phrasings = ["What is {a} + {b}?"]
held_out = ["Add {a} and {b}."]
[[stages.families]]
task = "mul"
phrasings = ["What is {a} * {b}?"]
held_out = ["Multiply {a} by {b}."]
"#;

fn experiment(dir: &Path) -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/base.toml");
    std::fs::write(dir.join("curriculum.toml"), CURRICULUM).unwrap();
    let text = format!(
        r#"extends = {base:?}
name = "tiny"
curriculum = "curriculum.toml"
[model]
vocab_size = 300
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 2
num_key_value_heads = 1
head_dim = 16
[wat]
hidden_size = 32
num_attention_heads = 2
intermediate_size = 64
max_tokens = 64
[fusion]
layers = [0, 1]
num_attention_heads = 2
[train]
batch_size = 16
warmup_steps = 5
[train.checkpoint]
every_epoch_fraction = 0.3
[eval]
max_new_tokens = 8
"#
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn wmx(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wmx"));
    cmd.current_dir(dir);
    cmd
}

/// Runs `wmx run` on the experiment to completion and returns its output.
fn run_ok(dir: &Path, exp: &Path) -> std::process::Output {
    let out = wmx(dir)
        .args(["run", exp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_dir(dir: &Path) -> PathBuf {
    let runs = dir.join("runs/tiny");
    std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap()
}

/// Step → (learning rate, text loss, WAT losses, grad norm) as written.
fn trajectory(run: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|row| {
            let cols: Vec<&str> = row.split(',').collect();
            let n = cols.len();
            (cols[2].to_string(), cols[3..n - 3].join(","))
        })
        .collect()
}

/// Waits (up to a minute) until the run under `dir` has written `rows` lines of metrics.
fn wait_for_rows(dir: &Path, rows: usize) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let written = std::fs::read_dir(dir.join("runs/tiny"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("metrics.csv")).ok())
            .map_or(0, |t| t.lines().count());
        if written >= rows {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn run_completes_then_reports_instead_of_retraining() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    run_ok(dir.path(), &exp);
    let run = run_dir(dir.path());
    for file in [
        "config.toml",
        "meta.json",
        "log.txt",
        "metrics.csv",
        "tokenizer.json",
        "eval/summary.json",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/summary.json")).unwrap())
            .unwrap();
    let accuracy = summary["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(trajectory(&run).len(), 36, "12 epochs × 3 steps");
    let again = run_ok(dir.path(), &exp);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already complete"));
}

#[test]
fn killed_run_resumes_onto_the_same_trajectory() {
    let straight = tempfile::tempdir().unwrap();
    let exp = experiment(straight.path());
    run_ok(straight.path(), &exp);
    let expected = trajectory(&run_dir(straight.path()));

    let killed = tempfile::tempdir().unwrap();
    let exp = experiment(killed.path());
    let mut child = wmx(killed.path())
        .args(["run", exp.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_rows(killed.path(), 15);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = run_dir(killed.path());
    let meta = std::fs::read_to_string(run.join("meta.json")).unwrap();
    assert!(meta.contains("\"running\""), "killed mid-run: {meta}");
    let out = run_ok(killed.path(), &exp);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("resuming from checkpoint step"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(trajectory(&run), expected);
}

#[test]
fn sigint_saves_and_marks_the_run_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let mut child = wmx(dir.path())
        .args(["run", exp.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_rows(dir.path(), 5);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let run = run_dir(dir.path());
    let meta = std::fs::read_to_string(run.join("meta.json")).unwrap();
    if code == Some(0) {
        // The run finished before the signal arrived; nothing to check.
        assert!(meta.contains("\"complete\""));
        return;
    }
    assert_eq!(code, Some(130));
    assert!(meta.contains("\"interrupted\""), "{meta}");
    assert!(
        std::fs::read_to_string(run.join("log.txt"))
            .unwrap()
            .contains("interrupted")
    );
    run_ok(dir.path(), &exp);
    assert!(
        std::fs::read_to_string(run.join("meta.json"))
            .unwrap()
            .contains("\"complete\"")
    );
}
