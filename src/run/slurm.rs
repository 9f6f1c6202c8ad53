//! Sweeps on Slurm: the unfinished members as one job array (`sbatch`), each task
//! `exec`ing `wmx run` on its member's resolved config, and the scheduler's view of
//! them (`squeue`). A task is requeueable and gets SIGTERM two minutes before its
//! time limit: `wmx run` checkpoints and exits, and a requeued task resumes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// What `--launcher slurm` asks of the scheduler.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub gpus_per_member: Option<u32>,
    /// `HH:MM`, each task's time limit.
    pub time: Option<String>,
}

/// One array task: its index and the command it runs.
pub struct Task {
    pub index: usize,
    pub args: Vec<String>,
}

/// A word for bash, single-quoted.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The batch script of the array.
pub fn script(name: &str, root: &Path, logs: &Path, tasks: &[Task], options: &SlurmOptions) -> Result<String> {
    let last = tasks.iter().map(|t| t.index).max().context("no member to submit")?;
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("#SBATCH --job-name=wmx-{name}\n");
    s += &format!("#SBATCH --array={}\n", tasks.iter().map(|t| t.index.to_string()).collect::<Vec<_>>().join(","));
    s += &format!("#SBATCH --chdir={}\n", root.display());
    s += &format!("#SBATCH --output={}/%A_%a.log\n", logs.display());
    s += "#SBATCH --requeue\n";
    // A requeued task appends to its log rather than replacing it.
    s += "#SBATCH --open-mode=append\n";
    // SIGTERM to the task (wmx, by exec) two minutes before the time limit.
    s += "#SBATCH --signal=B:TERM@120\n";
    if let Some(p) = &options.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(g) = options.gpus_per_member {
        s += &format!("#SBATCH --gres=gpu:{g}\n");
    }
    if let Some(t) = &options.time {
        let valid = t.split_once(':').is_some_and(|(h, m)| h.parse::<u32>().is_ok() && m.parse::<u32>().is_ok_and(|m| m < 60));
        if !valid {
            bail!("--time `{t}` is not HH:MM");
        }
        s += &format!("#SBATCH --time={t}:00\n");
    }
    s += &format!("# {} members; task i runs member i of the sweep (sweep.json).\n", last + 1);
    s += "case \"$SLURM_ARRAY_TASK_ID\" in\n";
    for t in tasks {
        let command: Vec<String> = t.args.iter().map(|a| quote(a)).collect();
        s += &format!("{}) exec {} ;;\n", t.index, command.join(" "));
    }
    s += "*) echo \"no member $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n";
    Ok(s)
}

/// Submits `script` (written to `path`); the job id.
pub fn submit(path: &Path, script: &str) -> Result<String> {
    crate::fs::write_atomic(path, script.as_bytes())?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(path)
        .output()
        .context("cannot run sbatch: is Slurm installed here (scripts/slurm-local.sh sets up one node)?")?;
    if !out.status.success() {
        bail!("sbatch refused {}: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.trim().split(';').next().unwrap_or("").to_string())
}

/// The scheduler's state of each task of `job` still in its queue (pending,
/// running, requeued, …); a task that is not listed has left the queue.
pub fn states(job: &str) -> BTreeMap<usize, String> {
    let Ok(out) = Command::new("squeue").args(["-h", "-r", "-j", job, "-o", "%K %T"]).output() else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (index, state) = l.trim().split_once(' ')?;
            Some((index.parse().ok()?, state.to_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_each_member_by_its_task_index() {
        let tasks = [
            Task { index: 0, args: vec!["/bin/wmx".into(), "run".into(), "/x/e.toml".into(), "--set".into(), "fusion.layers=[0]".into()] },
            Task { index: 2, args: vec!["/bin/wmx".into(), "run".into(), "/x/it's.toml".into()] },
        ];
        let options = SlurmOptions { partition: Some("gpu".into()), gpus_per_member: Some(1), time: Some("02:30".into()) };
        let s = script("fusion", Path::new("/x"), Path::new("/x/sweeps/fusion/slurm"), &tasks, &options).unwrap();
        for line in [
            "#SBATCH --array=0,2",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --time=02:30:00",
            "#SBATCH --requeue",
            "0) exec '/bin/wmx' 'run' '/x/e.toml' '--set' 'fusion.layers=[0]' ;;",
            r"2) exec '/bin/wmx' 'run' '/x/it'\''s.toml' ;;",
        ] {
            assert!(s.contains(line), "{line} missing from:\n{s}");
        }
        let bad = SlurmOptions { time: Some("2h".into()), ..Default::default() };
        assert!(script("f", Path::new("/x"), Path::new("/x"), &tasks, &bad).is_err());
    }
}
