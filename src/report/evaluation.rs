//! The report's evaluation section: accuracy by stage and operation, selection
//! against the oracle, each exit's confusion of operations, and how candidates ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use polars::prelude::{Column, DataFrame};

use super::page::Table;
use super::{Chart, Contents, Group, floats, fmt3, strings};
use crate::rundir::summary::{ExitSummary, Summary, Tally};

pub(super) fn section(s: &Summary, run: &Path, contents: &mut Contents) -> Result<()> {
    by_stage(s, contents)?;
    by_operation(s, contents)?;
    selection(s, contents)?;
    restatement(s, contents)?;
    specialization(s, contents)?;
    outcome_counts(run, contents)
}

/// An exit's text layer, as the page names it.
fn layer(e: &ExitSummary) -> String {
    e.layer.map_or("-".into(), |l| l.to_string())
}

fn by_stage(s: &Summary, contents: &mut Contents) -> Result<()> {
    let stages: Vec<(&String, &Tally)> = s.stages.iter().collect();
    contents.figure(
        "accuracy-stage",
        Chart::Bars {
            title: "Answer accuracy by stage".into(),
            x_label: "share of test questions answered right".into(),
            categories: stages.iter().map(|(n, t)| format!("{n} ({})", t.total)).collect(),
            groups: vec![Group { name: "answer".into(), values: stages.iter().map(|(_, t)| Some(t.accuracy)).collect() }],
            x_max: Some(1.0),
        },
        "The final answer (after selection and injection) against the expected one.",
    );
    contents.tables.push(Table {
        name: "accuracy_by_stage".into(),
        caption: "Accuracy by stage".into(),
        header: ["stage", "right", "total", "accuracy"].map(String::from).to_vec(),
        rows: stages.iter().map(|(n, t)| vec![n.to_string(), t.correct.to_string(), t.total.to_string(), fmt3(Some(t.accuracy))]).collect(),
        frame: DataFrame::new_infer_height(vec![
            Column::new("stage".into(), stages.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()),
            Column::new("correct".into(), stages.iter().map(|(_, t)| t.correct as u64).collect::<Vec<_>>()),
            Column::new("total".into(), stages.iter().map(|(_, t)| t.total as u64).collect::<Vec<_>>()),
            Column::new("accuracy".into(), stages.iter().map(|(_, t)| t.accuracy).collect::<Vec<_>>()),
        ])?,
    });
    Ok(())
}

/// Accuracy by operation: the answer, and each exit's value.
fn by_operation(s: &Summary, contents: &mut Contents) -> Result<()> {
    let ops: Vec<(&String, &Tally)> = s.operations.iter().collect();
    // Each group with its table column's name.
    let mut groups = vec![(
        "answer_accuracy".to_string(),
        Group { name: "answer".into(), values: ops.iter().map(|(_, t)| Some(t.accuracy)).collect() },
    )];
    for e in &s.exits {
        groups.push((
            format!("exit{}_value_accuracy", e.exit),
            Group {
                name: format!("exit {} value (layer {})", e.exit, layer(e)),
                values: ops.iter().map(|(op, _)| e.per_operation.get(*op).map(|t| t.accuracy)).collect(),
            },
        ));
    }
    let mut columns = vec![
        Column::new("operation".into(), ops.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()),
        Column::new("total".into(), ops.iter().map(|(_, t)| t.total as u64).collect::<Vec<_>>()),
    ];
    let mut header = vec!["operation".to_string(), "total".into()];
    for (column, g) in &groups {
        header.push(g.name.clone());
        columns.push(Column::new(column.as_str().into(), g.values.clone()));
    }
    let groups: Vec<Group> = groups.into_iter().map(|(_, g)| g).collect();
    contents.tables.push(Table {
        name: "accuracy_by_operation".into(),
        caption: "Accuracy by operation: the answer, and the value each exit computed".into(),
        rows: ops
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                let mut row = vec![n.to_string(), t.total.to_string()];
                row.extend(groups.iter().map(|g| fmt3(g.values[i])));
                row
            })
            .collect(),
        header,
        frame: DataFrame::new_infer_height(columns)?,
    });
    contents.figure(
        "accuracy-operation",
        Chart::Bars {
            title: "Accuracy by operation: answer, and each exit's value".into(),
            x_label: "share right".into(),
            categories: ops.iter().map(|(n, t)| format!("{n} ({})", t.total)).collect(),
            groups,
            x_max: Some(1.0),
        },
        "Per operation the question needs: how often the final answer is right, and how often each exit's program computed the right value. An exit that is right where others are not has specialised.",
    );
    Ok(())
}

