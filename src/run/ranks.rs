//! The processes of a run trained on several GPUs (`train.devices`), one per GPU.
//!
//! On one host, `wmx run` with `train.devices = N` is the first rank: it starts
//! N − 1 more processes of the same command, each pinned to its own GPU through
//! `CUDA_VISIBLE_DEVICES` and told its place through the environment
//! (`WMX_RANK`, `WMX_WORLD_SIZE`, `WMX_RENDEZVOUS`: a launcher of one's own can start
//! the ranks the same way, rank 0 included). Across hosts, `srun` starts
//! one task per GPU and each task reads its place from Slurm (`SLURM_PROCID`,
//! `SLURM_NTASKS`, `SLURM_LOCALID`).
//!
//! The first rank owns the run directory (its lock, `meta.json`, logs, checkpoints,
//! evaluation). Once the directory is ready it draws an NCCL id and writes it to a
//! rendezvous file there; the other ranks wait for that file, join the
//! communicator, load the same checkpoint, train their shards and exit. If a rank
//! it started fails, the first rank marks the run failed and stops; the ranks it
//! started die with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// This process's place in a run trained by several processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub rank: usize,
    pub size: usize,
    /// The file the first rank writes the communicator's id to.
    pub rendezvous: PathBuf,
}

/// How a process takes part in the run it was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only process: `train.devices = 1`, no ranks.
    Alone,
    /// The first rank of `size`, which starts the others on this host itself
    /// (`local`) or finds them started by `srun`.
    Lead { size: usize, local: bool },
    /// A later rank: trains its shards and writes nothing.
    Follower(Place),
}

