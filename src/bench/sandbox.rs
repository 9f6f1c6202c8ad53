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
    // The shape bounds alone (the source bound raised): what a binary module, which
    // packs a function's locals into a few bytes, can make the compiler do.
    let unbounded_source = Policy { max_source_bytes: 16 << 20, ..policy.clone() };
    for (label, wat, refused) in bound_modules(policy.max_source_bytes) {
        let mut times = Vec::new();
        let mut outcome = Ok(());
        for _ in 0..5 {
            let fresh = Sandbox::new(&unbounded_source)?;
            let t = Instant::now();
            outcome = fresh.check(&wat);
            times.push(t.elapsed());
        }
        if outcome.is_err() != refused {
            return Err(SandboxError::Engine(format!("{label}: expected {}, got {outcome:?}", if refused { "a refusal" } else { "a compile" })));
        }
        times.sort();
        rows.push(Row {
            name: format!("first compile: {label}"),
            value: format!("{:.2} ms", times[times.len() / 2].as_secs_f64() * 1e3),
            note: format!(
                "median of {}; {} KB of source; deadline {} ms{}",
                times.len(),
                wat.len() / 1024,
                policy.deadline_ms,
                if refused { "; refused by the shape bounds" } else { "" }
            ),
        });
    }
    Ok(rows)
}

/// Modules at the sandbox's shape bounds (and one far past them), as WAT: what
/// compiling can cost at most.
fn bound_modules(max_source: usize) -> Vec<(String, String, bool)> {
    use crate::sandbox::{MAX_FUNCTION_LOCALS, MAX_FUNCTIONS, MAX_MODULE_LOCALS};
    // Functions that each declare `locals` i64 locals and sum them all.
    let wide = |functions: u64, locals: u64| {
        let mut wat = String::from("(module");
        for f in 0..functions {
            wat.push_str(&format!("(func $f{f} (result i64) (local {})", "i64 ".repeat(locals as usize)));
            wat.push_str("(i64.const 0)");
            for l in 0..locals {
                wat.push_str(&format!("local.get {l} i64.add "));
            }
            wat.push(')');
        }
        wat.push_str("(func (export \"compute\") (result f64) (f64.convert_i64_s (call $f0))))");
        wat
    };
    let per_function = MAX_MODULE_LOCALS / u64::from(MAX_FUNCTIONS);
    // Straight-line arithmetic filling the source bound.
    let mut dense = String::from("(module (func (export \"compute\") (param f64 f64) (result f64) (local.get 0)");
    while dense.len() + 64 < max_source {
        dense.push_str(" (local.get 1) f64.mul (local.get 0) f64.add");
    }
    dense.push_str("))");
    vec![
        (format!("{MAX_FUNCTIONS} functions, {per_function} locals each (the module's bound)"), wide(u64::from(MAX_FUNCTIONS) - 1, per_function), false),
        (format!("8 functions × {MAX_FUNCTION_LOCALS} locals (a function's bound)"), wide(8, MAX_FUNCTION_LOCALS), false),
        ("straight-line arithmetic at the source bound".into(), dense, false),
        (format!("{} functions, {} locals each", MAX_FUNCTIONS + 1, per_function), wide(u64::from(MAX_FUNCTIONS), per_function), true),
    ]
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

