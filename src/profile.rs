//! Where the host's time goes during timed steps (`wmx bench train --host-profile
//! FILE`): every thread's stack is sampled 1,000 times per second of CPU time and
//! written folded — one `thread;outermost;…;innermost count` line per distinct
//! stack, the format flame-graph tools read; `scripts/host_profile.py` summarises it.
//! Sampling needs the `profile` cargo feature (pprof); symbols need a binary that
//! was not stripped (`cargo build --profile profiling --features profile`).

use std::path::{Path, PathBuf};

/// Whether this build can sample stacks.
pub const AVAILABLE: bool = cfg!(feature = "profile");

/// Why a build without the `profile` feature cannot write `path`.
pub fn unavailable(path: &Path) -> String {
    format!(
        "cannot profile into {}: this wmx was built without the `profile` feature; \
         rebuild with `cargo build --profile profiling --features profile`",
        path.display()
    )
}

/// A running profile; [`HostProfile::finish`] writes it.
pub struct HostProfile {
    path: PathBuf,
    #[cfg(feature = "profile")]
    guard: pprof::ProfilerGuard<'static>,
}

impl HostProfile {
    /// Starts sampling, to be written to `path`.
    pub fn start(path: &Path) -> Result<HostProfile, String> {
        #[cfg(feature = "profile")]
        {
            let guard = pprof::ProfilerGuardBuilder::default()
                .frequency(1000)
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()
                .map_err(|e| format!("cannot start the host profiler: {e}"))?;
            Ok(HostProfile { path: path.to_path_buf(), guard })
        }
        #[cfg(not(feature = "profile"))]
        Err(unavailable(path))
    }

    /// Stops sampling and writes the folded stacks; returns how many samples.
    pub fn finish(self) -> Result<u64, String> {
        #[cfg(feature = "profile")]
        {
            let report = self
                .guard
                .report()
                .build()
                .map_err(|e| format!("cannot read the host profile: {e}"))?;
            let mut lines: Vec<(String, u64)> = report
                .data
                .iter()
                .map(|(frames, &count)| {
                    let mut line = frames.thread_name_or_id().replace(';', ":");
                    // pprof lists the innermost frame first.
                    for symbols in frames.frames.iter().rev() {
                        for symbol in symbols.iter().rev() {
                            line.push(';');
                            line.push_str(&symbol.name().replace(';', ":"));
                        }
                    }
                    (line, count.max(0) as u64)
                })
                .collect();
            lines.sort();
            let samples = lines.iter().map(|(_, n)| n).sum();
            let text: String = lines.iter().map(|(l, n)| format!("{l} {n}\n")).collect();
            crate::fs::write_atomic(&self.path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            Ok(samples)
        }
        #[cfg(not(feature = "profile"))]
        Err(format!("no profile was taken for {}", self.path.display()))
    }
}
