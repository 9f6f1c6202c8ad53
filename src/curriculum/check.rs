//! What a curriculum is checked for when it loads, beyond its types: shares,
//! counts, carriers, phrasings and their placeholders, the pools each task draws on.

use std::collections::HashSet;

use super::tasks::{DISTRACTOR, Kind, Task};
use crate::sandbox::bind;
use super::{Curriculum, CurriculumError, FamilySpec, StageSpec};

impl Curriculum {
    /// Checks what serde cannot: shares, counts, placeholders, pools.
    pub(super) fn check(&self) -> Result<(), CurriculumError> {
        let f = &self.file;
        for (key, share) in [("splits.validation", f.splits.validation), ("splits.test", f.splits.test)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(self.invalid(key.into(), "must be between 0 and 1"));
            }
        }
        f.sandbox.check().map_err(|(key, msg)| self.invalid(format!("sandbox.{key}"), msg))?;
        if f.stages.is_empty() {
            return Err(self.invalid("stages".into(), "declare at least one stage"));
        }
        let mut names = HashSet::new();
        for (si, stage) in f.stages.iter().enumerate() {
            let key = |rest: &str| format!("stages[{si}] ({}).{rest}", stage.name);
            if !names.insert(stage.name.as_str()) {
                return Err(self.invalid(key("name"), "stage names must be unique"));
            }
            self.check_stage(stage, &key)?;
            for (fi, family) in stage.families.iter().enumerate() {
                let fkey = |rest: &str| key(&format!("families[{fi}] ({}).{rest}", family.task.name()));
                self.check_family(family, &fkey)?;
            }
        }
        Ok(())
    }

    /// A stage's counts and its carriers (and its families' own carriers).
    fn check_stage(&self, stage: &StageSpec, key: &dyn Fn(&str) -> String) -> Result<(), CurriculumError> {
        if stage.epochs == 0 {
            return Err(self.invalid(key("epochs"), "must be at least 1"));
        }
        if !(0.0..1.0).contains(&stage.replay) {
            return Err(self.invalid(key("replay"), "must be in [0, 1)"));
        }
        if stage.families.is_empty() && stage.count > 0 {
            return Err(self.invalid(key("families"), "a stage with a count needs families"));
        }
        let frame_error = |carriers: &[String]| {
            carriers
                .iter()
                .find(|c| c.matches("{core}").count() != 1)
                .map(|bad| format!("`{bad}` must contain `{{core}}` exactly once"))
        };
        if let Some(message) = frame_error(&stage.carriers) {
            return Err(self.invalid(key("carriers"), message));
        }
        if let Some(message) = frame_error(&stage.train_carriers) {
            return Err(self.invalid(key("train_carriers"), message));
        }
        for (fi, family) in stage.families.iter().enumerate() {
            let name = family.task.name();
            if let Some(message) = family.carriers.as_deref().and_then(frame_error) {
                return Err(self.invalid(key(&format!("families[{fi}] ({name}).carriers")), message));
            }
            if let Some(message) = family.train_carriers.as_deref().and_then(frame_error) {
                return Err(self.invalid(key(&format!("families[{fi}] ({name}).train_carriers")), message));
            }
            if family.train_carriers.is_some() && family.carriers.is_none() {
                return Err(self.invalid(
                    key(&format!("families[{fi}] ({name}).train_carriers")),
                    "belongs with the family's own `carriers`; without them, set the stage's `train_carriers`",
                ));
            }
        }
        if stage.carriers.is_empty()
            && let Some(f) = stage.families.iter().find(|f| !f.cores.is_empty() && f.carriers.is_none())
        {
            return Err(self.invalid(
                key("carriers"),
                format!("family `{}` declares cores; the stage needs carriers to put them in", f.task.name()),
            ));
        }
        Ok(())
    }

    /// A family's weight, phrasings, answer template, and the pools and sandbox its task needs.
    fn check_family(&self, family: &FamilySpec, fkey: &dyn Fn(&str) -> String) -> Result<(), CurriculumError> {
        if !(family.weight > 0.0 && family.weight.is_finite()) {
            return Err(self.invalid(fkey("weight"), "must be positive"));
        }
        if family.phrasings.is_empty() {
            return Err(self.invalid(fkey("phrasings"), "declare at least one phrasing"));
        }
        if family.held_out.is_empty() {
            return Err(self.invalid(fkey("held_out"), "declare at least one held-out phrasing for the test split"));
        }
        let all = family
            .phrasings
            .iter()
            .map(|p| ("phrasings", p))
            .chain(family.held_out.iter().map(|p| ("held_out", p)));
        for (i, (list, phrasing)) in all.enumerate() {
            let index = if list == "phrasings" { i } else { i - family.phrasings.len() };
            check_phrasing(family.task, phrasing).map_err(|msg| self.invalid(fkey(&format!("{list}[{index}]")), msg))?;
        }
        if let Some(answer) = &family.answer
            && !answer.contains("{value}")
        {
            return Err(self.invalid(fkey("answer"), "the answer template needs `{value}`"));
        }
        let f = &self.file;
        let p = &f.pools;
        let needs = |pool: &[String], held: &[String], name: &str| -> Result<(), CurriculumError> {
            if pool.is_empty() || held.is_empty() {
                return Err(self.invalid(
                    format!("pools.{name}"),
                    format!("task `{}` needs `{name}` and `held_out_{name}`", family.task.name()),
                ));
            }
            Ok(())
        };
        match family.task {
            Task::CountChar | Task::TextLength | Task::CountWords | Task::CountVowels => {
                needs(&p.texts, &p.held_out_texts, "texts")?
            }
            Task::FileSize | Task::FileLines => needs(&p.files, &p.held_out_files, "files")?,
            Task::FileNumber => needs(&p.number_files, &p.held_out_number_files, "number_files")?,
            _ => {}
        }
        if family.task.needs_system() && f.sandbox.system.files.is_none() && family.task != Task::ClockYear {
            return Err(self.invalid("sandbox.system.files".into(), "file tasks need a files directory"));
        }
        if family.task == Task::ClockYear && f.sandbox.system.clock == "real" {
            return Err(self.invalid(
                "sandbox.system.clock".into(),
                "clock tasks need a fixed clock so their values are reproducible",
            ));
        }
        Ok(())
    }
}

