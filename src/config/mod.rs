//! Experiment files: plain serde structs (unknown keys are errors, defaults are
//! explicit), layered with figment — TOML file (with `extends`) → `WMX_` env →
//! `--set key=value` — and checked into an [`Experiment`] before anything runs.

mod check;
mod describe;
mod hf_shapes;
mod schema;

pub use check::check_experiment;
pub use schema::*;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};


/// Errors reading or checking an experiment file. Each names the file and, where
/// it can, the key and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: file not found{}", via.as_ref().map(|v| format!(" (named by key `extends` in {})", v.display())).unwrap_or_default())]
    NotFound { path: PathBuf, via: Option<PathBuf> },
    #[error("{path}: cannot read: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: TOML syntax error: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: `extends` cycle: {chain}")]
    Cycle { path: PathBuf, chain: String },
    #[error("{source_name}: key `{key}`: {message}")]
    Key {
        key: String,
        source_name: String,
        message: String,
    },
    #[error("--set {raw}: expected KEY=VALUE")]
    BadSet { raw: String },
}

impl ConfigError {
    pub fn key(
        key: impl Into<String>,
        source_name: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Key {
            key: key.into(),
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Renders a TOML parse error on one line with its position.
pub fn toml_error(e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(_) => {
            // `Display` carries "TOML parse error at line L, column C" first.
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            let position = first
                .strip_prefix("TOML parse error at ")
                .unwrap_or(&first)
                .to_string();
            format!("{position}: {message}")
        }
        None => message,
    }
}

/// A loaded experiment: the resolved values and where they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub experiment: Experiment,
    /// The experiment file given on the command line.
    pub path: PathBuf,
    /// Every file read, the given one first, then what it extends.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// The experiment's name: `name`, else the file stem.
    pub fn name(&self) -> String {
        self.experiment
            .name
            .clone()
            .unwrap_or_else(|| crate::fs::file_stem(&self.path))
    }
}

/// Loads an experiment: file (and what it extends) → `WMX_` env → `--set` overrides.
pub fn load(path: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
    load_with_env(path, overrides, overrides_from_env())
}

/// The `WMX_` variables that override keys: `WMX_SECTION__KEY` for a key in a
/// section (`WMX_TRAIN__EPOCH_SCALE=0.1`) and `WMX_SEED`, `WMX_NAME`, `WMX_BACKEND`,
/// `WMX_CURRICULUM` for the top-level ones. Every other `WMX_` variable (the
/// switches WMX_CUBLAS, WMX_KERNEL_CACHE, … and anything else) is not a key and is
/// left alone.
pub fn overrides_from_env() -> Env {
    const SECTIONS: &[&str] = &["model", "wat", "fusion", "selection", "sandbox", "train", "eval", "tracking"];
    const TOP_LEVEL: &[&str] = &["name", "seed", "backend", "curriculum"];
    Env::prefixed("WMX_")
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            match key.split_once("__") {
                Some((section, _)) => SECTIONS.contains(&section),
                None => TOP_LEVEL.contains(&key.as_str()),
            }
        })
        .split("__")
}

/// As [`load`], with the environment provider given (tests pass their own).
pub fn load_with_env(path: &Path, overrides: &[String], env: Env) -> Result<Loaded, ConfigError> {
    let mut files = Vec::new();
    let mut figment = layer_file(path, None, &mut files)?;
    figment = figment.merge(env);
    for raw in overrides {
        figment = figment.merge(SetOverride::parse(raw)?);
    }
    let mut experiment: Experiment = figment.extract().map_err(|e| figment_error(&figment, e))?;
    // Paths are relative to the file (or the working directory, for env and --set) that set them.
    let resolve = |key: &str, value: &Path| -> PathBuf {
        match figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path())
        {
            Some(file) if value.is_relative() => crate::fs::relative_to(file, value),
            _ => value.to_path_buf(),
        }
    };
    experiment.curriculum = resolve("curriculum", &experiment.curriculum);
    if let Some(checkpoint) = &experiment.model.checkpoint {
        experiment.model.checkpoint = Some(resolve("model.checkpoint", checkpoint));
    }
    if let Some(files_dir) = &experiment.sandbox.system.files {
        experiment.sandbox.system.files = Some(resolve("sandbox.system.files", files_dir));
    }
    if let Some(init) = &mut experiment.train.init_from {
        init.run = resolve("train.init_from.run", &init.run);
    }
    hf_shapes::take_shapes(&mut experiment, &figment, path)?;
    let loaded = Loaded {
        experiment,
        path: path.to_path_buf(),
        files,
    };
    check::check(&loaded, &figment)?;
    Ok(loaded)
}

