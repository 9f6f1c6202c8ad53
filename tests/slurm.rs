//! `wmx sweep --launcher slurm` against a real single-node Slurm (Debian's
//! slurmctld, slurmd and munge, which `.ci/run` starts with scripts/slurm-local.sh):
//! the members run as one job array, a requeued member resumes from its
//! checkpoint, and `--status` compares the members once all are complete.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn slurm_is_up() -> bool {
    Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
        let states = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success() && ["idle", "mix", "alloc"].iter().any(|s| states.contains(s))
    })
}

fn status(dir: &std::path::Path, exp: &std::path::Path) -> String {
    let out = wmx(dir).args(["sweep", exp.to_str().unwrap(), "--status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_a_requeued_member_resumes() {
    assert!(slurm_is_up(), "no Slurm node is up: run scripts/slurm-local.sh (as .ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let exp = sweep_experiment(dir.path(), "\"fusion.layers\" = [[0], [1]]");
    let out = wmx(dir.path())
        .args(["sweep", exp.to_str().unwrap(), "--launcher", "slurm", "--time", "00:20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let job: String = text.split("Slurm job array ").nth(1).unwrap().chars().take_while(|c| c.is_ascii_digit()).collect();
    // Requeue member 0 once it has trained a few steps: Slurm sends SIGTERM, wmx
    // checkpoints and exits, and the requeued task resumes.
    let first = dir.path().join("runs/tiny");
    let started = Instant::now();
    let mut requeued = false;
    loop {
        assert!(started.elapsed() < Duration::from_secs(600), "the sweep did not finish:\n{}", status(dir.path(), &exp));
        let now = status(dir.path(), &exp);
        if now.contains("every member is complete") {
            break;
        }
        if !requeued {
            let rows = std::fs::read_dir(&first).into_iter().flatten().flatten().filter(|e| e.path().is_dir()).filter_map(|e| std::fs::read_to_string(e.path().join("metrics.csv")).ok()).map(|t| t.lines().count()).max().unwrap_or(0);
            if rows >= 6 {
                let task = format!("{job}_0");
                let ok = Command::new("scontrol").args(["requeue", &task]).status().unwrap().success();
                assert!(ok, "scontrol requeue {task} failed");
                requeued = true;
            }
        } else {
            // A requeued job waits out Slurm's requeue delay; let it start now.
            let _ = Command::new("scontrol").args(["update", &format!("jobid={job}_0"), "starttime=now"]).output();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(requeued, "member 0 finished before it could be requeued");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweeps/tiny/sweep.json")).unwrap()).unwrap();
    assert_eq!(record["slurm_job"], job.as_str());
    let run0 = std::path::PathBuf::from(record["members"][0]["run"].as_str().unwrap());
    let run0 = if run0.is_absolute() { run0 } else { dir.path().join(run0) };
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run0.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    assert!(meta["resumes"].as_u64().unwrap() >= 1, "{meta}");
    let log = std::fs::read_to_string(run0.join("log.txt")).unwrap();
    assert!(log.contains("interrupted: stopped by a signal") && log.contains("resuming from checkpoint step"), "{log}");
    // The task's log kept both attempts.
    let task_log = std::fs::read_to_string(dir.path().join(format!("sweeps/tiny/slurm/{job}_0.log"))).unwrap();
    assert!(task_log.matches("run ").count() >= 2, "{task_log}");
    assert!(dir.path().join("reports/tiny/index.html").is_file());
}
