//! Curricula: ordered stages of task families, generated deterministically from a
//! seed, split into train / validation / test, and every example verified by running it.

mod check;
mod describe;
mod file;
pub mod import;
mod jsonl;
pub mod rng;
pub mod tasks;
mod verify;

pub use describe::is_curriculum_file;
pub use file::*;
pub use jsonl::{read_jsonl, write_dataset, write_jsonl};
pub use verify::{Verifier, values_match};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{Arg, Sandbox, SandboxError};
use rng::{Rng, hash_str};
use tasks::{Draw, Pools, Slot};

/// Errors loading, generating or writing a curriculum.
#[derive(Debug, thiserror::Error)]
pub enum CurriculumError {
    #[error("curriculum file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("curriculum file {path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "curriculum example {id} failed verification: {reason}\n  question: {question}\n  program:\n{program}"
    )]
    Verification {
        id: String,
        question: String,
        program: String,
        reason: String,
    },
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("import {path}: {message}")]
    Import { path: PathBuf, message: String },
}

/// A split of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One verified example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub stage: String,
    /// The task family (`add`, …) or `imported`.
    pub family: String,
    /// The operation the question needs, for per-layer specialization.
    pub op: String,
    pub split: Split,
    pub question: String,
    /// WAT module exporting `compute`.
    pub program: String,
    /// Arguments bound from the question, in order.
    pub args: Vec<Arg>,
    /// What the program computes.
    pub value: f64,
    /// The answer text that follows `<computed>value</computed>`.
    pub answer: String,
    /// Whether the program needs the sandbox's `system` capability.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// For a question put in a carrier: how many of its characters the carrier
    /// spells before and after the core (which holds every argument).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<[usize; 2]>,
}

/// A loaded and checked curriculum.
#[derive(Debug, Clone)]
pub struct Curriculum {
    pub path: PathBuf,
    pub name: String,
    pub file: CurriculumFile,
}

/// Generated data: every split of every stage, in stage order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub stages: Vec<StageExamples>,
}

#[derive(Debug, Clone)]
pub struct StageExamples {
    pub name: String,
    pub epochs: usize,
    pub replay: f64,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

impl StageExamples {
    pub fn split(&self, split: Split) -> &[Example] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

impl Dataset {
    pub fn examples(&self, split: Split) -> impl Iterator<Item = &Example> {
        self.stages.iter().flat_map(move |s| s.split(split).iter())
    }
}

impl Curriculum {
    /// Reads and checks a curriculum file; paths inside are relative to it.
    pub fn load(path: &Path) -> Result<Curriculum, CurriculumError> {
        let read_err = |message: String| CurriculumError::Read {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        let mut file: CurriculumFile =
            toml::from_str(&text).map_err(|e| read_err(crate::config::toml_error(&e)))?;
        if let Some(files) = &file.sandbox.system.files {
            file.sandbox.system.files = Some(crate::fs::relative_to(path, files));
        }
        for stage in &mut file.stages {
            for import in &mut stage.imports {
                import.path = crate::fs::relative_to(path, &import.path);
            }
            expand_carriers(stage);
        }
        let name = file.name.clone().unwrap_or_else(|| crate::fs::file_stem(path));
        let curriculum = Curriculum {
            path: path.to_path_buf(),
            name,
            file,
        };
        curriculum.check()?;
        Ok(curriculum)
    }

    fn invalid(&self, key: String, message: impl Into<String>) -> CurriculumError {
        CurriculumError::Invalid {
            path: self.path.clone(),
            key,
            message: message.into(),
        }
    }

    fn pools(&self) -> Pools<'_> {
        let p = &self.file.pools;
        Pools {
            texts: &p.texts,
            held_out_texts: &p.held_out_texts,
            files: &p.files,
            held_out_files: &p.held_out_files,
            number_files: &p.number_files,
            held_out_number_files: &p.held_out_number_files,
            files_dir: self.file.sandbox.system.files.as_deref(),
            clock_secs: self
                .file
                .sandbox
                .system
                .clock_time()
                .ok()
                .flatten()
                .map(|d| d.as_secs()),
        }
    }

    /// Sandboxes for verification: pure computation, and with `system` granted.
    pub fn sandboxes(&self) -> Result<Verifier, CurriculumError> {
        Ok(Verifier {
            pure: Sandbox::new(&self.file.sandbox)?,
            system: Sandbox::new(&self.file.sandbox.clone().with_system())?,
        })
    }

