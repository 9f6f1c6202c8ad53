//! Checkpoints: model, optimizer and cursor, written to a temporary directory,
//! fsynced, renamed into place, with a manifest of checksums. Loading takes the
//! newest checkpoint whose checksums hold and reports the ones that do not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::world::WorldModel;
use crate::train::fit::Cursor;

/// Errors writing or reading checkpoints; each names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Missing { path: PathBuf, message: String },
}

impl CheckpointError {
    /// The message without the path.
    pub fn detail(&self) -> &str {
        match self {
            CheckpointError::Io { message, .. }
            | CheckpointError::Corrupt { message, .. }
            | CheckpointError::Missing { message, .. } => message,
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The manifest written last into every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub step: usize,
    /// File name → SHA-256 (hex).
    pub files: BTreeMap<String, String>,
    /// Validation loss when the checkpoint closed an epoch.
    pub validation: Option<f64>,
}

const MODEL: &str = "model.mpk";
const OPTIMIZER: &str = "optimizer.mpk";
const CURSOR: &str = "cursor.json";
const MANIFEST: &str = "manifest.json";

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(hex_sha256(&bytes))
}

/// SHA-256 of `bytes`, in hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a new file and makes its contents durable.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Checks the checkpoint in `dir` (of `step`): its manifest against its files.
fn verify_dir(dir: &Path, step: usize) -> Result<Manifest, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: dir.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| corrupt(format!("no readable manifest: {e}")))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("bad manifest: {e}")))?;
    for name in [MODEL, OPTIMIZER, CURSOR] {
        let expected = manifest
            .files
            .get(name)
            .ok_or_else(|| corrupt(format!("manifest lacks {name}")))?;
        let found = sha256_file(&dir.join(name)).map_err(|e| corrupt(e.to_string()))?;
        if &found != expected {
            return Err(corrupt(format!("{name} does not match its checksum")));
        }
    }
    if manifest.step != step {
        return Err(corrupt(format!("its manifest is of step {}", manifest.step)));
    }
    Ok(manifest)
}

fn sync(path: &Path) -> Result<(), CheckpointError> {
    crate::fs::sync(path).map_err(|e| io(path, e))
}

pub use crate::config::Which;

/// The checkpoints of one run, in `dir`.
pub struct Checkpoints {
    pub dir: PathBuf,
    /// Newest checkpoints kept besides the best.
    pub keep_last: usize,
}

/// Temporary checkpoint directories start with this; a complete one (its manifest
/// holds) whose step is missing is moved into place at the next start.
const TMP_PREFIX: &str = ".tmp-step-";
/// A checkpoint being replaced by a newer save of the same step.
const REPLACED_PREFIX: &str = ".replaced-step-";

impl Checkpoints {
    pub fn at(dir: PathBuf, keep_last: usize) -> Checkpoints {
        Checkpoints { dir, keep_last }
    }

