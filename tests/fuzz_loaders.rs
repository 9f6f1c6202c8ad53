//! A seeded mutation loop over the loaders that read what researchers write: the
//! experiment loader (and `validate`'s preflight of whatever it accepts), the
//! curriculum importer, the eval JSONL reader and the sandbox behind `wmx exec`.
//! Thousands of random and mutated inputs; none may panic, and every refusal names
//! the file.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use wmx::curriculum::import::{Fields, Format, import_file};
use wmx::curriculum::Verifier;
use wmx::sandbox::{Policy, Sandbox};

/// splitmix64: reproducible cases from a seed, no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that make structurally interesting damage in TOML, JSON and WAT.
const PIECES: &[&str] = &[
    "=", "[", "]", "{", "}", "\"", "'", ",", "\n", "#", ".", "0", "-1", "1e400", "nan", "inf",
    "18446744073709551616", "4294967296", "true", "\"\"", "[[stages]]", "[model]", "[sandbox]",
    "head_dim = 0", "layers = []", "(", ")", "(func", "(local i64)", "i32.const", "\\", "\u{0}",
    "é", "\u{feff}", "  ", "null", ":", "{\"question\": 1}", "max_tokens = 1",
];

/// One mutation of `text`: flip, delete or insert bytes, splice in a piece, cut it,
/// or repeat a line.
fn mutate(text: &str, rng: &mut Rng) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let piece = PIECES[rng.below(PIECES.len())];
                bytes.splice(at..at, piece.bytes());
            }
            3 => bytes.truncate(at),
            4 => {
                let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                bytes.splice(at..at, line.into_iter().chain([b'\n']));
            }
            _ => {
                let n = rng.below(8);
                let random: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, random);
            }
        }
    }
    bytes
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `case` and fails the test, with the input, when it panics.
fn no_panic<T>(what: &str, input: &[u8], case: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(case)) {
        Ok(t) => t,
        Err(_) => panic!("{what} panicked on input:\n{}", String::from_utf8_lossy(input)),
    }
}

const TINY_CURRICULUM: &str = r#"
seed = 3
[[stages]]
name = "arith"
count = 6
epochs = 1
[[stages.families]]
task = "add"
phrasings = ["What is {a} + {b}?"]
"#;

#[test]
fn the_experiment_loader_and_preflight_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("curriculum.toml"), TINY_CURRICULUM).unwrap();
    let seeds = [
        std::fs::read_to_string(repo().join("experiments/base.toml")).unwrap(),
        format!(
            "extends = {:?}\ncurriculum = \"curriculum.toml\"\n[model]\nhidden_size = 32\nhead_dim = 16\n[train]\nbatch_size = 4\n",
            repo().join("experiments/base.toml")
        ),
    ];
    let mut rng = Rng(0x19);
    let (mut refused, mut accepted) = (0, 0);
    for case in 0..2000 {
        let seed = &seeds[case % seeds.len()];
        let bytes = if case % 50 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(seed, &mut rng)
        };
        let path = dir.path().join("exp.toml");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = no_panic("config::load", &bytes, || wmx::config::load(&path, &[]));
        match loaded {
            Err(err) => {
                refused += 1;
                let message = err.to_string();
                assert!(
                    message.contains("exp.toml") || message.contains("base.toml"),
                    "the error names no file: {message}"
                );
            }
            Ok(loaded) => {
                accepted += 1;
                // What validate accepts must hold up in the rest of its checks (only the
                // tiny curriculum is generated: the shipped one takes seconds).
                if loaded.experiment.curriculum.ends_with("curriculum.toml") {
                    no_panic("preflight", &bytes, || wmx::run::preflight(&loaded).map(|_| ()).ok());
                }
            }
        }
    }
    assert!(refused > 200 && accepted > 50, "refused {refused}, accepted {accepted}");
}

fn verifier() -> Verifier {
    let policy = Policy::default();
    Verifier {
        pure: Sandbox::new(&policy).unwrap(),
        system: Sandbox::new(&policy.with_system()).unwrap(),
    }
}

