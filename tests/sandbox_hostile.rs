//! The hostile corpus: programs that try to hang, exhaust memory or escape the
//! policy each end with an outcome within a second, and the process lives on.

use std::time::{Duration, Instant};

use wmx::sandbox::{Arg, Outcome, Policy, Sandbox, TrapKind};

/// Generous bound on a single hostile execution, compile included.
const LIMIT: Duration = Duration::from_secs(1);

fn run_timed(sandbox: &Sandbox, wat: &str, args: &[Arg]) -> Outcome {
    let start = Instant::now();
    let outcome = sandbox.run(wat, args);
    let elapsed = start.elapsed();
    assert!(elapsed < LIMIT, "took {elapsed:?} to end with {outcome}");
    outcome
}

fn pure() -> Sandbox {
    Sandbox::new(&Policy::default()).unwrap()
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let wat = r#"(module (func (export "compute") (result f64) (loop $l (br $l)) (f64.const 0)))"#;
    assert_eq!(
        run_timed(&pure(), wat, &[]),
        Outcome::Trap(TrapKind::OutOfFuel)
    );
}

#[test]
fn infinite_loop_with_unbounded_fuel_hits_the_deadline() {
    let policy = Policy {
        fuel: u64::MAX / 4,
        deadline_ms: 100,
        ..Policy::default()
    };
    let sandbox = Sandbox::new(&policy).unwrap();
    let wat = r#"(module (func (export "compute") (result f64) (loop $l (br $l)) (f64.const 0)))"#;
    assert_eq!(
        run_timed(&sandbox, wat, &[]),
        Outcome::Trap(TrapKind::Deadline)
    );
}

#[test]
fn start_function_loop_is_stopped_during_instantiation() {
    let wat = r#"(module (func $spin (loop $l (br $l))) (start $spin)
                 (func (export "compute") (result f64) (f64.const 1)))"#;
    assert_eq!(
        run_timed(&pure(), wat, &[]),
        Outcome::Trap(TrapKind::OutOfFuel)
    );
}

#[test]
fn memory_grow_loop_is_bounded() {
    let wat = r#"(module (memory 1)
      (func (export "compute") (result f64)
        (loop $l (drop (memory.grow (i32.const 1))) (br $l))
        (f64.const 0)))"#;
    let outcome = run_timed(&pure(), wat, &[]);
    assert!(
        matches!(
            outcome,
            Outcome::Trap(TrapKind::OutOfFuel | TrapKind::Deadline)
        ),
        "{outcome}"
    );
}

#[test]
fn memory_beyond_the_policy_cannot_be_used() {
    // memory.grow past the limit fails (-1), and touching the missing pages traps.
    let wat = r#"(module (memory 1)
      (func (export "compute") (result f64)
        (drop (memory.grow (i32.const 1000)))
        (f64.store (i32.const 50000000) (f64.const 1))
        (f64.const 0)))"#;
    assert_eq!(
        run_timed(&pure(), wat, &[]),
        Outcome::Trap(TrapKind::Memory)
    );
    let declared = r#"(module (memory 2000) (func (export "compute") (result f64) (f64.const 0)))"#;
    assert_eq!(
        run_timed(&pure(), declared, &[]),
        Outcome::Trap(TrapKind::Memory)
    );
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let wat = r#"(module (func $f (export "compute") (result f64) (call $f)))"#;
    let outcome = run_timed(&pure(), wat, &[]);
    assert_eq!(outcome, Outcome::Trap(TrapKind::StackOverflow));
}

#[test]
fn fifty_megabyte_data_segment_is_refused() {
    let data = "a".repeat(50 * 1024 * 1024);
    let wat = format!(
        r#"(module (memory 800) (data (i32.const 0) "{data}") (func (export "compute") (result f64) (f64.const 0)))"#
    );
    // Under the default policy the source is too large to compile at all.
    let outcome = run_timed(&pure(), &wat, &[]);
    assert!(
        matches!(&outcome, Outcome::Invalid(m) if m.contains("bytes")),
        "{outcome}"
    );
    // With the source limit lifted, its memory is still beyond the policy. Parsing
    // 50 MB of text alone takes about half a second here, so this case is not timed.
    let lifted = Sandbox::new(&Policy {
        max_source_bytes: 64 << 20,
        ..Policy::default()
    })
    .unwrap();
    assert_eq!(lifted.run(&wat, &[]), Outcome::Trap(TrapKind::Memory));
}

#[test]
fn wasi_import_is_denied_under_the_default_policy() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (func (export "compute") (result f64) (f64.const 0)))"#;
    assert_eq!(
        run_timed(&pure(), wat, &[]),
        Outcome::Denied("wasi_snapshot_preview1.fd_write".into())
    );
    // Even the system policy refuses calls that would block or reach the network.
    let system = Sandbox::new(&Policy::default().with_system()).unwrap();
    let poll = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
      (func (export "compute") (result f64) (f64.const 0)))"#;
    assert_eq!(
        run_timed(&system, poll, &[]),
        Outcome::Denied("wasi_snapshot_preview1.poll_oneoff".into())
    );
}

#[test]
fn malformed_wat_is_invalid_with_its_position() {
    let wat = "(module\n  (func (export \"compute\") (result f64)\n    f64.cnst 1))";
    match run_timed(&pure(), wat, &[]) {
        Outcome::Invalid(message) => assert!(message.starts_with("line 3, column 5"), "{message}"),
        other => panic!("expected invalid, got {other}"),
    }
    let wrong_type = r#"(module (func (export "compute") (result f64) (i32.const 1)))"#;
    assert!(matches!(
        run_timed(&pure(), wrong_type, &[]),
        Outcome::Invalid(_)
    ));
    let no_compute = r#"(module (func (export "main") (result f64) (f64.const 1)))"#;
    assert!(
        matches!(run_timed(&pure(), no_compute, &[]), Outcome::Invalid(m) if m.contains("compute"))
    );
}

