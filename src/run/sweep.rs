//! Sweeps: an experiment's `[sweep]` table maps dotted keys to lists of values; the
//! cartesian product gives the members, each an ordinary run in its own directory.
//! Running a sweep again resumes unfinished members and skips finished ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{self, Loaded};

/// One member: the swept keys' values and where its run lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Dotted key → value, as TOML.
    pub values: BTreeMap<String, String>,
    /// `--set` overrides that make this member.
    pub overrides: Vec<String>,
}

/// The members of `sweep`, in a fixed order (keys sorted, values as listed).
pub fn members(sweep: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Member> {
    let mut out = vec![Member {
        values: BTreeMap::new(),
        overrides: Vec::new(),
    }];
    for (key, values) in sweep {
        out = out
            .into_iter()
            .flat_map(|m| {
                values.iter().map(move |v| {
                    let shown = v.to_string();
                    let mut next = m.clone();
                    next.overrides.push(format!("{key}={shown}"));
                    next.values.insert(key.clone(), shown);
                    next
                })
            })
            .collect();
    }
    if sweep.is_empty() { Vec::new() } else { out }
}

/// Where a sweep keeps its state: `sweeps/<name>/` under `root`.
pub fn sweep_dir(root: &Path, loaded: &Loaded) -> PathBuf {
    root.join("sweeps").join(loaded.name())
}

/// What `sweeps/<name>/sweep.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRecord {
    pub file: PathBuf,
    pub members: Vec<MemberRecord>,
    /// The Slurm job array of the members, when submitted there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRecord {
    pub values: BTreeMap<String, String>,
    pub run: PathBuf,
    pub status: String,
    pub accuracy: Option<f64>,
}

impl SweepRecord {
    pub fn read(dir: &Path) -> Result<SweepRecord> {
        let path = dir.join("sweep.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a sweep directory (no sweep.json)", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::fs::write_atomic(&dir.join("sweep.json"), serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }
}

/// Loads each member's experiment (the file with the member's overrides, then the
/// caller's); a bad key or value stops the sweep before anything runs. `seeds`
/// adds a seed axis: the experiment's seed and the next `seeds - 1`.
pub fn load_members(file: &Path, overrides: &[String], seeds: Option<usize>) -> Result<(Loaded, Vec<(Member, Loaded)>)> {
    let base = config::load(file, overrides)?;
    let mut axes = base.experiment.sweep.clone();
    if let Some(n) = seeds {
        let first = base.experiment.seed;
        axes.insert("seed".into(), (0..n as u64).map(|i| toml::Value::Integer((first + i) as i64)).collect());
    }
    let list = members(&axes);
    if list.is_empty() {
        anyhow::bail!(config::ConfigError::Key {
            key: "sweep".into(),
            source_name: file.display().to_string(),
            message: "has no keys to sweep: add e.g. `[sweep]` `\"fusion.layers\" = [[1], [2], [3]]`, or pass --seeds N".into(),
        });
    }
    let mut loaded = Vec::new();
    for m in list {
        let mut all = m.overrides.clone();
        all.extend_from_slice(overrides);
        let l = config::load(file, &all)
            .with_context(|| format!("sweep member {}", m.overrides.join(" ")))?;
        loaded.push((m, l));
    }
    Ok((base, loaded))
}

/// The variable that pins a process to GPUs on `backend`.
fn visible_devices_variable(backend: crate::config::Backend) -> &'static str {
    match backend {
        crate::config::Backend::Rocm => "HIP_VISIBLE_DEVICES",
        _ => "CUDA_VISIBLE_DEVICES",
    }
}

/// The GPUs members can be pinned to: the ones the visible-devices variable already
/// names, else every GPU `nvidia-smi -L` (or `rocm-smi --showid`) lists; none on the CPU.
pub(super) fn visible_gpus(backend: crate::config::Backend) -> Vec<String> {
    if backend == crate::config::Backend::Cpu {
        return Vec::new();
    }
    if let Ok(list) = std::env::var(visible_devices_variable(backend))
        && !list.trim().is_empty()
    {
        return list.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    }
    let (tool, args, prefix) = match backend {
        crate::config::Backend::Rocm => ("rocm-smi", &["--showid"][..], "GPU["),
        _ => ("nvidia-smi", &["-L"][..], "GPU "),
    };
    let listed = std::process::Command::new(tool).args(args).output().ok().filter(|o| o.status.success());
    let count = listed.map_or(0, |o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let ids: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|l| l.trim().strip_prefix(prefix)).filter_map(|rest| rest.split([':', ']']).next()).collect();
        ids.len()
    });
    (0..count).map(|i| i.to_string()).collect()
}