#[test]
fn the_curriculum_importer_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = verifier();
    let seed_file = std::fs::read_to_string(repo().join("tests/fixtures/seed-data/basic_arithmetic_training.txt")).unwrap();
    // A few examples of the seed's format, and a JSONL of the same.
    let worldmodel: String = seed_file.split("\n\n").take(6).collect::<Vec<_>>().join("\n\n");
    let jsonl = concat!(
        r#"{"question": "What is 2 + 3?", "wat": "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))", "value": 5, "answer": "5"}"#,
        "\n",
        r#"{"question": "What is 4 * 3?", "wat": "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.mul))", "value": 12, "answer": "12"}"#,
        "\n"
    );
    let mut rng = Rng(0x1a);
    for case in 0..1500 {
        let (seed, format) = if case % 2 == 0 { (worldmodel.as_str(), Format::Worldmodel) } else { (jsonl, Format::Jsonl) };
        let bytes = mutate(seed, &mut rng);
        let path = dir.path().join("import.txt");
        std::fs::write(&path, &bytes).unwrap();
        let result = no_panic("import_file", &bytes, || import_file(&path, format, &Fields::default(), "fuzz", &verifier));
        if let Err(err) = result {
            assert!(err.to_string().contains("import.txt"), "the error names no file: {err}");
        }
    }
}

#[test]
fn the_eval_jsonl_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let fields = wmx::eval::JsonlFields { question: "question".into(), answer: "answer".into(), op: Some("op".into()) };
    let seed = concat!(
        r#"{"question": "What is 2 + 3?", "answer": "5", "op": "add"}"#,
        "\n",
        r#"{"question": "Is 7 prime?", "answer": true}"#,
        "\n",
        r#"{"question": "What is 1.5 * 2?", "answer": 3.0}"#,
        "\n"
    );
    let mut rng = Rng(0x1b);
    for _ in 0..3000 {
        let bytes = mutate(seed, &mut rng);
        let path = dir.path().join("questions.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let result = no_panic("jsonl_questions", &bytes, || wmx::eval::jsonl_questions(&path, &fields, &[]));
        if let Err(err) = result {
            assert!(err.to_string().contains("questions.jsonl"), "the error names no file: {err:#}");
        }
    }
}

#[test]
fn the_sandbox_never_panics_on_mutated_programs() {
    let pure = Sandbox::new(&Policy::default()).unwrap();
    let programs = [
        "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))",
        "(module (memory (export \"memory\") 1) (func (export \"compute\") (param i32 i32) (result i32) (local i32) (block (loop (br_if 1 (i32.ge_u (local.get 2) (local.get 1))) (local.set 2 (i32.add (local.get 2) (i32.const 1))) (br 0))) (local.get 2)))",
        "(module (func $f (param i64) (result i64) (if (result i64) (i64.lt_s (local.get 0) (i64.const 2)) (then (local.get 0)) (else (i64.add (call $f (i64.sub (local.get 0) (i64.const 1))) (call $f (i64.sub (local.get 0) (i64.const 2))))))) (func (export \"compute\") (param i64) (result i64) (call $f (local.get 0))))",
    ];
    let args = wmx::sandbox::bind("What is 12 and 30?");
    let mut rng = Rng(0x1c);
    let mut values = 0;
    for case in 0..3000 {
        let bytes = mutate(programs[case % programs.len()], &mut rng);
        let wat = String::from_utf8_lossy(&bytes).into_owned();
        let outcome = no_panic("Sandbox::run", &bytes, || pure.run(&wat, &args));
        values += usize::from(outcome.value().is_some());
    }
    assert!(values > 10, "some mutations still compute: {values}");
}

/// Through the binary: exit 0 or 2, never a panic (101) or an abort.
#[test]
fn wmx_exec_exits_0_or_2_on_mutated_programs() {
    let dir = tempfile::tempdir().unwrap();
    let seed = "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.div))";
    let mut rng = Rng(0x1d);
    for case in 0..120 {
        let bytes = if case == 0 { vec![0xff, 0xfe, 0x00] } else { mutate(seed, &mut rng) };
        let path = dir.path().join("p.wat");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wmx"))
            .args(["exec", path.to_str().unwrap(), "--args", "6", "3"])
            .output()
            .unwrap();
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(code, Some(0) | Some(2)), "exit {code:?} on {}: {stderr}", String::from_utf8_lossy(&bytes));
        if code == Some(2) {
            assert!(stderr.contains("p.wat"), "the error names the file: {stderr}");
        }
    }
}
