//! A curriculum file as written: stages of task families, pools of texts and
//! files, split shares and the sandbox policy its examples are verified under.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tasks::{Numbers, Task};
use crate::sandbox::Policy;

/// A curriculum file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumFile {
    /// Name used for output directories; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Seed of every generator stream.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub splits: Splits,
    /// Policy the examples are verified under (`system` is added for system tasks).
    #[serde(default)]
    pub sandbox: Policy,
    #[serde(default)]
    pub pools: PoolsFile,
    pub stages: Vec<StageSpec>,
}

/// Sizes of the held-back splits, as shares of each stage's training count.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Splits {
    pub validation: f64,
    pub test: f64,
}

impl Default for Splits {
    fn default() -> Self {
        Splits {
            validation: 0.1,
            test: 0.1,
        }
    }
}

/// Texts and files the string and system tasks draw from; `held_out_*` only in test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolsFile {
    pub texts: Vec<String>,
    pub held_out_texts: Vec<String>,
    pub files: Vec<String>,
    pub held_out_files: Vec<String>,
    pub number_files: Vec<String>,
    pub held_out_number_files: Vec<String>,
}

/// Adds each family's carrier × core phrasings to its training and held-out lists.
/// A family's own `carriers` replace the stage's. Pair (carrier i, core j) of the
/// stage's t-th task (in order of first appearance) is held out when
/// `(i + 2j + t) % 5 == 0`: every carrier and every core still trains in other
/// pairs, so a held-out phrasing is new as a whole but made of parts the family was
/// trained on. The task's offset keeps the held-out cells of different tasks apart:
/// without it, "What is {core}?" with the first core of every family (`{a} + {b}`,
/// `{a} - {b}`, `{a} × {b}`, ...) would be held out together, so the test would ask
/// about a sentence shape that never trains for any task. Families of one task share
/// the offset, and a phrasing that any of them holds out trains in none of them; a
/// pair that spells one of the family's written `held_out` phrasings stays held out,
/// so no test phrasing ever reaches training.
pub fn expand_carriers(stage: &mut StageSpec) {
    let mut tasks: Vec<Task> = Vec::new();
    for family in &stage.families {
        if !tasks.contains(&family.task) {
            tasks.push(family.task);
        }
    }
    for family in &mut stage.families {
        let offset = tasks.iter().position(|t| *t == family.task).unwrap_or(0);
        let carriers = family.carriers.as_ref().unwrap_or(&stage.carriers).clone();
        let train_carriers = match &family.carriers {
            Some(_) => family.train_carriers.clone().unwrap_or_default(),
            None => stage.train_carriers.clone(),
        };
        for (j, core) in family.cores.iter().enumerate() {
            for (i, carrier) in carriers.iter().enumerate() {
                let phrasing = framed(&mut family.frames, carrier, core);
                let held_out = ((i + 2 * j + offset) % 5 == 0 && carriers.len() > 1)
                    || family.held_out.contains(&phrasing);
                let list = if held_out {
                    &mut family.held_out
                } else {
                    &mut family.phrasings
                };
                if !list.contains(&phrasing) {
                    list.push(phrasing);
                }
            }
            for carrier in &train_carriers {
                let phrasing = framed(&mut family.frames, carrier, core);
                if !family.phrasings.contains(&phrasing) && !family.held_out.contains(&phrasing) {
                    family.phrasings.push(phrasing);
                }
            }
        }
    }
    for task in tasks {
        let held: Vec<String> = stage
            .families
            .iter()
            .filter(|f| f.task == task)
            .flat_map(|f| f.held_out.iter().cloned())
            .collect();
        for family in stage.families.iter_mut().filter(|f| f.task == task) {
            family.phrasings.retain(|p| !held.contains(p));
        }
    }
}

/// `core` put in `carrier`, with its frame recorded in `frames` (a family's): what
/// the carrier spells before and after the core.
fn framed(
    frames: &mut std::collections::HashMap<String, [usize; 2]>,
    carrier: &str,
    core: &str,
) -> String {
    let phrasing = carrier.replace("{core}", core);
    if let Some((before, after)) = carrier.split_once("{core}") {
        frames.insert(phrasing.clone(), [before.chars().count(), after.chars().count()]);
    }
    phrasing
}

/// One stage of the curriculum.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    /// Training examples generated for this stage.
    pub count: usize,
    /// Passes over this stage's training examples.
    pub epochs: usize,
    /// Share (0..1) of each epoch's examples replayed from earlier stages.
    #[serde(default)]
    pub replay: f64,
    /// Sentence frames with a `{core}` slot, combined with each family's `cores`.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// Frames used in training only: each is combined with every core of the
    /// families that use the stage's `carriers`, and no pair is ever held out. A core
    /// seen in more frames than the test draws on has to be recognised by its own
    /// words, not by the sentence around it.
    #[serde(default)]
    pub train_carriers: Vec<String>,
    pub families: Vec<FamilySpec>,
    /// Example files imported (after verification) into this stage's training split.
    #[serde(default)]
    pub imports: Vec<ImportSpec>,
}

/// A task family: one task, its phrasings, and its share of the stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilySpec {
    pub task: Task,
    /// Relative share of the stage's count.
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub numbers: Numbers,
    /// Phrasings for train and validation; `{a}`-style placeholders mark the arguments.
    #[serde(default)]
    pub phrasings: Vec<String>,
    /// Phrasings kept for the test split only.
    #[serde(default)]
    pub held_out: Vec<String>,
    /// Noun phrases naming the computation ("the sum of {a} and {b}"), each put in
    /// every one of the stage's `carriers`; about one carrier × core pair in five
    /// is held out for the test split (see [`expand_carriers`]).
    #[serde(default)]
    pub cores: Vec<String>,
    /// Sentence frames for this family's `cores` in place of the stage's carriers
    /// (yes/no questions need frames of their own).
    #[serde(default)]
    pub carriers: Option<Vec<String>>,
    /// Training-only frames for a family with `carriers` of its own (the stage's
    /// `train_carriers` otherwise).
    #[serde(default)]
    pub train_carriers: Option<Vec<String>>,
    /// Answer template with `{value}`; the task's default otherwise.
    #[serde(default)]
    pub answer: Option<String>,
    /// For each phrasing built from a carrier: the characters the carrier spells
    /// before and after its core (filled by [`expand_carriers`]).
    #[serde(skip)]
    pub frames: std::collections::HashMap<String, [usize; 2]>,
}

fn one() -> f64 {
    1.0
}

/// An imported example file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    /// Path relative to the curriculum file.
    pub path: PathBuf,
    pub format: super::import::Format,
    #[serde(default)]
    pub fields: super::import::Fields,
}

