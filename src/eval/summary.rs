//! What an evaluation measured, summarised: accuracy by stage and operation,
//! selection against the oracle, and per exit what it computed and emitted.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::backend::Backend;

use super::{EvalOptions, Scored};
use crate::model::world::WorldModel;
use crate::infer::Provenance;
use crate::rundir::summary::{BestExit, ExitSummary, Restatement, Selection, Summary, Tally, share};
use crate::sandbox::Outcome;

/// Mutual information, in bits, between the two labels of each pair.
pub fn mutual_information(pairs: &[(&str, &str)]) -> f64 {
    let n = pairs.len() as f64;
    if pairs.is_empty() {
        return 0.0;
    }
    let mut joint: HashMap<(&str, &str), f64> = HashMap::new();
    let mut left: HashMap<&str, f64> = HashMap::new();
    let mut right: HashMap<&str, f64> = HashMap::new();
    for &(a, b) in pairs {
        *joint.entry((a, b)).or_default() += 1.0;
        *left.entry(a).or_default() += 1.0;
        *right.entry(b).or_default() += 1.0;
    }
    joint
        .iter()
        .map(|(&(a, b), &c)| {
            let p = c / n;
            p * (p / ((left[a] / n) * (right[b] / n))).log2()
        })
        .sum::<f64>()
        .max(0.0)
}

pub(super) fn summarize<B: Backend>(scored: &[Scored], model: &WorldModel<B>, options: &EvalOptions) -> Summary {
    let total = scored.len();
    let correct = scored.iter().filter(|s| s.correct).count();
    let groups = |key: &dyn Fn(&Scored) -> String| {
        let mut map: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for s in scored {
            let e = map.entry(key(s)).or_default();
            e.0 += usize::from(s.correct);
            e.1 += 1;
        }
        map.into_iter().map(|(k, (c, n))| (k, Tally::new(c, n))).collect()
    };
    let exits = scored.iter().map(|s| s.answer.candidates.len()).max().unwrap_or(0);
    let selected_right = scored
        .iter()
        .filter(|s| s.answer.selected.is_some_and(|k| s.exit_correct[k]))
        .count();
    let oracle = scored.iter().filter(|s| s.exit_correct.iter().any(|&c| c)).count();
    let mut traps: BTreeMap<String, usize> = BTreeMap::new();
    let per_exit: Vec<ExitSummary> = (0..exits)
        .map(|k| exit_summary(scored, k, model.fusion_layers.get(k).copied(), &mut traps))
        .collect();
    let best = per_exit
        .iter()
        .max_by(|a, b| a.value_accuracy.total_cmp(&b.value_accuracy))
        .map(|e| BestExit { exit: e.exit, accuracy: e.value_accuracy });
    Summary {
        accuracy: share(correct, total),
        correct,
        total,
        data: options.data.clone(),
        ablation: options.ablation.to_string(),
        stages: groups(&|s| s.question.stage.clone()),
        operations: groups(&|s| s.question.op.clone()),
        selection: Selection {
            accuracy: share(selected_right, total),
            oracle: share(oracle, total),
            best_single_exit: best,
        },
        exits: per_exit,
        traps,
        restatement: {
            let count = |p: Provenance| scored.iter().filter(|s| s.answer.provenance == p).count();
            Restatement::new(count(Provenance::Restated), count(Provenance::Differs), count(Provenance::NoComputation))
        },
    }
}

/// What exit `k` did over the questions that reached it; its traps are counted into `traps`.
fn exit_summary(scored: &[Scored], k: usize, layer: Option<usize>, traps: &mut BTreeMap<String, usize>) -> ExitSummary {
    let rows: Vec<&Scored> = scored.iter().filter(|s| s.answer.candidates.len() > k).collect();
    let right = rows.iter().filter(|s| s.exit_correct[k]).count();
    let chosen = rows.iter().filter(|s| s.answer.selected == Some(k)).count();
    let ran = rows.iter().filter(|s| s.answer.candidates[k].outcome.value().is_some()).count();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut by_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in &rows {
        *confusion.entry(s.question.op.clone()).or_default().entry(s.emitted[k].clone()).or_default() += 1;
        let e = by_op.entry(s.question.op.clone()).or_default();
        e.0 += usize::from(s.exit_correct[k]);
        e.1 += 1;
        if let Outcome::Trap(kind) = &s.answer.candidates[k].outcome {
            *traps.entry(format!("{kind:?}").to_lowercase()).or_default() += 1;
        }
    }
    let pairs: Vec<(&str, &str)> = rows.iter().map(|s| (s.question.op.as_str(), s.emitted[k].as_str())).collect();
    let recognised = rows.iter().filter(|s| s.emitted[k] == s.question.op).count();
    ExitSummary {
        exit: k,
        layer,
        value_accuracy: share(right, rows.len()),
        operation_accuracy: share(recognised, rows.len()),
        ran: share(ran, rows.len()),
        selected: share(chosen, rows.len()),
        mutual_information_bits: mutual_information(&pairs),
        per_operation: by_op.into_iter().map(|(op, (c, n))| (op, Tally::new(c, n))).collect(),
        confusion,
    }
}

