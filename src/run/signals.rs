//! SIGINT and SIGTERM (Ctrl-C, `kill`, a scheduler's preemption): the first asks the
//! run to checkpoint and stop; a second stops the process at once, after marking the
//! active run `interrupted` in its `meta.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);
static INSTALL: Once = Once::new();

/// Installs the process's handler (once) and clears an earlier request to stop.
pub fn install() {
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                if let Some(run) = ACTIVE.lock().ok().and_then(|a| a.clone()) {
                    let dir = crate::rundir::RunDir::at(&run);
                    if let Some(mut meta) = dir.meta() {
                        meta.status = crate::rundir::Status::Interrupted;
                        meta.ended = Some(crate::rundir::now());
                        meta.reason = Some("a second signal stopped it before its checkpoint".into());
                        let _ = dir.write_meta(&meta);
                    }
                }
                std::process::exit(130);
            }
        });
        if let Err(err) = installed {
            log::warn!("cannot install the signal handler: {err}");
        }
    });
    INTERRUPTED.store(false, Ordering::SeqCst);
}

/// Whether a signal asked the process to stop.
pub fn interrupted() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Marks `run` as the run a second signal records as interrupted, until dropped.
pub struct Active;

impl Active {
    pub fn set(run: PathBuf) -> Active {
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(run);
        }
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
    }
}

/// Whether a panic comes from the GPU libraries (cubecl, burn's CubeCL backends and
/// fusion, cudarc), by the file it was raised in.
fn from_device(file: &str) -> bool {
    ["cubecl", "burn-fusion", "cudarc"].iter().any(|lib| file.contains(lib))
}

/// On a GPU backend: a panic inside the device libraries (an allocation the memory
/// manager refuses, a kernel that fails to generate, an illegal address) can leave
/// the device context or the process's heap corrupt, so unwinding from it may hang.
/// This hook records the run (when there is one: `wmx run`, not `eval` or `infer`)
/// as `failed`, with the panic as its reason, and ends the process at once (exit 1)
/// without running exit handlers. Other panics unwind as usual.
pub fn fail_fast_on_device_panics(run: Option<PathBuf>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let Some(location) = info.location().filter(|l| from_device(l.file())) else { return };
        let message = super::panic_message(info.payload());
        let reason = format!("the GPU backend panicked at {}:{}: {message}", location.file(), location.line());
        if let Some(run) = &run {
            mark_failed(run, &reason);
        } else {
            eprintln!("error: {reason}");
        }
        // SAFETY: _exit only ends the process; nothing after it runs.
        unsafe { libc::_exit(1) }
    }));
}

/// Records the run in `run` as `failed` with `reason` (in `meta.json` and its log)
/// and says so on standard error: for a process about to end at once, which cannot
/// return its error through `wmx run`'s usual path.
pub fn mark_failed(run: &std::path::Path, reason: &str) {
    let dir = crate::rundir::RunDir::at(run);
    if let Some(mut meta) = dir.meta() {
        meta.status = crate::rundir::Status::Failed;
        meta.ended = Some(crate::rundir::now());
        meta.reason = Some(reason.to_string());
        let _ = dir.write_meta(&meta);
    }
    dir.log(&format!("failed: {reason}"));
    eprintln!("error: {reason}; the run is marked failed");
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_panics_are_told_by_their_file() {
        assert!(super::from_device("/root/.cargo/registry/src/index/burn-cubecl-fusion-0.21.0/src/engine/codegen/ir.rs"));
        assert!(super::from_device("vendor/cubecl-cuda/src/compute/server.rs"));
        assert!(!super::from_device("src/train/fit.rs"));
        assert!(!super::from_device("/root/.cargo/registry/src/index/burn-core-0.21.0/src/module/param.rs"));
    }
}