/// Checks a phrasing: each placeholder of the task exactly once, nothing else
/// in braces, and no stray numbers or quotes that would bind as arguments.
pub(super) fn check_phrasing(task: Task, phrasing: &str) -> Result<(), String> {
    let mut found = Vec::new();
    let mut rest = phrasing;
    let mut literal = String::new();
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {phrasing:?}"))?
            + open;
        found.push(rest[open + 1..close].to_string());
        literal.push(' ');
        rest = &rest[close + 1..];
    }
    literal.push_str(rest);
    let numeric = !task.placeholders().is_empty() && task.placeholders().iter().all(|(_, k)| *k == Kind::Number);
    for name in &found {
        if name == DISTRACTOR && numeric {
            if found.iter().filter(|f| *f == DISTRACTOR).count() > 1 {
                return Err(format!("{phrasing:?} may contain the distractor {{{DISTRACTOR}}} once"));
            }
            continue;
        }
        if !task.placeholders().iter().any(|(p, _)| p == name) {
            let known: Vec<String> = task
                .placeholders()
                .iter()
                .map(|(p, _)| format!("{{{p}}}"))
                .collect();
            let distractor = if numeric { format!(" (and the distractor {{{DISTRACTOR}}})") } else { String::new() };
            return Err(format!(
                "unknown placeholder {{{name}}} in {phrasing:?}; task `{}` takes {}{distractor}",
                task.name(),
                known.join(" ")
            ));
        }
    }
    for (name, _) in task.placeholders() {
        let count = found.iter().filter(|f| f == name).count();
        if count != 1 {
            return Err(format!(
                "{phrasing:?} must contain {{{name}}} exactly once (found {count})"
            ));
        }
    }
    if !bind(&literal).is_empty() {
        return Err(format!(
            "{phrasing:?} has numbers or quotes outside placeholders; they would bind as arguments"
        ));
    }
    Ok(())
}
