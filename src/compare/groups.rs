//! The comparison's seed groups: accuracy per group (overall, per stage, per exit)
//! as mean ± sd with 95% bootstrap intervals, loss curves as a mean with a band, and
//! paired tests between every two groups on the questions they share.

use std::collections::BTreeSet;

use anyhow::Result;
use polars::prelude::{Column, DataFrame};

use super::stats::{self, RESAMPLES, TEST_NAME};
use super::{Group, RunFacts};
use crate::curriculum::rng::Rng;
use crate::report::{Chart, Contents, Series, Table, fmt3};

/// Bootstraps draw from this seed, so a comparison's numbers are reproducible.
const BOOTSTRAP_SEED: u64 = 0x5eed_c0de;

/// `mean ± sd`, or the mean alone for one run.
fn mean_sd(values: &[f64]) -> String {
    match stats::mean_sd(values) {
        (mean, Some(sd)) => format!("{mean:.3} ± {sd:.3}"),
        (mean, None) => format!("{mean:.3}"),
    }
}

fn range((low, high): (f64, f64)) -> String {
    format!("[{low:.3}, {high:.3}]")
}

/// The stage a question id belongs to (`stage/split/index`).
fn stage_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Each member's right/wrong answers on `questions`, one row per member.
fn correctness(runs: &[RunFacts], group: &Group, questions: &[&String]) -> Vec<Vec<bool>> {
    group
        .members
        .iter()
        .map(|&i| questions.iter().map(|q| runs[i].answers.get(*q).copied().unwrap_or(false)).collect())
        .collect()
}

/// Adds the groups' tables, their loss chart and the paired tests to `contents`.
pub(super) fn section(runs: &[RunFacts], groups: &[Group], contents: &mut Contents) -> Result<()> {
    let mut rng = Rng::new(BOOTSTRAP_SEED);
    // The questions every run answered: the pairing of the tests.
    let mut shared: Option<BTreeSet<&String>> = None;
    for r in runs {
        let ids: BTreeSet<&String> = r.answers.keys().collect();
        shared = Some(match shared {
            None => ids,
            Some(s) => s.intersection(&ids).copied().collect(),
        });
    }
    let questions: Vec<&String> = shared.unwrap_or_default().into_iter().collect();
    if questions.is_empty() {
        contents
            .notes
            .push("No question was answered by every run (`eval/answers.jsonl`): the groups' intervals and tests need shared questions.".into());
        return Ok(());
    }
    let matrices: Vec<Vec<Vec<bool>>> = groups.iter().map(|g| correctness(runs, g, &questions)).collect();
    overall(groups, &matrices, questions.len(), &mut rng, contents)?;
    per_stage(groups, &matrices, &questions, &mut rng, contents)?;
    per_exit(runs, groups, &mut rng, contents)?;
    tests(groups, &matrices, questions.len(), &mut rng, contents)?;
    for (name, title, pick) in [
        ("group_text_loss", "Text loss per step: each group's mean over seeds, the band from lowest to highest", 2usize),
        ("group_wat_loss", "Mean WAT loss per step: each group's mean over seeds, the band from lowest to highest", 3),
    ] {
        contents.figure(name, band_chart(runs, groups, title, pick), "Curves smoothed over about 2% of the steps before averaging.");
    }
    Ok(())
}

/// Accuracy per group: mean ± sd over seeds and a 95% interval over questions and seeds.
fn overall(groups: &[Group], matrices: &[Vec<Vec<bool>>], questions: usize, rng: &mut Rng, contents: &mut Contents) -> Result<()> {
    let (mut names, mut counts, mut means, mut sds, mut lows, mut highs) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut rows = Vec::new();
    for (g, m) in groups.iter().zip(matrices) {
        let per_seed: Vec<f64> = m.iter().map(|row| row.iter().filter(|&&c| c).count() as f64 / questions as f64).collect();
        let (mean, sd) = stats::mean_sd(&per_seed);
        let (low, high) = stats::accuracy_interval(m, rng).unwrap_or((f64::NAN, f64::NAN));
        rows.push(vec![g.label.clone(), g.members.len().to_string(), mean_sd(&per_seed), range((low, high))]);
        names.push(g.label.clone());
        counts.push(g.members.len() as u64);
        means.push(mean);
        sds.push(sd);
        lows.push(low);
        highs.push(high);
    }
    contents.tables.push(Table {
        name: "groups".into(),
        caption: format!(
            "Test accuracy per group of seeds: mean ± sd over seeds, and a 95% interval from a bootstrap over the {questions} shared questions and the seeds ({RESAMPLES} resamples)"
        ),
        header: ["group", "seeds", "accuracy", "95% interval"].map(String::from).to_vec(),
        rows,
        frame: DataFrame::new_infer_height(vec![
            Column::new("group".into(), names),
            Column::new("seeds".into(), counts),
            Column::new("accuracy_mean".into(), means),
            Column::new("accuracy_sd".into(), sds),
            Column::new("accuracy_low".into(), lows),
            Column::new("accuracy_high".into(), highs),
        ])?,
    });
    Ok(())
}