/// The GPU (of `gpus`) with the fewest running members, lowest first; none without GPUs.
fn least_busy(gpus: usize, busy: &[usize]) -> Option<usize> {
    (0..gpus).min_by_key(|g| busy.iter().filter(|b| *b == g).count())
}

/// How a sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    Complete,
    Interrupted,
    Failed,
    /// Submitted to Slurm as this job array: `wmx sweep FILE --status` follows it.
    Submitted { job: String },
}

/// Waits for whichever running member ends first: its index and exit status.
fn first_to_end(running: &mut [(std::process::Child, String, Option<usize>)]) -> Result<(usize, std::process::ExitStatus)> {
    loop {
        for (i, (child, _, _)) in running.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                return Ok((i, status));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl MemberRecord {
    /// A member as its run directory shows it now.
    fn of(member: &Member, run: &Path) -> MemberRecord {
        let facts = crate::compare::RunFacts::read(run).ok();
        MemberRecord {
            values: member.values.clone(),
            run: run.to_path_buf(),
            status: facts.as_ref().map_or("not started".into(), |f| f.status.clone()),
            accuracy: facts.and_then(|f| f.summary).map(|s| s.accuracy),
        }
    }
}

/// Where and how a sweep's members run.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// Each member its own `wmx run` process here, `jobs` at a time.
    Local { jobs: usize },
    /// The unfinished members as one Slurm job array.
    Slurm(super::slurm::SlurmOptions),
}

/// A sweep as the command line names it.
pub struct SweepSpec<'a> {
    pub file: &'a Path,
    pub overrides: &'a [String],
    /// `--seeds N`: a seed axis.
    pub seeds: Option<usize>,
    pub backend: Option<crate::config::Backend>,
    /// The directory holding `runs/`, `sweeps/` and `reports/`.
    pub root: &'a Path,
}

/// A sweep's members with their run directories: (member, run, done, label).
struct Plan {
    base: Loaded,
    members: Vec<(Member, PathBuf, bool, String)>,
}

impl Plan {
    /// The plan; `announce` logs each member (running a sweep, not `--status`).
    fn of(spec: &SweepSpec, announce: bool) -> Result<Plan> {
        let level = if announce { log::Level::Info } else { log::Level::Debug };
        let (base, members) = load_members(spec.file, spec.overrides, spec.seeds)?;
        let mut planned: Vec<(Member, PathBuf, bool, String)> = Vec::new();
        for (i, (member, loaded)) in members.iter().enumerate() {
            let (dir, _) = crate::rundir::RunDir::for_experiment(spec.root, loaded)?;
            // Members that resolve to the same config are one run: trained once, not
            // twice at once in one directory.
            let same = planned.iter().position(|(_, path, _, _)| *path == dir.path);
            if let Some(first) = same {
                log::log!(
                    level,
                    "member {}/{} resolves to the same run as member {} ({}); it is trained once",
                    i + 1,
                    members.len(),
                    first + 1,
                    dir.path.display()
                );
            }
            let done = same.is_some() || dir.meta().is_some_and(|m| m.status == crate::rundir::Status::Complete);
            let label = if member.values.is_empty() {
                "(base)".to_string()
            } else {
                member.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            };
            log::log!(
                level,
                "member {}/{}: {label} → {}{}",
                i + 1,
                members.len(),
                dir.path.display(),
                if done { " (already complete)" } else { "" }
            );
            planned.push((member.clone(), dir.path, done, label));
        }
        Ok(Plan { base, members: planned })
    }

