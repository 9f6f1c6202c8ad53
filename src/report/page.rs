//! The report's pages, `index.html` (self-contained: charts inline as PNG data) and
//! `report.md`, rendered from templates in `templates/`.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use polars::prelude::DataFrame;
use serde::Serialize;

use super::Contents;

/// A table for the report: the page's rows and a DataFrame for parquet and CSV.
pub struct Table {
    pub name: String,
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub frame: DataFrame,
}

#[derive(Serialize)]
struct PageTable<'a> {
    name: &'a str,
    caption: &'a str,
    header: &'a [String],
    rows: &'a [Vec<String>],
}

#[derive(Serialize)]
struct PageFigure<'a> {
    name: &'a str,
    title: &'a str,
    caption: &'a str,
    /// Base64 PNG (HTML only).
    png: String,
}

#[derive(Serialize)]
struct Page<'a> {
    heading: &'a str,
    label: &'a str,
    facts: &'a [(String, String)],
    notes: &'a [String],
    figures: Vec<PageFigure<'a>>,
    tables: Vec<PageTable<'a>>,
    table_names: &'a [String],
}

/// Writes `out/index.html` and `out/report.md`; `pngs` are the figures' images in order.
pub(super) fn write(
    out: &Path,
    heading: &str,
    label: &str,
    facts: &[(String, String)],
    contents: &Contents,
    pngs: &[Vec<u8>],
    table_names: &[String],
) -> Result<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    let page = |inline: bool| Page {
        heading,
        label,
        facts,
        notes: &contents.notes,
        figures: contents
            .figures
            .iter()
            .zip(pngs)
            .map(|(f, png)| PageFigure {
                name: &f.name,
                title: f.chart.title(),
                caption: &f.caption,
                png: if inline { engine.encode(png) } else { String::new() },
            })
            .collect(),
        tables: contents
            .tables
            .iter()
            .map(|t| PageTable { name: &t.name, caption: &t.caption, header: &t.header, rows: &t.rows })
            .collect(),
        table_names,
    };
    let mut templates = minijinja::Environment::new();
    templates.add_template("report.html", include_str!("templates/report.html"))?;
    templates.add_template("report.md", include_str!("templates/report.md"))?;
    for (name, inline) in [("report.md", false), ("index.html", true)] {
        let template = if inline { "report.html" } else { "report.md" };
        let text = templates.get_template(template)?.render(page(inline))?;
        crate::fs::write_atomic(&out.join(name), text.as_bytes())
            .with_context(|| format!("cannot write {}/{name}", out.display()))?;
    }
    Ok(())
}