/// Accuracy per group and stage, likewise.
fn per_stage(groups: &[Group], matrices: &[Vec<Vec<bool>>], questions: &[&String], rng: &mut Rng, contents: &mut Contents) -> Result<()> {
    let stages: Vec<&str> = questions.iter().map(|q| stage_of(q)).collect::<BTreeSet<_>>().into_iter().collect();
    let mut columns: [Vec<String>; 4] = Default::default();
    let mut rows = Vec::new();
    for (g, m) in groups.iter().zip(matrices) {
        for stage in &stages {
            let picked: Vec<usize> = (0..questions.len()).filter(|&q| stage_of(questions[q]) == *stage).collect();
            let sub: Vec<Vec<bool>> = m.iter().map(|row| picked.iter().map(|&q| row[q]).collect()).collect();
            let per_seed: Vec<f64> = sub.iter().map(|row| row.iter().filter(|&&c| c).count() as f64 / row.len().max(1) as f64).collect();
            let interval = stats::accuracy_interval(&sub, rng).map(range).unwrap_or_else(|| "-".into());
            let row = vec![g.label.clone(), stage.to_string(), mean_sd(&per_seed), interval];
            for (c, cell) in columns.iter_mut().zip(&row) {
                c.push(cell.clone());
            }
            rows.push(row);
        }
    }
    let header = ["group", "stage", "accuracy", "95% interval"].map(String::from).to_vec();
    let frame = DataFrame::new_infer_height(header.iter().zip(columns).map(|(h, c)| Column::new(h.as_str().into(), c)).collect())?;
    contents.tables.push(Table {
        name: "groups_by_stage".into(),
        caption: "Test accuracy per group and stage: mean ± sd over seeds, 95% bootstrap interval over the stage's questions and the seeds".into(),
        header,
        rows,
        frame,
    });
    Ok(())
}

/// Each exit's specialization per group: mean ± sd over seeds, 95% interval over seeds.
fn per_exit(runs: &[RunFacts], groups: &[Group], rng: &mut Rng, contents: &mut Contents) -> Result<()> {
    let exits = runs.iter().filter_map(|r| r.summary.as_ref().map(|s| s.exits.len())).max().unwrap_or(0);
    if exits == 0 {
        return Ok(());
    }
    let mut columns: [Vec<String>; 5] = Default::default();
    let mut rows = Vec::new();
    for g in groups {
        for k in 0..exits {
            let values = |f: &dyn Fn(&crate::rundir::summary::ExitSummary) -> f64| -> Vec<f64> {
                g.members.iter().filter_map(|&i| runs[i].summary.as_ref()?.exits.get(k).map(f)).collect()
            };
            let cell = |v: &[f64], rng: &mut Rng| -> String {
                if v.is_empty() {
                    return "-".into();
                }
                match stats::seed_interval(v, rng) {
                    Some(i) if v.len() > 1 => format!("{} {}", mean_sd(v), range(i)),
                    _ => mean_sd(v),
                }
            };
            let row = vec![
                g.label.clone(),
                k.to_string(),
                cell(&values(&|e| e.value_accuracy), rng),
                cell(&values(&|e| e.selected), rng),
                cell(&values(&|e| e.mutual_information_bits), rng),
            ];
            for (c, v) in columns.iter_mut().zip(&row) {
                c.push(v.clone());
            }
            rows.push(row);
        }
    }
    let header = ["group", "exit", "value accuracy", "share selected", "mutual information (bits)"].map(String::from).to_vec();
    let frame = DataFrame::new_infer_height(header.iter().zip(columns).map(|(h, c)| Column::new(h.as_str().into(), c)).collect())?;
    contents.tables.push(Table {
        name: "groups_by_exit".into(),
        caption: "Each exit's specialization per group: mean ± sd over seeds [95% interval over seeds]".into(),
        header,
        rows,
        frame,
    });
    Ok(())
}