    /// `wmx run` of member `m`, as arguments after the executable.
    fn run_args(&self, spec: &SweepSpec, m: &Member) -> Vec<String> {
        let mut args = vec!["run".to_string(), spec.file.display().to_string()];
        for o in m.overrides.iter().chain(spec.overrides) {
            args.push("--set".into());
            args.push(o.clone());
        }
        if let Some(b) = spec.backend {
            args.push("--backend".into());
            args.push(format!("{b:?}").to_lowercase());
        }
        args
    }

    /// Records the sweep and, once a member has started, compares the members.
    fn record(&self, spec: &SweepSpec, slurm_job: Option<String>) -> Result<(SweepRecord, PathBuf)> {
        let record = SweepRecord {
            file: spec.file.to_path_buf(),
            members: self.members.iter().map(|(m, run, _, _)| MemberRecord::of(m, run)).collect(),
            slurm_job,
        };
        let dir = sweep_dir(spec.root, &self.base);
        record.write(&dir)?;
        let started: Vec<crate::compare::RunFacts> =
            record.members.iter().filter_map(|m| crate::compare::RunFacts::read(&m.run).ok()).collect();
        if !started.is_empty() {
            crate::compare::compare(&started, &spec.root.join("reports").join(self.base.name()))?;
        }
        Ok((record, dir))
    }
}

/// Runs (or submits) every unfinished member, then records the sweep in
/// `sweeps/<name>/sweep.json` and compares the members into `reports/<name>/`.
pub fn run_sweep(spec: &SweepSpec, launcher: &Launcher) -> Result<(SweepOutcome, PathBuf)> {
    let plan = Plan::of(spec, true)?;
    match launcher {
        Launcher::Local { jobs } => run_local(spec, &plan, *jobs),
        Launcher::Slurm(options) => submit_slurm(spec, &plan, options),
    }
}

fn run_local(spec: &SweepSpec, plan: &Plan, jobs: usize) -> Result<(SweepOutcome, PathBuf)> {
    use std::process::{Command, Stdio};
    use std::sync::atomic::Ordering;

    let exe = std::env::current_exe().context("cannot find the wmx executable")?;
    // Ctrl-C reaches the members too (same process group): they checkpoint and
    // stop; the sweep launches nothing more.
    super::signals::install();
    let stop = super::signals::interrupted();
    let jobs = jobs.max(1);
    // With several members at once on GPUs, each takes its own GPU (shared only
    // when there are more members at once than GPUs).
    let member_backend = spec.backend.unwrap_or(plan.base.experiment.backend);
    let gpus = if jobs > 1 { visible_gpus(member_backend) } else { Vec::new() };
    let mut running: Vec<(std::process::Child, String, Option<usize>)> = Vec::new();
    let mut failed = false;
    let mut queue = plan.members.iter().filter(|p| !p.2);
    loop {
        while running.len() < jobs && !stop.load(Ordering::SeqCst) {
            let Some((member, _, _, label)) = queue.next() else { break };
            let mut cmd = Command::new(&exe);
            cmd.args(plan.run_args(spec, member)).current_dir(spec.root);
            if jobs > 1 {
                cmd.stdout(Stdio::null());
            }
            let busy: Vec<usize> = running.iter().filter_map(|r| r.2).collect();
            let gpu = least_busy(gpus.len(), &busy);
            if let Some(g) = gpu {
                cmd.env(visible_devices_variable(member_backend), &gpus[g]);
                log::info!("running {label} on GPU {}", gpus[g]);
            } else {
                log::info!("running {label}");
            }
            running.push((cmd.spawn().context("cannot start a sweep member")?, label.clone(), gpu));
        }
        if running.is_empty() {
            break;
        }
        let (i, status) = first_to_end(&mut running)?;
        let (_, label, _) = running.remove(i);
        match status.code() {
            Some(0) => log::info!("finished {label}"),
            Some(130) => log::info!("interrupted {label}"),
            _ => {
                failed = true;
                log::info!("failed {label} ({status})");
            }
        }
    }
    let (record, dir) = plan.record(spec, None)?;
    let all_complete = record.members.iter().all(|m| m.status == "complete");
    let outcome = if failed {
        SweepOutcome::Failed
    } else if all_complete {
        SweepOutcome::Complete
    } else {
        SweepOutcome::Interrupted
    };
    Ok((outcome, dir))
}

