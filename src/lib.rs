//! wmx: declarative experiments for WASM WorldModels — language models that write a
//! WebAssembly program when a question needs computation, run it in a sandbox, and
//! answer from the computed value. The binary in `main.rs` is a thin shell over this.

pub mod backend;
pub mod bench;
pub mod compare;
pub mod config;
pub mod curriculum;
pub mod eval;
pub mod infer;
pub mod model;
pub mod profile;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod sweep;
pub mod tables;
pub mod tokenize;
pub mod train;

use std::io::Write;
use std::path::Path;

/// Formats a computed value as answers show it: integers without a decimal
/// point, other values rounded to at most four decimals.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// A file's stem as a name (`experiments/base.toml` → `base`).
pub fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into())
}

/// Joins `relative` onto the directory of `file`, removing `.` and `..` lexically,
/// so paths in messages and resolved configs read cleanly.
pub fn relative_to(file: &Path, relative: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let joined = file.parent().unwrap_or(Path::new("")).join(relative);
    let mut out = std::path::PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsynced, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_answers() {
        assert_eq!(format_value(1026.0), "1026");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(2.0 / 3.0), "0.6667");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(-0.00001), "0");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