/// The paired test between every two groups, Holm-adjusted together.
fn tests(groups: &[Group], matrices: &[Vec<Vec<bool>>], questions: usize, rng: &mut Rng, contents: &mut Contents) -> Result<()> {
    let mut pairs = Vec::new();
    for a in 0..groups.len() {
        for b in a + 1..groups.len() {
            if let Some(t) = stats::paired(&matrices[a], &matrices[b], rng) {
                pairs.push((a, b, t));
            }
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let adjusted = stats::holm(&pairs.iter().map(|(_, _, t)| t.p).collect::<Vec<_>>());
    let significant: Vec<bool> = adjusted.iter().map(|&p| p < 0.05).collect();
    let rows = pairs
        .iter()
        .zip(&adjusted)
        .zip(&significant)
        .map(|(((a, b, t), p_holm), sig)| {
            vec![
                groups[*a].label.clone(),
                groups[*b].label.clone(),
                format!("{:+.3}", t.difference),
                range((t.low, t.high)),
                fmt3(Some(t.p)),
                fmt3(Some(*p_holm)),
                if *sig { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let label = |f: &dyn Fn(&(usize, usize, stats::Paired)) -> usize| -> Vec<String> { pairs.iter().map(|p| groups[f(p)].label.clone()).collect() };
    contents.tables.push(Table {
        name: "tests".into(),
        caption: format!("Which differences are real: accuracy of group a minus group b on the {questions} shared questions; test: {TEST_NAME}; significant at 0.05"),
        header: ["group a", "group b", "difference", "95% interval", "p", "p (Holm)", "significant"].map(String::from).to_vec(),
        rows,
        frame: DataFrame::new_infer_height(vec![
            Column::new("group_a".into(), label(&|p| p.0)),
            Column::new("group_b".into(), label(&|p| p.1)),
            Column::new("difference".into(), pairs.iter().map(|p| p.2.difference).collect::<Vec<_>>()),
            Column::new("low".into(), pairs.iter().map(|p| p.2.low).collect::<Vec<_>>()),
            Column::new("high".into(), pairs.iter().map(|p| p.2.high).collect::<Vec<_>>()),
            Column::new("p".into(), pairs.iter().map(|p| p.2.p).collect::<Vec<_>>()),
            Column::new("p_holm".into(), adjusted.clone()),
            Column::new("significant".into(), significant),
            Column::new("test".into(), vec![TEST_NAME.to_string(); pairs.len()]),
        ])?,
    });
    Ok(())
}

/// Each group's smoothed loss (column `pick` of the losses: 2 text, 3 WAT) averaged
/// over its seeds at each step, with the band from the lowest to the highest.
fn band_chart(runs: &[RunFacts], groups: &[Group], title: &str, pick: usize) -> Chart {
    let series = groups
        .iter()
        .map(|g| {
            let curves: Vec<Vec<(f64, f64)>> = g
                .members
                .iter()
                .map(|&i| {
                    let l = &runs[i].losses;
                    let points: Vec<(f64, f64)> = l.iter().map(|x| (x.0 as f64, if pick == 2 { x.2 } else { x.3 })).collect();
                    crate::report::smoothed(&points, crate::report::smoothing_window(l.len()))
                })
                .collect();
            let steps = curves.iter().map(Vec::len).min().unwrap_or(0);
            let mut points = Vec::new();
            let mut band = Vec::new();
            for s in 0..steps {
                let ys: Vec<f64> = curves.iter().map(|c| c[s].1).collect();
                let x = curves[0][s].0;
                points.push((x, ys.iter().sum::<f64>() / ys.len() as f64));
                band.push((x, ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
            }
            Series { name: format!("{} ({} seeds)", g.label, g.members.len()), points, band }
        })
        .collect();
    Chart::Lines {
        title: title.into(),
        x_label: "optimizer step".into(),
        y_label: "cross-entropy (log scale)".into(),
        series,
        markers: Vec::new(),
        log_y: true,
    }
}
