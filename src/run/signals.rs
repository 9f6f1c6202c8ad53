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