/// The environment a process reads its place from.
pub trait Environment {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

fn number(env: &dyn Environment, key: &str) -> Result<Option<usize>> {
    env.var(key)
        .map(|v| v.trim().parse::<usize>().with_context(|| format!("{key}={v:?} is not a number")))
        .transpose()
}

/// Whether this process is a task of an `srun` step with several tasks (a batch
/// script itself has no step id).
fn srun_tasks(env: &dyn Environment) -> Result<Option<(usize, usize)>> {
    if env.var("SLURM_STEP_ID").is_none() {
        return Ok(None);
    }
    match (number(env, "SLURM_PROCID")?, number(env, "SLURM_NTASKS")?) {
        (Some(rank), Some(size)) if size > 1 => Ok(Some((rank, size))),
        _ => Ok(None),
    }
}

/// The rendezvous file of an `srun` step in `dir`: one per job, step and requeue.
fn srun_rendezvous(env: &dyn Environment, dir: &Path) -> PathBuf {
    let part = |key: &str| env.var(key).unwrap_or_else(|| "0".into());
    dir.join(format!(
        ".rendezvous-{}.{}.{}",
        part("SLURM_JOB_ID"),
        part("SLURM_STEP_ID"),
        part("SLURM_RESTART_COUNT")
    ))
}

/// This process's role for a run in `dir` with `train.devices = devices`.
/// Errors are bad input: a world that does not match `devices`.
pub fn role(env: &dyn Environment, devices: usize, dir: &Path) -> Result<Role> {
    if let Some(rank) = number(env, "WMX_RANK")? {
        let size = number(env, "WMX_WORLD_SIZE")?.context("WMX_RANK is set without WMX_WORLD_SIZE")?;
        let rendezvous = PathBuf::from(env.var("WMX_RENDEZVOUS").context("WMX_RANK is set without WMX_RENDEZVOUS")?);
        if rank >= size {
            bail!("WMX_RANK={rank} is not below WMX_WORLD_SIZE={size}");
        }
        // Rank 0 started this way owns the run and publishes in WMX_RENDEZVOUS.
        return Ok(if rank == 0 {
            Role::Lead { size, local: false }
        } else {
            Role::Follower(Place { rank, size, rendezvous })
        });
    }
    if let Some((rank, size)) = srun_tasks(env)? {
        if devices != 1 && devices != size {
            bail!(
                "train.devices = {devices}, but srun started {size} tasks: start one task per GPU, as many as train.devices (or leave it at 1 to take the step's tasks)"
            );
        }
        return Ok(if rank == 0 {
            Role::Lead { size, local: false }
        } else {
            Role::Follower(Place { rank, size, rendezvous: srun_rendezvous(env, dir) })
        });
    }
    Ok(if devices > 1 { Role::Lead { size: devices, local: true } } else { Role::Alone })
}

/// Pins an `srun` task to its own GPU when it sees several: the one at its local
/// id among them. Must run before CUDA starts.
pub fn pin_srun_task(env: &dyn Environment) {
    let Ok(Some(_)) = srun_tasks(env) else { return };
    let Ok(Some(local)) = number(env, "SLURM_LOCALID") else { return };
    let visible = env.var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let gpus: Vec<&str> = visible.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
    let pinned = match gpus.len() {
        1 => return,
        0 => local.to_string(),
        _ => gpus[local % gpus.len()].to_string(),
    };
    // SAFETY: called at start-up, before wmx starts threads that read the environment.
    unsafe { std::env::set_var("CUDA_VISIBLE_DEVICES", pinned) };
}

/// The first rank's rendezvous file for `dir`: `WMX_RENDEZVOUS` when it was started
/// with its place in the environment, else one fresh for this start.
pub fn lead_rendezvous(env: &dyn Environment, dir: &Path, local: bool) -> PathBuf {
    if !local && let Some(path) = env.var("WMX_RENDEZVOUS") {
        return PathBuf::from(path);
    }
    if local {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        dir.join(format!(".rendezvous-{}-{nanos}", std::process::id()))
    } else {
        srun_rendezvous(env, dir)
    }
}

/// Writes the communicator's id for the other ranks (atomically).
pub fn publish(rendezvous: &Path, id: &[u8]) -> Result<()> {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    crate::fs::write_atomic(rendezvous, hex.as_bytes())
        .with_context(|| format!("cannot write the rendezvous file {}", rendezvous.display()))
}

/// Waits for the first rank's id in `rendezvous` (up to `limit`).
pub fn wait_for_id(rendezvous: &Path, limit: Duration) -> Result<Vec<u8>> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(rendezvous) {
            let text = text.trim();
            let bytes: Option<Vec<u8>> = (0..text.len())
                .step_by(2)
                .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect();
            return bytes.with_context(|| format!("{} does not hold a communicator id", rendezvous.display()));
        }
        if started.elapsed() > limit {
            bail!(
                "the first rank did not publish its communicator id in {} within {} s",
                rendezvous.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ranks the first rank started on this host, watched while they train.
pub struct Locals {
    children: Arc<Mutex<Vec<(usize, Child)>>>,
    done: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Locals {
    /// Starts ranks 1..size of this command, rank r on the r-th of `gpus`, with
    /// `rendezvous` to find rank 0 by. A watcher marks the run in `dir` failed and
    /// ends this process if one of them fails while training.
    pub fn start(size: usize, gpus: &[String], rendezvous: &Path, dir: &Path) -> Result<Locals> {
        let exe = std::env::current_exe().context("cannot find this wmx binary to start the other ranks")?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut children = Vec::new();
        for (rank, gpu) in gpus.iter().enumerate().take(size).skip(1) {
            let mut cmd = Command::new(&exe);
            cmd.args(&args)
                .env("WMX_RANK", rank.to_string())
                .env("WMX_WORLD_SIZE", size.to_string())
                .env("WMX_RENDEZVOUS", rendezvous)
                .env("CUDA_VISIBLE_DEVICES", gpu)
                .stdout(std::process::Stdio::null());
            // A rank dies with the first rank, however that ends.
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().with_context(|| format!("cannot start rank {rank}"))?;
            children.push((rank, child));
        }
        let children = Arc::new(Mutex::new(children));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (children, done, dir) = (children.clone(), done.clone(), dir.to_path_buf());
            std::thread::spawn(move || watch(&children, &done, &dir))
        };
        Ok(Locals { children, done, watcher: Some(watcher) })
    }

    /// Waits for the ranks to finish after training (they exit once it ends);
    /// an error names a rank that failed.
    pub fn finish(mut self) -> Result<()> {
        self.done.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        let mut children = self.children.lock().map_err(|_| anyhow::anyhow!("the rank list is poisoned"))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        for (rank, child) in children.iter_mut() {
            loop {
                match child.try_wait()? {
                    Some(status) if status.success() => break,
                    Some(status) => bail!("rank {rank} failed ({status})"),
                    None if Instant::now() > deadline => {
                        let _ = child.kill();
                        bail!("rank {rank} did not end within 120 s of training's end");
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Locals {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Ok(mut children) = self.children.lock() {
            for (_, child) in children.iter_mut() {
                if child.try_wait().ok().flatten().is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Until `done`: when a rank exits with a failure, the run is marked failed and
/// this process ends (the others block in a sum that can no longer complete).
fn watch(children: &Mutex<Vec<(usize, Child)>>, done: &AtomicBool, dir: &Path) {
    while !done.load(Ordering::SeqCst) {
        let failed = children.lock().ok().and_then(|mut list| {
            list.iter_mut().find_map(|(rank, child)| match child.try_wait() {
                Ok(Some(status)) if !status.success() => Some(format!("rank {rank} failed ({status})")),
                _ => None,
            })
        });
        if let Some(reason) = failed {
            super::signals::mark_failed(dir, &reason);
            if let Ok(mut list) = children.lock() {
                for (_, child) in list.iter_mut() {
                    let _ = child.kill();
                }
            }
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, &'static str>);
    impl Environment for Env {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| v.to_string())
        }
    }
    fn env(pairs: &[(&'static str, &'static str)]) -> Env {
        Env(pairs.iter().copied().collect())
    }

    #[test]
    fn a_process_finds_its_role() {
        let dir = Path::new("/runs/x/abc");
        assert_eq!(role(&env(&[]), 1, dir).unwrap(), Role::Alone);
        assert_eq!(role(&env(&[]), 4, dir).unwrap(), Role::Lead { size: 4, local: true });
        let started = env(&[("WMX_RANK", "2"), ("WMX_WORLD_SIZE", "4"), ("WMX_RENDEZVOUS", "/runs/x/abc/.r")]);
        assert_eq!(
            role(&started, 4, dir).unwrap(),
            Role::Follower(Place { rank: 2, size: 4, rendezvous: "/runs/x/abc/.r".into() })
        );
        let first = env(&[("WMX_RANK", "0"), ("WMX_WORLD_SIZE", "1"), ("WMX_RENDEZVOUS", "/tmp/r")]);
        assert_eq!(role(&first, 1, dir).unwrap(), Role::Lead { size: 1, local: false });
        assert_eq!(lead_rendezvous(&first, dir, false), Path::new("/tmp/r"));
        assert!(role(&env(&[("WMX_RANK", "4"), ("WMX_WORLD_SIZE", "4"), ("WMX_RENDEZVOUS", "r")]), 4, dir).is_err());
        // A batch script with several tasks is not a rank; an srun task is.
        let batch = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "7")];
        assert_eq!(role(&env(&batch), 1, dir).unwrap(), Role::Alone);
        let task = |rank: &'static str| {
            env(&[("SLURM_PROCID", rank), ("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "7"), ("SLURM_STEP_ID", "0")])
        };
        assert_eq!(role(&task("0"), 2, dir).unwrap(), Role::Lead { size: 2, local: false });
        assert_eq!(
            role(&task("1"), 1, dir).unwrap(),
            Role::Follower(Place { rank: 1, size: 2, rendezvous: dir.join(".rendezvous-7.0.0") })
        );
        assert_eq!(lead_rendezvous(&task("0"), dir, false), dir.join(".rendezvous-7.0.0"));
        let err = role(&task("0"), 4, dir).unwrap_err().to_string();
        assert!(err.contains("train.devices = 4") && err.contains("2 tasks"), "{err}");
    }

    #[test]
    fn the_id_travels_through_the_rendezvous_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".rendezvous-1");
        let id: Vec<u8> = (0..=255u8).step_by(2).collect();
        assert!(wait_for_id(&file, Duration::from_millis(150)).unwrap_err().to_string().contains("did not publish"));
        publish(&file, &id).unwrap();
        assert_eq!(wait_for_id(&file, Duration::from_secs(1)).unwrap(), id);
        std::fs::write(&file, "zz").unwrap();
        assert!(wait_for_id(&file, Duration::from_secs(1)).is_err());
    }
}