#[test]
fn nan_and_copysign_edge_cases_are_values() {
    let sandbox = pure();
    let nan = r#"(module (func (export "compute") (param f64 f64) (result f64)
        (f64.div (local.get 0) (local.get 1))))"#;
    let outcome = run_timed(&sandbox, nan, &[Arg::Number(0.0), Arg::Number(0.0)]);
    assert!(
        matches!(outcome, Outcome::Value(v) if v.is_nan()),
        "{outcome}"
    );
    let copysign = r#"(module (func (export "compute") (param f64 f64) (result f64)
        (f64.copysign (local.get 0) (local.get 1))))"#;
    let neg_zero = run_timed(&sandbox, copysign, &[Arg::Number(0.0), Arg::Number(-1.0)])
        .value()
        .unwrap();
    assert!(neg_zero == 0.0 && neg_zero.is_sign_negative());
    let neg_nan = r#"(module (func (export "compute") (result f64)
        (f64.copysign (f64.const nan) (f64.const -1))))"#;
    let v = run_timed(&sandbox, neg_nan, &[]).value().unwrap();
    assert!(v.is_nan() && v.is_sign_negative());
    let inf = r#"(module (func (export "compute") (result f64) (f64.copysign (f64.const inf) (f64.const -0))))"#;
    assert_eq!(
        run_timed(&sandbox, inf, &[]),
        Outcome::Value(f64::NEG_INFINITY)
    );
}

#[test]
fn arithmetic_traps_are_classified() {
    let sandbox = pure();
    let div = r#"(module (func (export "compute") (result f64)
        (f64.convert_i32_s (i32.div_s (i32.const 1) (i32.const 0)))))"#;
    assert_eq!(
        run_timed(&sandbox, div, &[]),
        Outcome::Trap(TrapKind::DivisionByZero)
    );
    let unreachable = r#"(module (func (export "compute") (result f64) (unreachable)))"#;
    assert_eq!(
        run_timed(&sandbox, unreachable, &[]),
        Outcome::Trap(TrapKind::Unreachable)
    );
    let conv = r#"(module (func (export "compute") (result f64)
        (f64.convert_i32_s (i32.trunc_f64_s (f64.const nan)))))"#;
    assert_eq!(
        run_timed(&sandbox, conv, &[]),
        Outcome::Trap(TrapKind::InvalidConversion)
    );
}

#[test]
fn the_sandbox_keeps_working_after_hostile_programs() {
    let sandbox = pure();
    let spin = r#"(module (func (export "compute") (result f64) (loop $l (br $l)) (f64.const 0)))"#;
    let add = r#"(module (func (export "compute") (param f64 f64) (result f64) (f64.add (local.get 0) (local.get 1))))"#;
    for _ in 0..3 {
        assert_eq!(
            run_timed(&sandbox, spin, &[]),
            Outcome::Trap(TrapKind::OutOfFuel)
        );
        assert_eq!(
            sandbox.run_question(add, "What is 2.5 + 4?"),
            Outcome::Value(6.5)
        );
    }
}

#[test]
fn arguments_that_do_not_fit_are_a_mismatch() {
    let add = r#"(module (func (export "compute") (param f64 f64) (result f64) (f64.add (local.get 0) (local.get 1))))"#;
    assert!(matches!(
        pure().run_question(add, "Convert 10°C to Fahrenheit"),
        Outcome::Mismatch(_)
    ));
}

#[test]
fn string_arguments_are_written_to_memory() {
    let len = r#"(module (memory (export "memory") 1)
      (func (export "compute") (param $s i32) (param $n i32) (param $x f64) (result f64)
        (f64.add (f64.convert_i32_u (i32.load8_u (local.get $s))) (local.get $x))))"#;
    // 'A' is 65.
    assert_eq!(
        pure().run_question(len, "Take \"ABC\" and 1"),
        Outcome::Value(66.0)
    );
}

#[test]
fn a_run_of_numbers_binds_to_a_list_of_any_length() {
    // compute(scale, list, len) = scale × (last item) + len: one scalar, then the list.
    let last = r#"(module (memory (export "memory") 1)
      (func (export "compute") (param $k f64) (param $list i32) (param $len i32) (result f64)
        (f64.add
          (f64.mul (local.get $k)
            (f64.load (i32.add (local.get $list) (i32.mul (i32.sub (local.get $len) (i32.const 1)) (i32.const 8)))))
          (f64.convert_i32_u (local.get $len)))))"#;
    assert_eq!(pure().run_question(last, "Scale 2 over 5, 6, 7"), Outcome::Value(2.0 * 7.0 + 3.0));
    assert_eq!(
        pure().run_question(last, "Scale 3 over 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.5"),
        Outcome::Value(3.0 * 11.5 + 11.0)
    );
    // No numbers left for the list: no fit.
    assert!(matches!(pure().run_question(last, "Scale 2"), Outcome::Mismatch(_)));
    // A list needs somewhere to go.
    let no_memory = r#"(module (func (export "compute") (param i32 i32) (result f64) (f64.const 0)))"#;
    assert!(matches!(pure().run_question(no_memory, "1, 2, 3"), Outcome::Invalid(_)));
}
