//! `wmx bench sandbox`: executions per second of a cached program, and the first compile.

use std::time::{Duration, Instant};


use crate::curriculum::tasks::{Slot, Task};
use crate::sandbox::{Arg, Outcome, Policy, Sandbox, SandboxError};

use super::Row;

/// Sandbox throughput and compile latency, on the calling thread only.
pub fn sandbox(seconds: f64) -> Result<Vec<Row>, SandboxError> {
    let policy = Policy::default();
    let sandbox = Sandbox::new(&policy)?;
    let add = program(
        Task::Add,
        &[("a", Slot::Number(0.0)), ("b", Slot::Number(0.0))],
    );
    let args = [Arg::Number(12.0), Arg::Number(7.5)];
    if sandbox.run(&add, &args) != Outcome::Value(19.5) {
        return Err(SandboxError::Engine(
            "the benchmark program did not compute 19.5".into(),
        ));
    }
    // Warm up, then count executions (each with a fresh store) for `seconds`.
    for _ in 0..1_000 {
        sandbox.run(&add, &args);
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            std::hint::black_box(sandbox.run(&add, &args));
        }
        runs += 256;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_second = runs as f64 / elapsed;
    let mut rows = vec![Row {
        name: "cached two-argument program, fresh store per run".into(),
        value: format!("{} exec/s", group_thousands(per_second)),
        note: format!(
            "{:.2} µs each; 1 thread; target ≥ 200,000",
            1e6 / per_second
        ),
    }];
    let factorial = program(Task::Factorial, &[("n", Slot::Number(0.0))]);
    for (label, wat) in [
        ("add (two arguments)", &add),
        ("factorial (loop)", &factorial),
    ] {
        let mut times = Vec::new();
        for _ in 0..15 {
            let fresh = Sandbox::new(&policy)?;
            let t = Instant::now();
            let checked = fresh.check(wat);
            times.push(t.elapsed());
            if let Err(outcome) = checked {
                return Err(SandboxError::Engine(format!(
                    "benchmark program failed to compile: {outcome}"
                )));
            }
        }
        times.sort();
        rows.push(Row {
            name: format!("first compile: {label}"),
            value: format!("{:.2} ms", times[times.len() / 2].as_secs_f64() * 1e3),
            note: format!(
                "median of {}; parse + validate + cranelift + link",
                times.len()
            ),
        });
    }
    Ok(rows)
}

fn program(task: Task, slots: &[(&'static str, Slot)]) -> String {
    let sample = slots.iter().cloned().collect();
    let order: Vec<&str> = slots.iter().map(|(name, _)| *name).collect();
    task.program(&order, &sample)
}

fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