    /// Generates every stage and split, verifying each example in the sandbox.
    pub fn generate(&self) -> Result<Dataset, CurriculumError> {
        let verifier = self.sandboxes()?;
        let pools = self.pools();
        let mut stages = Vec::new();
        for spec in &self.file.stages {
            let weights: Vec<f64> = spec.families.iter().map(|f| f.weight).collect();
            let mut seen_questions = HashSet::new();
            let mut data = StageExamples {
                name: spec.name.clone(),
                epochs: spec.epochs,
                replay: spec.replay,
                train: Vec::new(),
                validation: Vec::new(),
                test: Vec::new(),
            };
            for (split_index, split) in Split::ALL.into_iter().enumerate() {
                let total = match split {
                    Split::Train => spec.count,
                    Split::Validation => share(spec.count, self.file.splits.validation),
                    Split::Test => share(spec.count, self.file.splits.test),
                };
                let mut examples = Vec::new();
                for (fi, (family, n)) in spec
                    .families
                    .iter()
                    .zip(apportion(total, &weights))
                    .enumerate()
                {
                    let mut rng = Rng::stream(
                        self.file.seed,
                        &[hash_str(&spec.name), fi as u64, split_index as u64],
                    );
                    for _ in 0..n {
                        if let Some(example) =
                            self.draw(spec, family, split, &mut rng, &pools, &seen_questions)?
                        {
                            examples.push(example);
                        }
                    }
                }
                let mut rng = Rng::stream(
                    self.file.seed,
                    &[hash_str(&spec.name), u64::MAX, split_index as u64],
                );
                rng.shuffle(&mut examples);
                for (i, example) in examples.iter_mut().enumerate() {
                    example.id = format!("{}/{}/{i:05}", spec.name, split);
                    verifier.verify(example)?;
                    if split == Split::Train {
                        seen_questions.insert(example.question.clone());
                    }
                }
                match split {
                    Split::Train => data.train = examples,
                    Split::Validation => data.validation = examples,
                    Split::Test => data.test = examples,
                }
            }
            for import in &spec.imports {
                let report = import::import_file(
                    &import.path,
                    import.format,
                    &import.fields,
                    &spec.name,
                    &verifier,
                )?;
                data.train.extend(report.kept);
            }
            stages.push(data);
        }
        Ok(Dataset { stages })
    }

    /// Draws one example; validation examples never repeat a training question
    /// (`None` when a family is too small to find a fresh one).
    fn draw(
        &self,
        stage: &StageSpec,
        family: &FamilySpec,
        split: Split,
        rng: &mut Rng,
        pools: &Pools,
        train_questions: &HashSet<String>,
    ) -> Result<Option<Example>, CurriculumError> {
        let draw = if split == Split::Test {
            Draw::Unseen
        } else {
            Draw::Seen
        };
        let phrasings = if split == Split::Test {
            &family.held_out
        } else {
            &family.phrasings
        };
        let attempts = if split == Split::Validation { 64 } else { 1 };
        let fail = |message: String| {
            self.invalid(
                format!("stages ({}).families ({})", stage.name, family.task.name()),
                message,
            )
        };
        for _ in 0..attempts {
            let phrasing = rng.pick(phrasings).clone();
            let mut sample = family
                .task
                .sample(rng, draw, family.numbers, pools)
                .map_err(fail)?;
            if phrasing.contains(&format!("{{{}}}", tasks::DISTRACTOR)) {
                sample.insert(tasks::DISTRACTOR, Slot::Number(rng.range(2, 60) as f64));
            }
            let (question, order) = render_question(&phrasing, &sample);
            if split == Split::Validation && train_questions.contains(&question) {
                continue;
            }
            let value = family.task.evaluate(&sample, pools).map_err(fail)?;
            let args = order
                .iter()
                .flat_map(|name| match &sample[name] {
                    Slot::Number(v) => vec![Arg::Number(*v)],
                    Slot::List(items) => items.iter().map(|v| Arg::Number(*v)).collect(),
                    Slot::Text(t) => vec![Arg::Text(t.clone())],
                })
                .collect();
            let answer = match &family.answer {
                Some(template) => template.replace("{value}", &crate::sandbox::format_value(value)),
                None => family.task.default_answer(value),
            };
            return Ok(Some(Example {
                id: String::new(),
                stage: stage.name.clone(),
                family: family.task.name(),
                op: family.task.op(),
                split,
                question,
                program: family.task.program(&order, &sample),
                args,
                value,
                answer,
                system: family.task.needs_system(),
                frame: family.frames.get(&phrasing).copied(),
            }));
        }
        Ok(None)
    }
}

/// Fills a phrasing; returns the question and the placeholder order.
fn render_question(phrasing: &str, sample: &tasks::Sample) -> (String, Vec<&'static str>) {
    let mut question = String::new();
    let mut order = Vec::new();
    let mut rest = phrasing;
    while let Some(open) = rest.find('{') {
        question.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
        let name = &rest[open + 1..close];
        if let Some((key, slot)) = sample.get_key_value(name) {
            let shown = tasks::render_slot(key, slot);
            // A negative number right after an operator symbol is written in
            // parentheses, as people write it: `5 - (-3)`, not `5 - -3`.
            let after_operator = question.trim_end().ends_with(['+', '-', '×', '*', '/', '÷', '^']);
            if shown.starts_with('-') && after_operator {
                question.push_str(&format!("({shown})"));
            } else {
                question.push_str(&shown);
            }
            order.push(*key);
        }
        rest = rest.get(close + 1..).unwrap_or("");
    }
    question.push_str(rest);
    (question, order)
}

fn share(count: usize, fraction: f64) -> usize {
    (count as f64 * fraction).round() as usize
}

/// Splits `total` by `weights` exactly (largest remainder).
pub fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let missing = total - counts.iter().sum::<usize>();
    for &i in order.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// Per-stage counts of a dataset, for printing.
pub fn summary(dataset: &Dataset) -> Vec<(String, BTreeMap<Split, usize>)> {
    dataset
        .stages
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                Split::ALL
                    .iter()
                    .map(|&sp| (sp, s.split(sp).len()))
                    .collect(),
            )
        })
        .collect()
}

