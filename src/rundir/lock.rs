//! The exclusive lock a run holds on its directory for its whole life.
//!
//! The lock is an OS file lock (`flock`) on `runs/<experiment>/<id>.lock`, beside the
//! run directory so that `--fresh` can move the directory aside while holding it. The
//! operating system releases it when the holder exits, however it exits, so a lock
//! left by a killed process is simply taken by the next run. The file keeps the
//! holder's pid so that a refused run can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::RunError;

/// Held while a run trains, evaluates and reports; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file of the run directory `run`.
pub fn lock_path(run: &Path) -> PathBuf {
    let name = run.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    run.with_file_name(format!("{name}.lock"))
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl RunLock {
    /// Takes the lock on run directory `run`, or fails with [`RunError::Locked`]
    /// naming the process that holds it.
    pub fn acquire(run: &Path) -> Result<RunLock, RunError> {
        let path = lock_path(run);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RunError::Io {
                path: parent.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let io = |e: std::io::Error| RunError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut file = open(&path).map_err(io)?;
        // `wmx ls` probes the lock with a brief shared lock; wait that out.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(40));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(RunError::Locked {
                        path: run.to_path_buf(),
                        pid: holder_pid(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(RunLock { _file: file, path })
    }

    /// Whether a live process holds the lock of run directory `run`; `Some(pid)`
    /// (the pid when it wrote one) if so.
    pub fn holder(run: &Path) -> Option<Option<u32>> {
        let mut file = File::open(lock_path(run)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(TryLockError::WouldBlock) => Some(holder_pid(&mut file)),
            Err(TryLockError::Error(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("runs/x/abc");
        let first = RunLock::acquire(&run).unwrap();
        assert_eq!(RunLock::holder(&run), Some(Some(std::process::id())));
        match RunLock::acquire(&run) {
            Err(RunError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        assert_eq!(RunLock::holder(&run), None);
        RunLock::acquire(&run).unwrap();
    }
}
