//! `wmx run` end to end on a tiny experiment: run directories, completion, and a
//! run killed with SIGKILL that resumes onto the very same trajectory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

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
        "metrics.parquet",
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
    let metrics = wmx::tables::read_parquet(&run.join("metrics.parquet")).unwrap();
    assert_eq!(metrics.height(), 36);
    let names: Vec<String> = metrics
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    for column in ["stage", "step", "text_loss", "wat_loss_0", "tokens_per_second", "peak_rss_mib"] {
        assert!(names.iter().any(|n| n == column), "no {column} in {names:?}");
    }
    // `wmx run` drew the report after evaluating.
    let report = run.join("report");
    for file in ["index.html", "report.md", "tables/accuracy_by_operation.parquet", "tables/confusion.csv"] {
        assert!(report.join(file).is_file(), "missing report/{file}");
    }
    for chart in ["loss", "throughput", "memory", "accuracy-stage", "accuracy-operation", "selection", "confusion-exit0", "confusion-exit1", "outcomes"] {
        for ext in ["png", "svg"] {
            assert!(report.join(format!("charts/{chart}.{ext}")).is_file(), "missing chart {chart}.{ext}");
        }
    }
    assert_renders_in_chromium(&report.join("index.html"), 9, [1500, 500]);
    let again = run_ok(dir.path(), &exp);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already complete"));
    let listed = wmx(dir.path()).arg("ls").output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let row = listed.lines().find(|l| l.starts_with("tiny")).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("complete") && row.contains(&format!("{accuracy:.4}")) && row.contains(" 36 "), "{row}");
}

#[test]
fn quiet_runs_keep_their_progress_in_the_log_only() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let out = wmx(dir.path()).args(["-q", "run", exp.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains("epoch") && printed.starts_with("finished "), "{printed}");
    let log = std::fs::read_to_string(run_dir(dir.path()).join("log.txt")).unwrap();
    assert!(log.contains("epoch 1/12") && log.contains("evaluation on test"), "{log}");
    // RUST_LOG overrides -q.
    let again = wmx(dir.path()).env("RUST_LOG", "wmx=info").args(["-q", "run", exp.to_str().unwrap(), "--fresh"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("moved the previous run to"));
}

#[test]
fn an_edited_curriculum_is_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let run_of = || {
        let loaded = wmx::config::load(&exp, &[]).unwrap();
        wmx::rundir::RunDir::for_experiment(dir.path(), &loaded).unwrap().0.path
    };
    let first = run_of();
    assert_eq!(first, run_of(), "the same files name the same run");
    // The experiment file is untouched; only the curriculum it names changes.
    let curriculum = dir.path().join("curriculum.toml");
    let text = std::fs::read_to_string(&curriculum).unwrap();
    std::fs::write(&curriculum, text.replace("epochs = 12", "epochs = 13")).unwrap();
    assert_ne!(first, run_of(), "a finished run of the old curriculum would be reported instead");
}

/// Debian's `chromium` (or `WMX_CHROMIUM`); `.ci/run` installs it.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("WMX_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!("the report test needs a headless browser: `apt-get install chromium` (Debian), or set WMX_CHROMIUM");
}

