//! Examples as JSONL files: one object a line, written atomically.

use std::path::{Path, PathBuf};

use super::{CurriculumError, Dataset, Example, Split};

/// Writes examples as JSONL (one object a line), atomically.
pub fn write_jsonl<'a>(
    path: &Path,
    examples: impl IntoIterator<Item = &'a Example>,
) -> Result<(), CurriculumError> {
    let fail = |message: String| CurriculumError::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    for example in examples {
        serde_json::to_writer(&mut out, example).map_err(|e| fail(e.to_string()))?;
        out.push(b'\n');
    }
    crate::fs::write_atomic(path, &out).map_err(|e| fail(e.to_string()))
}

/// Writes `train.jsonl`, `validation.jsonl` and `test.jsonl` into `dir`.
pub fn write_dataset(dir: &Path, dataset: &Dataset) -> Result<Vec<PathBuf>, CurriculumError> {
    std::fs::create_dir_all(dir).map_err(|e| CurriculumError::Write {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut written = Vec::new();
    for split in Split::ALL {
        let path = dir.join(format!("{split}.jsonl"));
        write_jsonl(&path, dataset.examples(split))?;
        written.push(path);
    }
    Ok(written)
}

/// Reads a JSONL file of examples written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>, CurriculumError> {
    let text = std::fs::read_to_string(path).map_err(|e| CurriculumError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| CurriculumError::Read {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