/// A figment for `path` with everything it extends underneath it.
fn layer_file(
    path: &Path,
    via: Option<&Path>,
    files: &mut Vec<PathBuf>,
) -> Result<Figment, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::NotFound {
            path: path.to_path_buf(),
            via: via.map(Path::to_path_buf),
        });
    }
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if files
        .iter()
        .any(|f| f.canonicalize().ok().as_ref() == Some(&canonical))
    {
        let chain: Vec<String> = files
            .iter()
            .chain([&path.to_path_buf()])
            .map(|f| f.display().to_string())
            .collect();
        return Err(ConfigError::Cycle {
            path: path.to_path_buf(),
            chain: chain.join(" → "),
        });
    }
    files.push(path.to_path_buf());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Parse once ourselves: toml reports line and column, figment does not.
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: toml_error(&e),
    })?;
    let own = Figment::from(Toml::file_exact(path));
    match table.get("extends") {
        None => Ok(own),
        Some(toml::Value::String(parent)) => {
            let parent_path = crate::fs::relative_to(path, Path::new(parent));
            Ok(layer_file(&parent_path, Some(path), files)?.merge(own))
        }
        Some(other) => Err(ConfigError::key(
            "extends",
            path.display().to_string(),
            format!("expected a file name, found {}", other.type_str()),
        )),
    }
}

/// Maps a figment extraction error to one naming the full key and its source.
fn figment_error(figment: &Figment, err: figment::Error) -> ConfigError {
    let mut key = err.path.join(".");
    if let figment::error::Kind::UnknownField(field, _) = &err.kind
        && err.path.last() != Some(field)
    {
        key = if key.is_empty() {
            field.clone()
        } else {
            format!("{key}.{field}")
        };
    }
    let source = err
        .metadata
        .as_ref()
        .or_else(|| figment.find_metadata(&key))
        .map(describe_source)
        .unwrap_or_else(|| "experiment".into());
    let message = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        kind => kind.to_string(),
    };
    ConfigError::key(
        if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        source,
        message,
    )
}

fn describe_source(metadata: &Metadata) -> String {
    match metadata.source.as_ref() {
        Some(figment::Source::File(path)) => path.display().to_string(),
        Some(figment::Source::Custom(name)) => name.clone(),
        _ => metadata.name.to_string(),
    }
}

/// A `--set key=value` override; the value is read as TOML (`3`, `[1, 2]`,
/// `"text"`), falling back to a plain string.
struct SetOverride {
    raw: String,
    data: Dict,
}

impl SetOverride {
    fn parse(raw: &str) -> Result<SetOverride, ConfigError> {
        let (key, value) = raw.split_once('=').ok_or_else(|| ConfigError::BadSet {
            raw: raw.to_string(),
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::BadSet {
                raw: raw.to_string(),
            });
        }
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let data = Serialized::default(key, value)
            .data()
            .map_err(|e| ConfigError::key(key, format!("--set {raw}"), e.to_string()))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        Ok(SetOverride {
            raw: raw.to_string(),
            data,
        })
    }
}

impl Provider for SetOverride {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            format!("--set {}", self.raw),
            figment::Source::Custom(format!("--set {}", self.raw)),
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn no_env() -> Env {
        Env::prefixed("WMX_TEST_NEVER_SET_")
    }

    #[test]
    fn layers_apply_file_then_extends_then_set() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.toml",
            "seed = 1\n[train]\nbatch_size = 8\nlearning_rate = 0.01\n",
        );
        let child = write(
            dir.path(),
            "child.toml",
            "extends = \"base.toml\"\n[train]\nbatch_size = 16\n",
        );
        let loaded = load_with_env(&child, &["train.learning_rate=0.5".into()], no_env()).unwrap();
        assert_eq!(loaded.experiment.seed, 1);
        assert_eq!(loaded.experiment.train.batch_size, 16);
        assert_eq!(loaded.experiment.train.learning_rate, 0.5);
        assert_eq!(loaded.files.len(), 2);
        assert_eq!(loaded.name(), "child");
    }

    #[test]
    fn evaluation_batches_follow_the_backend_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let unset = write(dir.path(), "unset.toml", "seed = 1\n");
        let e = load_with_env(&unset, &[], no_env()).unwrap().experiment;
        assert_eq!((e.eval.batch(true), e.eval.batch(false)), (16, 128));
        let e = load_with_env(&unset, &["eval.batch_size=8".into()], no_env()).unwrap().experiment;
        assert_eq!((e.eval.batch(true), e.eval.batch(false)), (8, 8));
        // Unset, it is left out of the resolved config a run writes.
        let e = load_with_env(&unset, &[], no_env()).unwrap().experiment;
        assert!(!toml::to_string(&e.eval).unwrap().contains("batch_size"));
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "e.toml", "[train]\nbatch_sise = 8\n");
        let err = load_with_env(&path, &[], no_env()).unwrap_err().to_string();
        assert!(err.contains("train.batch_sise"), "{err}");
        assert!(err.contains("e.toml"), "{err}");
    }

    #[test]
    fn out_of_range_fusion_layer_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "e.toml",
            "[model]\nnum_hidden_layers = 4\n[fusion]\nlayers = [1, 4]\n",
        );
        let err = load_with_env(&path, &[], no_env()).unwrap_err().to_string();
        assert!(
            err.contains("fusion.layers") && err.contains("out of range") && err.contains("e.toml"),
            "{err}"
        );
    }

    #[test]
    fn paths_resolve_relative_to_the_file_that_sets_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(
            dir.path(),
            "base.toml",
            "curriculum = \"c/standard.toml\"\n",
        );
        let child = write(
            &dir.path().join("sub"),
            "child.toml",
            "extends = \"../base.toml\"\n",
        );
        let loaded = load_with_env(&child, &[], no_env()).unwrap();
        assert_eq!(
            loaded.experiment.curriculum,
            dir.path().join("c/standard.toml")
        );
    }
}
