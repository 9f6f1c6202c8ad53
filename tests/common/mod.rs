//! What the end-to-end tests share: a tiny experiment and its curriculum, the `wmx`
//! binary, and readers of a run directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const CURRICULUM: &str = r#"
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

pub fn experiment(dir: &Path) -> PathBuf {
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

pub fn wmx(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wmx"));
    cmd.current_dir(dir);
    cmd
}

/// Runs `wmx run` on the experiment to completion and returns its output.
pub fn run_ok(dir: &Path, exp: &Path) -> std::process::Output {
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

pub fn run_dir(dir: &Path) -> PathBuf {
    let runs = dir.join("runs/tiny");
    std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap()
}

/// Step → (learning rate, text loss, WAT losses, grad norm) as written.
pub fn trajectory(run: &Path) -> Vec<(String, String)> {
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

/// Lines in `metrics.csv` (header included) of the tiny run under `dir`.
pub fn metrics_rows(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("runs/tiny"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .find_map(|e| std::fs::read_to_string(e.path().join("metrics.csv")).ok())
        .map_or(0, |t| t.lines().count())
}

/// Waits (up to a minute) until the run under `dir` has written `rows` lines of metrics.
pub fn wait_for_rows(dir: &Path, rows: usize) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let written = metrics_rows(dir);
        if written >= rows {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `wmx run` on the experiment in `dir` (output discarded) and waits until it
/// has written `rows` lines of metrics.
pub fn start_run(dir: &Path, exp: &Path, rows: usize) -> std::process::Child {
    let child = wmx(dir)
        .args(["run", exp.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_rows(dir, rows);
    child
}

/// The tiny experiment in `dir` with a `[sweep]` table of `axes` (`"key" = [values]` lines).
pub fn sweep_experiment(dir: &Path, axes: &str) -> PathBuf {
    let exp = experiment(dir);
    let mut toml = std::fs::read_to_string(&exp).unwrap();
    toml.push_str(&format!("[sweep]\n{axes}\n"));
    std::fs::write(&exp, toml).unwrap();
    exp
}
