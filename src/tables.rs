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
    crate::fs::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
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
    crate::fs::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Rows of text cells shown as a table: aligned columns for the terminal, or
/// markdown for reports. Every table wmx prints or writes as text goes through it.
#[derive(Debug, Clone, Default)]
pub struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns whose cells line up on the right (numbers).
    right: Vec<bool>,
}

impl TextTable {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> TextTable {
        let header: Vec<String> = header.into_iter().map(Into::into).collect();
        let right = vec![false; header.len()];
        TextTable { header, rows: Vec::new(), right }
    }

    /// Aligns these columns' cells on the right in the terminal.
    pub fn right(mut self, columns: &[usize]) -> TextTable {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Columns padded to their widest cell, two spaces apart, no trailing blanks.
    pub fn terminal(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate().take(columns) {
                let pad = " ".repeat(widths[c] - cell.chars().count());
                if c > 0 {
                    line.push_str("  ");
                }
                match self.right[c] {
                    true => line.push_str(&format!("{pad}{cell}")),
                    false => line.push_str(&format!("{cell}{pad}")),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A markdown table: the header, its rule, then one line per row.
    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n|{}|\n", self.header.join(" | "), vec!["---"; self.header.len()].join("|"));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::TextTable;

    #[test]
    fn text_tables_align_their_columns_and_write_markdown() {
        let mut t = TextTable::new(["run", "steps"]).right(&[1]);
        t.row(["base/1a2b", "36"]);
        t.row(["x", "1200"]);
        assert_eq!(t.terminal(), "run        steps\nbase/1a2b     36\nx           1200\n");
        assert_eq!(t.markdown(), "| run | steps |\n|---|---|\n| base/1a2b | 36 |\n| x | 1200 |\n");
    }
}