/// Whether the answers state the values computed for them.
fn restatement(s: &Summary, contents: &mut Contents) -> Result<()> {
    let r = &s.restatement;
    let rows = [
        ("restated", r.restated, "states the computed value, and no other"),
        ("differs", r.differs, "a value was computed; the answer states another, or none"),
        ("no-computation", r.no_computation, "no candidate computed a value"),
    ];
    contents.tables.push(Table {
        name: "restatement".into(),
        caption: format!("Answers and the computed value: restated {:.3} of those with one", r.rate),
        header: ["provenance", "answers", "meaning"].map(String::from).to_vec(),
        rows: rows.iter().map(|(p, n, m)| vec![p.to_string(), n.to_string(), m.to_string()]).collect(),
        frame: DataFrame::new_infer_height(vec![
            Column::new("provenance".into(), rows.iter().map(|r| r.0.to_string()).collect::<Vec<_>>()),
            Column::new("answers".into(), rows.iter().map(|r| r.1 as u64).collect::<Vec<_>>()),
        ])?,
    });
    Ok(())
}

/// Selection against the oracle.
fn selection(s: &Summary, contents: &mut Contents) -> Result<()> {
    let mut categories: Vec<String> = s.exits.iter().map(|e| format!("exit {} alone (layer {})", e.exit, layer(e))).collect();
    let mut values: Vec<Option<f64>> = s.exits.iter().map(|e| Some(e.value_accuracy)).collect();
    categories.extend(["selection".to_string(), "oracle (any exit right)".into(), "answer".into()]);
    values.extend([Some(s.selection.accuracy), Some(s.selection.oracle), Some(s.accuracy)]);
    contents.tables.push(Table {
        name: "selection".into(),
        caption: "Selection against the oracle".into(),
        header: vec!["what".into(), "accuracy".into()],
        rows: categories.iter().zip(&values).map(|(c, v)| vec![c.clone(), fmt3(*v)]).collect(),
        frame: DataFrame::new_infer_height(vec![
            Column::new("what".into(), categories.clone()),
            Column::new("accuracy".into(), values.clone()),
        ])?,
    });
    contents.figure(
        "selection",
        Chart::Bars {
            title: "Selection against the oracle".into(),
            x_label: "share of questions whose value is right".into(),
            categories,
            groups: vec![Group { name: "accuracy".into(), values }],
            x_max: Some(1.0),
        },
        "Each exit on its own, the selected candidate, the oracle (some exit is right), and the final answer.",
    );
    Ok(())
}

/// Per-layer confusion, the operation needed against the one emitted, and the
/// specialization table; the confusion counts go to `tables/confusion.*` only.
fn specialization(s: &Summary, contents: &mut Contents) -> Result<()> {
    let mut long: (Vec<u64>, Vec<String>, Vec<String>, Vec<u64>) = Default::default();
    let mut spec_rows = Vec::new();
    for e in &s.exits {
        let k = e.exit as u64;
        let rows: Vec<String> = e.confusion.keys().cloned().collect();
        let emitted: BTreeSet<&String> = e.confusion.values().flat_map(|o| o.keys()).collect();
        // Needed operations first, in the rows' order, then anything else emitted.
        let mut cols: Vec<String> = rows.iter().filter(|r| emitted.contains(r)).cloned().collect();
        cols.extend(emitted.iter().filter(|c| !rows.contains(c)).map(|c| c.to_string()));
        let counts: Vec<Vec<u64>> = rows
            .iter()
            .map(|r| cols.iter().map(|c| e.confusion[r].get(c).copied().unwrap_or(0) as u64).collect())
            .collect();
        for (r, row) in rows.iter().zip(&counts) {
            for (c, &n) in cols.iter().zip(row).filter(|(_, n)| **n > 0) {
                long.0.push(k);
                long.1.push(r.clone());
                long.2.push(c.clone());
                long.3.push(n);
            }
        }
        spec_rows.push(vec![
            k.to_string(),
            layer(e),
            fmt3(Some(e.value_accuracy)),
            fmt3(Some(e.operation_accuracy)),
            fmt3(Some(e.mutual_information_bits)),
            fmt3(Some(e.selected)),
        ]);
        contents.figure(
            format!("confusion-exit{k}"),
            Chart::Heatmap {
                title: format!("Exit {k} (text layer {}): operation needed vs emitted", layer(e)),
                x_label: "operation the program performs".into(),
                y_label: "operation the question needs".into(),
                rows,
                columns: cols,
                counts,
            },
            format!(
                "Counts of test questions; shading is the share of each row. Mutual information {:.2} bits, operation right {:.2}.",
                e.mutual_information_bits, e.operation_accuracy
            ),
        );
    }
    let exits = &s.exits;
    contents.tables.push(Table {
        name: "specialization".into(),
        caption: "Per-exit specialization".into(),
        header: ["exit", "layer", "value right", "operation right", "MI (bits)", "selected"].map(String::from).to_vec(),
        frame: DataFrame::new_infer_height(vec![
            Column::new("exit".into(), exits.iter().map(|e| e.exit as u64).collect::<Vec<_>>()),
            Column::new("layer".into(), exits.iter().map(|e| e.layer.map(|l| l as u64)).collect::<Vec<_>>()),
            Column::new("value_accuracy".into(), exits.iter().map(|e| e.value_accuracy).collect::<Vec<_>>()),
            Column::new("operation_accuracy".into(), exits.iter().map(|e| e.operation_accuracy).collect::<Vec<_>>()),
            Column::new("mutual_information_bits".into(), exits.iter().map(|e| e.mutual_information_bits).collect::<Vec<_>>()),
            Column::new("selected".into(), exits.iter().map(|e| e.selected).collect::<Vec<_>>()),
        ])?,
        rows: spec_rows,
    });
    let confusion = DataFrame::new_infer_height(vec![
        Column::new("exit".into(), long.0),
        Column::new("needed".into(), long.1),
        Column::new("emitted".into(), long.2),
        Column::new("count".into(), long.3),
    ])?;
    contents.files_only.push(("confusion".into(), confusion));
    Ok(())
}

