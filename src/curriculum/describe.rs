//! A curriculum as `wmx validate` shows it, and how a file is told to be one.

use std::fmt::Write;
use std::path::Path;

use super::Curriculum;

/// Whether `path` is a curriculum file (it has `[[stages]]`) rather than an experiment.
pub fn is_curriculum_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("stages"))
}

impl Curriculum {
    /// The curriculum's name and file, then one line per stage.
    pub fn describe(&self) -> String {
        let mut out = format!("curriculum  {} ({})\n", self.name, self.path.display());
        for stage in &self.file.stages {
            let families: Vec<String> = stage.families.iter().map(|f| f.task.name()).collect();
            let _ = writeln!(
                out,
                "  stage {:<18} {:>5} examples × {:>2} epochs, replay {:.2}: {}",
                stage.name,
                stage.count,
                stage.epochs,
                stage.replay,
                families.join(", ")
            );
        }
        out
    }
}