impl PartialOrd for Split {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Split {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use check::check_phrasing;
    use tasks::Task;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(
            apportion(555, &[3.0, 3.0, 2.0, 2.0]),
            vec![167, 166, 111, 111]
        );
        assert_eq!(apportion(10, &[1.0]).iter().sum::<usize>(), 10);
        assert_eq!(apportion(0, &[1.0, 2.0]), vec![0, 0]);
    }

    #[test]
    fn phrasings_are_checked_for_placeholders_and_stray_numbers() {
        assert!(check_phrasing(Task::Add, "What is {a} + {b}?").is_ok());
        assert!(
            check_phrasing(Task::Add, "What is {a} + {a}?")
                .unwrap_err()
                .contains("exactly once")
        );
        assert!(
            check_phrasing(Task::Add, "What is {a} + {c}?")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            check_phrasing(Task::Add, "Add {a} and {b}, then 2")
                .unwrap_err()
                .contains("outside placeholders")
        );
    }

    #[test]
    fn carrier_core_pairs_hold_out_a_fifth_made_of_trained_parts() {
        let carriers: Vec<String> = (0..8).map(|i| format!("C{i} {{core}}.")).collect();
        let cores: Vec<String> = (0..4).map(|j| format!("K{j} {{a}} {{b}}")).collect();
        let mut stage: StageSpec = toml::from_str(
            "name = \"s\"\ncount = 1\nepochs = 1\n[[families]]\ntask = \"add\"\n",
        )
        .unwrap();
        stage.carriers = carriers.clone();
        stage.families[0].cores = cores.clone();
        expand_carriers(&mut stage);
        let f = &stage.families[0];
        assert_eq!(f.phrasings.len() + f.held_out.len(), 32);
        assert!((5..=8).contains(&f.held_out.len()), "{:?}", f.held_out);
        // Every carrier and every core still trains somewhere.
        for part in carriers.iter().map(|c| c.replace(" {core}.", "")).chain(cores.iter().map(|k| k[..2].to_string())) {
            assert!(f.phrasings.iter().any(|p| p.contains(&part)), "{part} never trains");
        }
        assert!(f.held_out.iter().all(|h| !f.phrasings.contains(h)));
    }

    #[test]
    fn tasks_hold_out_different_cells_and_families_of_one_task_never_leak() {
        let mut stage: StageSpec = toml::from_str(
            "name = \"s\"\ncount = 1\nepochs = 1\n\
             carriers = [\"What is {core}?\", \"Tell me {core}.\", \"Find {core}.\"]\n\
             [[families]]\ntask = \"add\"\ncores = [\"{a} + {b}\", \"{a} plus {b}\"]\n\
             [[families]]\ntask = \"mul\"\ncores = [\"{a} × {b}\", \"{a} times {b}\"]\n\
             [[families]]\ntask = \"add\"\nnumbers = \"decimal\"\ncores = [\"{a} plus {b}\", \"{a} + {b}\"]\n",
        )
        .unwrap();
        expand_carriers(&mut stage);
        let [add, mul, decimal] = [0, 1, 2].map(|k| &stage.families[k]);
        // The first task holds out (carrier 0, core 0); the second, shifted by one,
        // does not, so "What is {core}?" with a first core still trains somewhere.
        assert!(add.held_out.contains(&"What is {a} + {b}?".to_string()));
        assert!(mul.phrasings.contains(&"What is {a} × {b}?".to_string()));
        assert_ne!(
            add.held_out.iter().map(|p| p.replace('+', "×")).collect::<Vec<_>>(),
            mul.held_out.iter().map(|p| p.replace("plus", "times")).collect::<Vec<_>>()
        );
        // The decimal family lists its cores in another order, yet a phrasing either
        // add family holds out trains in neither.
        for family in [add, decimal] {
            for held in add.held_out.iter().chain(&decimal.held_out) {
                assert!(!family.phrasings.contains(held), "{held} leaks");
            }
            assert!(!family.phrasings.is_empty());
        }
    }

