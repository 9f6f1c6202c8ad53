//! Curricula: ordered stages of task families, generated deterministically from a
//! seed, split into train / validation / test, and every example verified by running it.

pub mod import;
pub mod rng;
pub mod tasks;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{Arg, Outcome, Policy, Sandbox, SandboxError, bind};
use rng::{Rng, hash_str};
use tasks::{Draw, Numbers, Pools, Slot, Task};

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
    pub format: import::Format,
    #[serde(default)]
    pub fields: import::Fields,
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
    pub stages: Vec<StageData>,
}

#[derive(Debug, Clone)]
pub struct StageData {
    pub name: String,
    pub epochs: usize,
    pub replay: f64,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

impl StageData {
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
            file.sandbox.system.files = Some(crate::relative_to(path, files));
        }
        for stage in &mut file.stages {
            for import in &mut stage.imports {
                import.path = crate::relative_to(path, &import.path);
            }
            expand_carriers(stage);
        }
        let name = file.name.clone().unwrap_or_else(|| crate::file_stem(path));
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

    /// Checks what serde cannot: shares, counts, placeholders, pools.
    fn check(&self) -> Result<(), CurriculumError> {
        let f = &self.file;
        for (key, share) in [
            ("splits.validation", f.splits.validation),
            ("splits.test", f.splits.test),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(self.invalid(key.into(), "must be between 0 and 1"));
            }
        }
        f.sandbox
            .check()
            .map_err(|(key, msg)| self.invalid(format!("sandbox.{key}"), msg))?;
        if f.stages.is_empty() {
            return Err(self.invalid("stages".into(), "declare at least one stage"));
        }
        let mut names = HashSet::new();
        for (si, stage) in f.stages.iter().enumerate() {
            let key = |rest: &str| format!("stages[{si}] ({}).{rest}", stage.name);
            if !names.insert(stage.name.as_str()) {
                return Err(self.invalid(key("name"), "stage names must be unique"));
            }
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
                && let Some(f) = stage
                    .families
                    .iter()
                    .find(|f| !f.cores.is_empty() && f.carriers.is_none())
            {
                return Err(self.invalid(
                    key("carriers"),
                    format!("family `{}` declares cores; the stage needs carriers to put them in", f.task.name()),
                ));
            }
            for (fi, family) in stage.families.iter().enumerate() {
                let fkey =
                    |rest: &str| key(&format!("families[{fi}] ({}).{rest}", family.task.name()));
                if !(family.weight > 0.0 && family.weight.is_finite()) {
                    return Err(self.invalid(fkey("weight"), "must be positive"));
                }
                if family.phrasings.is_empty() {
                    return Err(self.invalid(fkey("phrasings"), "declare at least one phrasing"));
                }
                if family.held_out.is_empty() {
                    return Err(self.invalid(
                        fkey("held_out"),
                        "declare at least one held-out phrasing for the test split",
                    ));
                }
                let all = family
                    .phrasings
                    .iter()
                    .map(|p| ("phrasings", p))
                    .chain(family.held_out.iter().map(|p| ("held_out", p)));
                for (i, (list, phrasing)) in all.enumerate() {
                    let index = if list == "phrasings" {
                        i
                    } else {
                        i - family.phrasings.len()
                    };
                    check_phrasing(family.task, phrasing)
                        .map_err(|msg| self.invalid(fkey(&format!("{list}[{index}]")), msg))?;
                }
                if let Some(answer) = &family.answer
                    && !answer.contains("{value}")
                {
                    return Err(self.invalid(fkey("answer"), "the answer template needs `{value}`"));
                }
                let p = &f.pools;
                let needs =
                    |pool: &[String], held: &[String], name: &str| -> Result<(), CurriculumError> {
                        if pool.is_empty() || held.is_empty() {
                            return Err(self.invalid(
                                format!("pools.{name}"),
                                format!(
                                    "task `{}` needs `{name}` and `held_out_{name}`",
                                    family.task.name()
                                ),
                            ));
                        }
                        Ok(())
                    };
                match family.task {
                    Task::CountChar | Task::TextLength | Task::CountWords | Task::CountVowels => {
                        needs(&p.texts, &p.held_out_texts, "texts")?
                    }
                    Task::FileSize | Task::FileLines => {
                        needs(&p.files, &p.held_out_files, "files")?
                    }
                    Task::FileNumber => {
                        needs(&p.number_files, &p.held_out_number_files, "number_files")?
                    }
                    _ => {}
                }
                if family.task.needs_system()
                    && f.sandbox.system.files.is_none()
                    && family.task != Task::ClockYear
                {
                    return Err(self.invalid(
                        "sandbox.system.files".into(),
                        "file tasks need a files directory",
                    ));
                }
                if family.task == Task::ClockYear && f.sandbox.system.clock == "real" {
                    return Err(self.invalid(
                        "sandbox.system.clock".into(),
                        "clock tasks need a fixed clock so their values are reproducible",
                    ));
                }
            }
        }
        Ok(())
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
            let mut data = StageData {
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
            let sample = family
                .task
                .sample(rng, draw, family.numbers, pools)
                .map_err(fail)?;
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
                Some(template) => template.replace("{value}", &crate::format_value(value)),
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

/// The two sandboxes examples are verified in.
pub struct Verifier {
    pub pure: Sandbox,
    pub system: Sandbox,
}

impl Verifier {
    /// Runs the example's program on the arguments bound from its question and
    /// checks both the binding and the value.
    pub fn verify(&self, example: &Example) -> Result<(), CurriculumError> {
        let fail = |reason: String| CurriculumError::Verification {
            id: example.id.clone(),
            question: example.question.clone(),
            program: example.program.clone(),
            reason,
        };
        let bound = bind(&example.question);
        if bound != example.args {
            return Err(fail(format!(
                "the question binds {} but the example states {}",
                show_args(&bound),
                show_args(&example.args)
            )));
        }
        let sandbox = if example.system {
            &self.system
        } else {
            &self.pure
        };
        match sandbox.run(&example.program, &bound) {
            Outcome::Value(v) if values_match(v, example.value) => Ok(()),
            outcome => Err(fail(format!(
                "expected {}, got {outcome}",
                crate::format_value(example.value)
            ))),
        }
    }
}

fn show_args(args: &[Arg]) -> String {
    format!(
        "[{}]",
        args.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Equal up to floating-point noise (relative 1e-9).
pub fn values_match(got: f64, want: f64) -> bool {
    got == want || (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

/// Checks a phrasing: each placeholder of the task exactly once, nothing else
/// in braces, and no stray numbers or quotes that would bind as arguments.
fn check_phrasing(task: Task, phrasing: &str) -> Result<(), String> {
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
    for name in &found {
        if !task.placeholders().iter().any(|(p, _)| p == name) {
            let known: Vec<String> = task
                .placeholders()
                .iter()
                .map(|(p, _)| format!("{{{p}}}"))
                .collect();
            return Err(format!(
                "unknown placeholder {{{name}}} in {phrasing:?}; task `{}` takes {}",
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
            question.push_str(&tasks::render_slot(key, slot));
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
    crate::write_atomic(path, &out).map_err(|e| fail(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