/// Submits the unfinished members as one job array; task i runs member i.
fn submit_slurm(spec: &SweepSpec, plan: &Plan, options: &super::slurm::SlurmOptions) -> Result<(SweepOutcome, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the wmx executable")?;
    let root = std::path::absolute(spec.root)?;
    let file = std::path::absolute(spec.file)?;
    let absolute = SweepSpec { file: &file, overrides: spec.overrides, seeds: spec.seeds, backend: spec.backend, root: &root };
    let tasks: Vec<super::slurm::Task> = plan
        .members
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.2)
        .map(|(index, (m, ..))| {
            let mut args = vec![exe.display().to_string()];
            args.extend(plan.run_args(&absolute, m));
            super::slurm::Task { index, args }
        })
        .collect();
    let dir = sweep_dir(spec.root, &plan.base);
    if tasks.is_empty() {
        let (_, dir) = plan.record(spec, None)?;
        return Ok((SweepOutcome::Complete, dir));
    }
    let logs = std::path::absolute(dir.join("slurm"))?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let script = super::slurm::script(&plan.base.name(), &root, &logs, &tasks, options)?;
    let job = super::slurm::submit(&logs.join("job.sh"), &script)?;
    log::info!("submitted {} members as Slurm job array {job} (logs in {})", tasks.len(), logs.display());
    plan.record(spec, Some(job.clone()))?;
    Ok((SweepOutcome::Submitted { job }, dir))
}

/// One member as `wmx sweep --status` shows it.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub label: String,
    pub run: PathBuf,
    /// From the run directory: complete, running, died, failed, interrupted, not started.
    pub status: String,
    /// From the scheduler: pending, running, … or `-` when not queued.
    pub scheduler: String,
    pub accuracy: Option<f64>,
}

/// Each member's state, from its run directory and the scheduler; when every
/// member is complete, the comparison is (re)written. Returns the states and
/// whether all are complete.
pub fn sweep_status(spec: &SweepSpec) -> Result<(Vec<MemberState>, bool)> {
    let plan = Plan::of(spec, false)?;
    let dir = sweep_dir(spec.root, &plan.base);
    let job = SweepRecord::read(&dir).ok().and_then(|r| r.slurm_job);
    let queued = job.as_deref().map(super::slurm::states).unwrap_or_default();
    let states: Vec<MemberState> = plan
        .members
        .iter()
        .enumerate()
        .map(|(i, (_, run, _, label))| {
            let dir = crate::rundir::RunDir::at(run);
            MemberState {
                label: label.clone(),
                run: run.clone(),
                status: dir.state().unwrap_or_else(|| "not started".into()),
                scheduler: queued.get(&i).cloned().unwrap_or_else(|| "-".into()),
                accuracy: dir.summary().map(|s| s.accuracy),
            }
        })
        .collect();
    let complete = states.iter().all(|s| s.status == "complete");
    if complete {
        plan.record(spec, job)?;
    }
    Ok((states, complete))
}

/// The run directories a `compare` argument names: a run, or a sweep directory.
pub fn runs_of(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join("sweep.json").is_file() {
        Ok(SweepRecord::read(path)?.members.into_iter().map(|m| m.run).collect())
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_take_the_least_busy_gpu() {
        assert_eq!(least_busy(0, &[]), None);
        assert_eq!(least_busy(2, &[]), Some(0));
        assert_eq!(least_busy(2, &[0]), Some(1));
        assert_eq!(least_busy(2, &[0, 1]), Some(0));
        assert_eq!(least_busy(3, &[0, 0, 2]), Some(1));
    }

    #[test]
    fn members_are_the_cartesian_product_in_key_order() {
        let mut sweep = BTreeMap::new();
        sweep.insert(
            "fusion.layers".to_string(),
            vec![toml::Value::Array(vec![1.into()]), toml::Value::Array(vec![2.into(), 3.into()])],
        );
        sweep.insert("seed".to_string(), vec![0.into(), 1.into(), 2.into()]);
        let m = members(&sweep);
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].overrides, vec!["fusion.layers=[1]", "seed=0"]);
        assert_eq!(m[5].overrides, vec!["fusion.layers=[2, 3]", "seed=2"]);
        assert!(members(&BTreeMap::new()).is_empty());
    }
}
