//! Tables through Polars: a run's metrics as parquet beside their CSV, and reading
//! them back for reports and comparisons.

use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{CsvReadOptions, CsvWriter, DataFrame, ParquetReader, ParquetWriter, SerReader, SerWriter};

/// Reads a CSV with a header row, inferring column types.
pub fn read_csv(path: &Path) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `frame` as parquet, atomically (a temporary file renamed into place).
pub fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(frame)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    crate::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Rewrites `parquet` from `csv` (both describe the same rows).
pub fn csv_to_parquet(csv: &Path, parquet: &Path) -> Result<()> {
    let mut frame = read_csv(csv)?;
    write_parquet(&mut frame, parquet)
}

/// Writes `frame` as CSV with a header row, atomically.
pub fn write_csv(frame: &mut DataFrame, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(frame)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    crate::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}