/// Opens the report page in headless Chromium: every chart image must decode,
/// and a screenshot of the page must show the charts' own colours.
/// `least`: the fewest pixels of the palette's first two colours the screenshot
/// must hold (short runs draw short curves).
fn assert_renders_in_chromium(page: &Path, charts: usize, least: [usize; 2]) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let profile = tempfile::tempdir().unwrap();
    let browser = |args: &[&str]| {
        let out = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    // The page's own script counts the chart images the browser decoded.
    let dom = browser(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let marker = format!("data-charts-drawn=\"{charts}\"");
    assert!(dom.contains(&marker), "expected {marker} on <body>: {}", &dom[..dom.len().min(400)]);

    let shot = page.with_file_name("screenshot.png");
    browser(&["--window-size=1000,9000", &format!("--screenshot={}", shot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let count = |c: plotters::style::RGBColor| {
        pixels[..info.buffer_size()]
            .chunks(channels)
            .filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2)
            .count()
    };
    // Curves and bars are drawn in the palette's colours: the first is the text
    // loss, throughput and memory curves and exit 0's outcome bars; the second
    // is exit 0's WAT loss and exit 1's outcome bars. A page whose images did
    // not draw has none of either.
    let palette = wmx::report::charts::PALETTE;
    for (colour, least) in [(palette[0], least[0]), (palette[1], least[1])] {
        let n = count(colour);
        assert!(n > least, "only {n} pixels of {colour:?} in the screenshot {}", shot.display());
    }
}

#[test]
fn killed_run_resumes_onto_the_same_trajectory() {
    let straight = tempfile::tempdir().unwrap();
    let exp = experiment(straight.path());
    run_ok(straight.path(), &exp);
    let expected = trajectory(&run_dir(straight.path()));

    let killed = tempfile::tempdir().unwrap();
    let exp = experiment(killed.path());
    let mut child = start_run(killed.path(), &exp, 15);
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
    let mut child = start_run(dir.path(), &exp, 5);
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

#[test]
fn infer_and_eval_answer_from_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    run_ok(dir.path(), &exp);
    let run = run_dir(dir.path());
    let run_arg = run.to_str().unwrap();
    // The run's own evaluation wrote the tables beside the summary.
    let predictions = wmx::tables::read_parquet(&run.join("eval/predictions.parquet")).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/summary.json")).unwrap())
            .unwrap();
    assert_eq!(predictions.height() as u64, 2 * summary["total"].as_u64().unwrap());

    let out = wmx(dir.path()).args(["infer", run_arg, "What is 2 + 3?"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    for part in ["question: What is 2 + 3?", "exit 0 (text layer 0)", "exit 1 (text layer 1)", "score", "answer:"] {
        assert!(shown.contains(part), "no `{part}` in:\n{shown}");
    }
    let out = wmx(dir.path())
        .args(["infer", run_arg, "--json", "What is 4 * 6?"])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["question"], "What is 4 * 6?");
    assert_eq!(answer["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(answer["args"].as_array().unwrap().len(), 2);
    // Each answer says where its time went, part by part.
    let t = &answer["timings"];
    let parts: f64 = ["prefill_ms", "candidates_ms", "sandbox_ms", "selection_ms", "answer_ms"].iter().map(|k| t[k].as_f64().unwrap()).sum();
    assert!(parts > 0.0 && parts <= t["total_ms"].as_f64().unwrap() + 1e-6, "{t}");

    // External JSONL with its own field names; answers as numbers or strings.
    std::fs::write(
        dir.path().join("quiz.jsonl"),
        "{\"q\": \"What is 12 + 30?\", \"a\": 42}\n{\"q\": \"What is 3 * 5?\", \"a\": \"15\"}\n{\"q\": \"Add 7 and 8.\", \"a\": 15}\n",
    )
    .unwrap();
    let eval = |answer_field: &str, extra: &[&str]| {
        let mut args = vec!["eval", run_arg, "--data", "quiz.jsonl", "--question-field", "q", "--answer-field", answer_field];
        args.extend_from_slice(extra);
        wmx(dir.path()).args(&args).output().unwrap()
    };
    let out = eval("a", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim_end().lines().last().unwrap().starts_with("accuracy "), "{stdout}");
    let quiz = run.join("eval/quiz");
    let predictions = wmx::tables::read_parquet(&quiz.join("predictions.parquet")).unwrap();
    assert_eq!(predictions.height(), 3 * 2, "one row per question × exit");
    assert!(quiz.join("predictions.csv").is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(quiz.join("summary.json")).unwrap()).unwrap();
    assert!((0.0..=1.0).contains(&summary["accuracy"].as_f64().unwrap()));
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["exits"].as_array().unwrap().len(), 2);
    assert_eq!(summary["operations"]["add"]["total"], 2, "intent from the wording");

    let out = eval("a", &["--ablate", "text-only"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ablated = run.join("eval/quiz-text-only");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ablated.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["ablation"], "text-only");
    assert_eq!(wmx::tables::read_parquet(&ablated.join("predictions.parquet")).unwrap().height(), 3);

    // The hand-written questions (tests/fixtures/handwritten/): at least 60, all
    // different, each with a numeric answer, through the whole path.
    let handwritten = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/handwritten/questions.jsonl");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&handwritten)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["question"].as_str().unwrap()).collect();
    assert!(rows.len() >= 60 && distinct.len() == rows.len(), "{} questions, {} distinct", rows.len(), distinct.len());
    assert!(rows.iter().all(|r| r["answer"].is_number()));
    let out = wmx(dir.path()).args(["eval", run_arg, "--data", handwritten.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/questions/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["total"].as_u64().unwrap() as usize, rows.len());
    // Questions answered together (eval.batch_size, 16) get the answers each gets
    // alone: programs, outcomes, scores, selection and text.
    let one_by_one = dir.path().join("one-by-one");
    let out = wmx(dir.path())
        .args(["eval", run_arg, "--data", handwritten.to_str().unwrap(), "--batch", "1", "--out", one_by_one.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path.join("answers.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["answer"].as_object_mut().unwrap().remove("timings");
                v
            })
            .collect()
    };
    let together = answers(&run.join("eval/questions"));
    assert_eq!(together.len(), rows.len());
    assert_eq!(together, answers(&one_by_one));

    // Bad input exits 2 and says what and where.
    let out = eval("answer", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quiz.jsonl:1") && err.contains("`answer`"), "{err}");
    let out = eval("a", &["--ablate", "exit=5"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wmx(dir.path()).args(["eval", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
}

#[test]
fn sweep_finishes_only_missing_members_and_compares_differing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let exp = sweep_experiment(dir.path(), "\"fusion.layers\" = [[0], [1], [0, 1]]");
    let complete = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.path().join("runs/tiny"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        std::fs::read_to_string(p.join("meta.json"))
                            .is_ok_and(|m| m.contains("\"complete\""))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // SIGKILL the sweep and its running member once the first member is done
    // (stopped first, so it cannot start another member in between).
    let mut child = wmx(dir.path())
        .args(["sweep", exp.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while complete().is_empty() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let signal = |sig: &str, pid: u32| {
        assert!(pid > 1);
        Command::new("kill").args(["-s", sig, &pid.to_string()]).status().unwrap();
    };
    signal("STOP", child.id());
    for member in children_of(child.id()) {
        signal("KILL", member);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = complete();
    assert!(!done.is_empty() && done.len() < 3, "{done:?}");
    let before: Vec<String> = done
        .iter()
        .map(|p| std::fs::read_to_string(p.join("metrics.csv")).unwrap())
        .collect();

    let out = wmx(dir.path())
        .args(["sweep", exp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("(already complete)").count(), done.len(), "{stdout}");
    assert_eq!(complete().len(), 3);
    for (p, b) in done.iter().zip(&before) {
        assert_eq!(&std::fs::read_to_string(p.join("metrics.csv")).unwrap(), b, "{p:?} ran again");
    }
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sweeps/tiny/sweep.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["members"].as_array().unwrap().len(), 3);
    let report = std::fs::read_to_string(dir.path().join("reports/tiny/report.md")).unwrap();
    assert!(report.contains("fusion.layers"), "{report}");
    for same in ["seed", "train.batch_size", "model.hidden_size"] {
        assert!(!report.contains(same), "{same} is the same in every member:\n{report}");
    }
    let table = wmx::tables::read_parquet(&dir.path().join("reports/tiny/comparison.parquet")).unwrap();
    assert_eq!(table.height(), 3);
    // `compare` takes the sweep directory too.
    let out = wmx(dir.path())
        .args(["compare", "sweeps/tiny", "--name", "again"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("reports/again/losses.parquet").is_file());
}

/// Processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// On a terminal (a pseudo-terminal from util-linux's `script`) training shows the
/// bar; piped, the same run prints plain lines only.
#[test]
fn training_shows_a_bar_on_a_terminal_and_plain_lines_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let command = format!("{} run {} --set train.epoch_scale=0.3", env!("CARGO_BIN_EXE_wmx"), exp.display());
    let out = Command::new("script").args(["-qfec", &command, "/dev/null"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(terminal.contains("ETA") && terminal.contains("tok/s") && terminal.contains("step 12/12"), "{terminal}");
    let piped = wmx(dir.path()).args(["run", exp.to_str().unwrap(), "--set", "train.epoch_scale=0.2"]).output().unwrap();
    assert!(piped.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&piped.stdout), String::from_utf8_lossy(&piped.stderr));
    assert!(text.contains("tok/s") && !text.contains("ETA") && !text.contains('\u{1b}'), "{text}");
}

/// `wmx sweep FILE --seeds 2`: every placement at two seeds, compared as groups
/// with intervals and a paired test, on a page that draws in headless Chromium.
#[test]
fn a_seeded_sweep_compares_groups_on_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let exp = sweep_experiment(dir.path(), "\"fusion.layers\" = [[0], [1]]");
    let out = wmx(dir.path())
        .args(["sweep", exp.to_str().unwrap(), "--seeds", "2", "--jobs", "2", "--set", "train.epoch_scale=0.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("complete").count(), 4, "{stdout}");
    assert!(stdout.contains("seed=1"), "{stdout}");
    let report = dir.path().join("reports/tiny");
    let groups = wmx::tables::read_parquet(&report.join("tables/groups.parquet")).unwrap();
    assert_eq!(groups.height(), 2);
    assert_eq!(groups.column("seeds").unwrap().cast(&polars::prelude::DataType::UInt64).unwrap().u64().unwrap().get(0), Some(2));
    let tests = wmx::tables::read_parquet(&report.join("tables/tests.parquet")).unwrap();
    assert_eq!(tests.height(), 1);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("paired bootstrap") && md.contains("± "), "{md}");
    assert!(report.join("charts/group_text_loss.svg").is_file());
    // The per-run loss chart and the two group charts.
    assert_renders_in_chromium(&report.join("index.html"), 3, [150, 100]);
}