    #[test]
    fn family_carriers_replace_the_stage_s_and_never_leak_a_held_out_phrasing() {
        let mut stage: StageSpec = toml::from_str(
            "name = \"s\"\ncount = 1\nepochs = 1\ncarriers = [\"What is {core}?\"]\n\
             [[families]]\ntask = \"is_prime\"\ncores = [\"{n} is prime\", \"{n} is a prime number\"]\n\
             carriers = [\"Is it true that {core}?\", \"Check whether {core}.\", \"Say if {core}.\"]\n\
             held_out = [\"Check whether {n} is a prime number.\"]\n",
        )
        .unwrap();
        expand_carriers(&mut stage);
        let f = &stage.families[0];
        assert!(f.phrasings.iter().chain(&f.held_out).all(|p| !p.starts_with("What is")));
        assert!(f.phrasings.contains(&"Check whether {n} is prime.".to_string()));
        assert!(!f.phrasings.contains(&"Check whether {n} is a prime number.".to_string()));
        assert_eq!(f.phrasings.len() + f.held_out.len(), 6);
        // Each carrier-built phrasing knows its frame: what the carrier spells
        // before and after the core.
        assert_eq!(f.frames["Check whether {n} is prime."], [14, 1]);
        assert_eq!(f.frames["Is it true that {n} is a prime number?"], [16, 1]);
        assert_eq!(f.frames.len(), 6);
    }

    #[test]
    fn training_frames_train_every_core_and_leave_the_test_as_it_was() {
        let source = |extra: &str| {
            format!(
                "name = \"s\"\ncount = 1\nepochs = 1\n\
                 carriers = [\"What is {{core}}?\", \"Tell me {{core}}.\", \"Find {{core}}.\"]\n{extra}\
                 [[families]]\ntask = \"add\"\ncores = [\"{{a}} + {{b}}\", \"the sum of {{a}} and {{b}}\"]\n\
                 held_out = [\"Give me {{a}} + {{b}}.\"]\n\
                 [[families]]\ntask = \"is_prime\"\ncores = [\"{{n}} is prime\"]\n\
                 carriers = [\"Is it true that {{core}}?\", \"Say if {{core}}.\"]\n\
                 train_carriers = [\"Confirm whether {{core}}.\"]\n"
            )
        };
        let expand = |text: &str| {
            let mut stage: StageSpec = toml::from_str(text).unwrap();
            expand_carriers(&mut stage);
            stage.families
        };
        let plain = expand(&source(""));
        let more = expand(&source("train_carriers = [\"Determine {core}.\", \"Give me {core}.\"]\n"));
        // The test split draws on the same phrasings with or without training frames.
        assert_eq!(plain[0].held_out, more[0].held_out);
        assert_eq!(plain[1].held_out, more[1].held_out);
        // Every core trains in every training frame, unless a written held-out
        // phrasing spells the pair.
        let add = &more[0].phrasings;
        for p in ["Determine {a} + {b}.", "Determine the sum of {a} and {b}.", "Give me the sum of {a} and {b}."] {
            assert!(add.contains(&p.to_string()), "{p} in {add:?}");
        }
        assert!(!add.contains(&"Give me {a} + {b}.".to_string()));
        assert_eq!(more[0].frames["Determine the sum of {a} and {b}."], [10, 1]);
        // A family with frames of its own takes its own training frames, not the stage's.
        let prime = &more[1].phrasings;
        assert!(prime.contains(&"Confirm whether {n} is prime.".to_string()));
        assert!(prime.iter().all(|p| !p.starts_with("Determine") && !p.starts_with("Give me")));
        assert!(plain[1].phrasings.contains(&"Confirm whether {n} is prime.".to_string()));
    }
}