    fn step_dir(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step:08}"))
    }

    /// Removes what an earlier process left mid-save (the run's lock is held, so no
    /// one else writes here): a temporary directory whose checkpoint is complete and
    /// missing from its place is moved there; the rest are removed.
    pub fn clean_leftovers(&self) -> Result<(), CheckpointError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let mut changed = false;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
                let step = rest.split('-').next().and_then(|s| s.parse::<usize>().ok());
                let target = step.map(|s| self.step_dir(s));
                if let (Some(step), Some(target)) = (step, target)
                    && !target.exists()
                    && verify_dir(&path, step).is_ok()
                {
                    std::fs::rename(&path, &target).map_err(|e| io(&target, e))?;
                    log::info!("completed checkpoint {} from its temporary directory", target.display());
                } else {
                    std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                    log::debug!("removed the leftover {}", path.display());
                }
                changed = true;
            } else if name.starts_with(REPLACED_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                changed = true;
            }
        }
        if changed {
            sync(&self.dir)?;
        }
        Ok(())
    }

    /// Writes a checkpoint atomically, then prunes old ones.
    pub fn save<B: AutodiffBackend, O: Optimizer<WorldModel<B>, B>>(
        &self,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
        validation: Option<f64>,
    ) -> Result<PathBuf, CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!("{TMP_PREFIX}{:08}-{}", cursor.step, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let saved = self.save_in(&tmp, model, optim, cursor, validation);
        if saved.is_err() {
            // A full disk, say: leave no half-written directory behind.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        saved
    }

    fn save_in<B: AutodiffBackend, O: Optimizer<WorldModel<B>, B>>(
        &self,
        tmp: &Path,
        model: &WorldModel<B>,
        optim: &O,
        cursor: &Cursor,
        validation: Option<f64>,
    ) -> Result<PathBuf, CheckpointError> {
        let target = self.step_dir(cursor.step);
        std::fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
        // Records are encoded in memory and written here, so that a write error (a
        // full disk) reaches the message as the operating system gives it.
        let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let model_bytes = bytes.record(model.clone().into_record(), ()).map_err(|e| io(&tmp.join(MODEL), e))?;
        let optim_bytes = bytes.record(optim.to_record(), ()).map_err(|e| io(&tmp.join(OPTIMIZER), e))?;
        let cursor_bytes = serde_json::to_vec_pretty(cursor).map_err(|e| io(tmp, e))?;
        let mut files = BTreeMap::new();
        for (name, content) in [(MODEL, &model_bytes), (OPTIMIZER, &optim_bytes), (CURSOR, &cursor_bytes)] {
            let path = tmp.join(name);
            write_synced(&path, content).map_err(|e| io(&path, e))?;
            files.insert(name.to_string(), hex_sha256(content));
        }
        let manifest = Manifest {
            step: cursor.step,
            files,
            validation,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| io(tmp, e))?;
        crate::fs::write_atomic(&tmp.join(MANIFEST), &bytes).map_err(|e| io(&tmp.join(MANIFEST), e))?;
        sync(tmp)?;
        // A directory cannot be renamed over a non-empty one: an older save of this
        // step is renamed aside first, and removed once the new one is in place. Older
        // steps are pruned only after that, so a complete checkpoint always exists.
        let replaced = self.dir.join(format!("{REPLACED_PREFIX}{:08}-{}", cursor.step, std::process::id()));
        let replacing = target.exists();
        if replacing {
            std::fs::rename(&target, &replaced).map_err(|e| io(&target, e))?;
        }
        std::fs::rename(tmp, &target).map_err(|e| io(&target, e))?;
        sync(&self.dir)?;
        if replacing {
            std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
        }
        log::debug!("checkpoint {} saved", target.display());
        self.prune(cursor.best_validation.map(|(_, step)| step))?;
        Ok(target)
    }

    /// Copies checkpoint `step` of `from` (another run's) in as this run's own, whole
    /// or not at all: copied into a temporary directory, checked against its
    /// manifest, then renamed into place.
    pub fn adopt(&self, from: &Checkpoints, step: usize) -> Result<PathBuf, CheckpointError> {
        let source = from.step_dir(step);
        from.verify(step)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!("{TMP_PREFIX}{step:08}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let copied = (|| {
            std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
            for name in [MODEL, OPTIMIZER, CURSOR, MANIFEST] {
                std::fs::copy(source.join(name), tmp.join(name)).map_err(|e| io(&source.join(name), e))?;
            }
            verify_dir(&tmp, step)?;
            sync(&tmp)?;
            let target = self.step_dir(step);
            std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
            sync(&self.dir)?;
            Ok(target)
        })();
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        copied
    }

    /// Step numbers of the checkpoints present, newest first.
    pub fn steps(&self) -> Vec<usize> {
        let mut steps: Vec<usize> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
            .collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        steps
    }

    /// Keeps the newest `keep_last` and the best; removes the rest.
    fn prune(&self, best: Option<usize>) -> Result<(), CheckpointError> {
        for (i, step) in self.steps().into_iter().enumerate() {
            if i >= self.keep_last && Some(step) != best {
                let dir = self.step_dir(step);
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        Ok(())
    }

    /// The model file of the checkpoint at `step`.
    pub fn model_path(&self, step: usize) -> PathBuf {
        self.step_dir(step).join(MODEL)
    }

    /// Checks a checkpoint's manifest against its files.
    pub fn verify(&self, step: usize) -> Result<Manifest, CheckpointError> {
        verify_dir(&self.step_dir(step), step)
    }


    /// The checkpoint `which` names, verified. A corrupt one is an error naming it
    /// and the valid ones there are: never silently another checkpoint.
    pub fn choose(&self, which: Which) -> Result<usize, CheckpointError> {
        let steps = self.steps();
        let valid = || -> String {
            let ok: Vec<String> = steps
                .iter()
                .filter(|&&s| self.verify(s).is_ok())
                .map(|s| format!("step-{s}"))
                .collect();
            if ok.is_empty() { "none is valid".into() } else { format!("valid ones: {}", ok.join(", ")) }
        };
        let missing = |message: String| CheckpointError::Missing { path: self.dir.clone(), message };
        let step = match which {
            Which::Latest => *steps.first().ok_or_else(|| missing("there are no checkpoints".into()))?,
            Which::Step(n) => {
                if !steps.contains(&n) {
                    return Err(missing(format!("there is no step-{n}; {}", valid())));
                }
                n
            }
            Which::Best => {
                let best = steps
                    .iter()
                    .filter_map(|&s| Some((self.verify(s).ok()?.validation?, s)))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                return best.map(|(_, s)| s).ok_or_else(|| {
                    missing(format!("no valid checkpoint closes an epoch with a validation loss; {}", valid()))
                });
            }
        };
        self.verify(step).map_err(|e| CheckpointError::Corrupt {
            path: self.step_dir(step),
            message: format!("{}; pass --checkpoint step-N to use another ({})", e.detail(), valid()),
        })?;
        Ok(step)
    }

    /// The newest checkpoint whose files match its manifest, and the newer ones
    /// that did not.
    pub fn newest_valid(&self) -> (Option<usize>, Vec<CheckpointError>) {
        let mut skipped = Vec::new();
        for step in self.steps() {
            match self.verify(step) {
                Ok(_) => return (Some(step), skipped),
                Err(e) => skipped.push(e),
            }
        }
        (None, skipped)
    }

    /// Loads the newest valid checkpoint into `model` and `optim`; returns them with
    /// the cursor, and the corrupt checkpoints that were skipped.
    #[allow(clippy::type_complexity)]
    pub fn load_latest<B: AutodiffBackend, O: Optimizer<WorldModel<B>, B>>(
        &self,
        model: WorldModel<B>,
        optim: O,
        device: &B::Device,
    ) -> Result<
        (
            Option<(WorldModel<B>, O, Cursor, usize)>,
            Vec<CheckpointError>,
        ),
        CheckpointError,
    > {
        let (found, skipped) = self.newest_valid();
        if let Some(step) = found {
            let dir = self.step_dir(step);
            let stem = |name: &str| dir.join(name.trim_end_matches(".mpk"));
            let model = model
                .load_file(stem(MODEL), &recorder(), device)
                .map_err(|e| io(&dir.join(MODEL), e))?;
            let record = recorder()
                .load(stem(OPTIMIZER), device)
                .map_err(|e| io(&dir.join(OPTIMIZER), e))?;
            let optim = optim.load_record(record);
            let text =
                std::fs::read_to_string(dir.join(CURSOR)).map_err(|e| io(&dir.join(CURSOR), e))?;
            let cursor: Cursor =
                serde_json::from_str(&text).map_err(|e| io(&dir.join(CURSOR), e))?;
            return Ok((Some((model, optim, cursor, step)), skipped));
        }
        Ok((None, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint directory with dummy files and a manifest that holds.
    fn fake_checkpoint(dir: &Path, step: usize) {
        std::fs::create_dir_all(dir).unwrap();
        let mut files = BTreeMap::new();
        for name in [MODEL, OPTIMIZER, CURSOR] {
            let content = format!("{name} of step {step}");
            std::fs::write(dir.join(name), &content).unwrap();
            files.insert(name.to_string(), hex_sha256(content.as_bytes()));
        }
        let manifest = Manifest { step, files, validation: Some(0.5) };
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&manifest).unwrap()).unwrap();
    }

    #[test]
    fn leftovers_of_a_killed_save_are_completed_or_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::at(tmp.path().to_path_buf(), 2);
        fake_checkpoint(&checkpoints.step_dir(3), 3);
        // Killed between renaming the old step 5 aside and the new one into place.
        fake_checkpoint(&tmp.path().join(format!("{TMP_PREFIX}00000005-41")), 5);
        fake_checkpoint(&tmp.path().join(format!("{REPLACED_PREFIX}00000005-41")), 5);
        // Killed while writing step 7: no manifest yet.
        let torn = tmp.path().join(format!("{TMP_PREFIX}00000007-42"));
        std::fs::create_dir_all(&torn).unwrap();
        std::fs::write(torn.join(MODEL), b"half").unwrap();
        checkpoints.clean_leftovers().unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["step-00000003", "step-00000005"]);
        assert_eq!(checkpoints.choose(Which::Latest).unwrap(), 5);
        assert_eq!(checkpoints.choose(Which::Step(3)).unwrap(), 3);
        assert!(checkpoints.choose(Which::Step(4)).is_err());
        assert_eq!("step-12".parse::<Which>(), Ok(Which::Step(12)));
        assert!("newest".parse::<Which>().is_err());
    }

    #[test]
    fn a_corrupt_latest_checkpoint_is_an_error_naming_the_valid_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::at(tmp.path().to_path_buf(), 2);
        fake_checkpoint(&checkpoints.step_dir(3), 3);
        fake_checkpoint(&checkpoints.step_dir(6), 6);
        std::fs::write(checkpoints.step_dir(6).join(MODEL), b"flipped").unwrap();
        let err = checkpoints.choose(Which::Latest).unwrap_err().to_string();
        assert!(err.contains("step-00000006") && err.contains("valid ones: step-3"), "{err}");
        assert_eq!(checkpoints.choose(Which::Best).unwrap(), 3);
    }
}