/// What the candidates' executions ended in, per exit.
fn outcome_counts(run: &Path, contents: &mut Contents) -> Result<()> {
    let rows = outcomes(run)?;
    let kinds: Vec<String> = rows.iter().map(|r| r.1.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if kinds.is_empty() {
        return Ok(());
    }
    let n_exits = rows.iter().map(|r| r.0 + 1).max().unwrap_or(0);
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.clone()).or_default() += 1;
    }
    let count = |k: i64, kind: &String| counts.get(&(k, kind.clone())).copied();
    let groups: Vec<Group> = (0..n_exits)
        .map(|k| Group { name: format!("exit {k}"), values: kinds.iter().map(|kind| count(k, kind).map(|c| c as f64)).collect() })
        .collect();
    contents.tables.push(Table {
        name: "outcomes".into(),
        caption: "How candidate programs ended, per exit".into(),
        header: std::iter::once("outcome".to_string()).chain((0..n_exits).map(|k| format!("exit {k}"))).collect(),
        rows: kinds
            .iter()
            .map(|kind| {
                std::iter::once(kind.clone())
                    .chain((0..n_exits).map(|k| count(k, kind).unwrap_or(0).to_string()))
                    .collect()
            })
            .collect(),
        frame: DataFrame::new_infer_height(vec![
            Column::new("exit".into(), counts.keys().map(|k| k.0).collect::<Vec<_>>()),
            Column::new("outcome".into(), counts.keys().map(|k| k.1.clone()).collect::<Vec<_>>()),
            Column::new("count".into(), counts.values().copied().collect::<Vec<_>>()),
        ])?,
    });
    contents.figure(
        "outcomes",
        Chart::Bars {
            title: "How candidate programs ended: values, traps by kind, rejections".into(),
            x_label: "candidates".into(),
            categories: kinds,
            groups,
            x_max: None,
        },
        "Per exit, every test candidate's outcome: a value; a trap, by kind (fuel, deadline, memory, ...); a program that does not parse or validate (invalid); arguments that do not fit its parameters (mismatch); an import the policy denies.",
    );
    Ok(())
}

/// One row per question × exit from `eval/predictions.parquet`: (exit, outcome
/// category), where a trap's category names its kind.
fn outcomes(run: &Path) -> Result<Vec<(i64, String)>> {
    let path = run.join("eval/predictions.parquet");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let frame = crate::tables::read_parquet(&path)?;
    let exit = floats(&frame, "exit")?;
    let outcome = strings(&frame, "outcome")?;
    let detail = strings(&frame, "detail")?;
    Ok(exit
        .iter()
        .zip(outcome.iter().zip(&detail))
        .filter(|(e, (o, _))| e.is_finite() && !o.is_empty())
        .map(|(e, (o, d))| {
            let category = match o.as_str() {
                "trap" => format!("trap: {}", d.strip_prefix("trap: ").unwrap_or(d)),
                other => other.to_string(),
            };
            (*e as i64, category)
        })
        .collect())
}

