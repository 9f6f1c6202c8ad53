//! Importing the prototype's seed files: broken examples are flagged, example by
//! example, and only correct ones are kept.

use std::path::Path;

use wmx::curriculum::import::{Fields, Format, Rejection, import_file};
use wmx::curriculum::{Verifier, values_match};
use wmx::sandbox::{Policy, Sandbox};

fn verifier() -> Verifier {
    let policy = Policy::default();
    Verifier {
        pure: Sandbox::new(&policy).unwrap(),
        system: Sandbox::new(&policy.with_system()).unwrap(),
    }
}

fn seed(name: &str) -> wmx::curriculum::import::Report {
    let path = Path::new("tests/fixtures/seed-data").join(name);
    import_file(
        &path,
        Format::Worldmodel,
        &Fields::default(),
        "seed",
        &verifier(),
    )
    .unwrap()
}

fn count(report: &wmx::curriculum::import::Report, category: &str) -> usize {
    report.counts().get(category).copied().unwrap_or(0)
}

/// Of the prototype's arithmetic file only the 50 additions and 50 subtractions are
/// right: percentages, rectangles, molarity, … state values their WAT does not
/// compute, and means, circles and wavelengths use a two-number placeholder.
#[test]
fn basic_arithmetic_seed_keeps_only_correct_examples() {
    let report = seed("basic_arithmetic_training.txt");
    assert_eq!(report.kept.len(), 100);
    assert_eq!(count(&report, "placeholder program"), 215);
    assert_eq!(count(&report, "wrong value"), 240);
    assert!(report.kept.iter().all(|e| e.op == "add" || e.op == "sub"));
    let percent = report
        .rejected
        .iter()
        .find(|r| r.question == "Calculate 10% of 956")
        .unwrap();
    assert_eq!(
        percent.reason,
        Rejection::WrongValue {
            stated: 10.0,
            computed: 9560.0
        }
    );
    let mean = report
        .rejected
        .iter()
        .find(|r| r.question.starts_with("Calculate the mean of"))
        .unwrap();
    assert!(matches!(mean.reason, Rejection::Placeholder(_)));
}

#[test]
fn system_operation_placeholders_are_flagged() {
    let report = seed("system_operations_training.txt");
    assert_eq!(report.kept.len(), 0);
    assert_eq!(count(&report, "placeholder program"), 27);
    // A character count answered by a two-number adder cannot take its arguments.
    let count_s = report
        .rejected
        .iter()
        .find(|r| r.question.starts_with("Count the 's' characters"))
        .unwrap();
    assert!(
        matches!(count_s.reason, Rejection::Placeholder(_)),
        "{:?}",
        count_s.reason
    );
}

#[test]
fn complex_logic_keeps_correct_examples_and_flags_the_rest() {
    let report = seed("complex_logic_training.txt");
    assert_eq!(report.kept.len(), 100);
    assert_eq!(count(&report, "placeholder program"), 383);
    // Date and system questions import a fake `api` module no policy grants.
    assert_eq!(count(&report, "program failed"), 5);
    let date = report
        .rejected
        .iter()
        .find(|r| r.question == "What's today's date?")
        .unwrap();
    assert!(
        date.reason.to_string().contains("api.get_current_datetime"),
        "{}",
        date.reason
    );
    // The hypotenuse of 3 and 4 is "computed" by adding them.
    assert_eq!(count(&report, "wrong value"), 1);
    let median = report
        .rejected
        .iter()
        .find(|r| r.question.starts_with("Find the median"))
        .unwrap();
    assert!(matches!(median.reason, Rejection::Placeholder(_)));
    let celsius = report
        .rejected
        .iter()
        .find(|r| r.question.contains("°C to Fahrenheit"))
        .unwrap();
    assert!(matches!(celsius.reason, Rejection::Placeholder(_)));
    let verifier = verifier();
    for example in &report.kept {
        let outcome = verifier.pure.run(&example.program, &example.args);
        assert!(
            values_match(outcome.value().unwrap(), example.value),
            "{}",
            example.question
        );
    }
    assert!(report.rejected.iter().all(|r| r.line > 0));
}

#[test]
fn wrong_values_are_reported_with_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.txt");
    std::fs::write(
        &path,
        "User: Calculate 2 + 3\nAssistant: <think>add</think>\n<wat_model>\n(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))\n</wat_model>\n<computed>6</computed>\n",
    )
    .unwrap();
    let report = import_file(
        &path,
        Format::Worldmodel,
        &Fields::default(),
        "t",
        &verifier(),
    )
    .unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(
        report.rejected[0].reason,
        Rejection::WrongValue {
            stated: 6.0,
            computed: 5.0
        }
    );
    assert_eq!(
        report.rejected[0].reason.to_string(),
        "the WAT computes 5 but the example states 6"
    );
}

#[test]
fn jsonl_import_uses_configured_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.jsonl");
    let program = r#"(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.mul))"#;
    std::fs::write(
        &path,
        format!(
            "{{\"q\": \"What is 6 * 7?\", \"wat\": \"{program}\", \"v\": 42}}\n{{\"q\": \"What is 6 * 8?\", \"wat\": \"{program}\", \"v\": \"47\"}}\n{{\"q\": \"What is 2 * 2?\", \"wat\": \"(module\"}}\n"
        ),
    )
    .unwrap();
    let fields = Fields {
        question: "q".into(),
        program: "wat".into(),
        value: "v".into(),
        answer: "a".into(),
    };
    let report = import_file(&path, Format::Jsonl, &fields, "ext", &verifier()).unwrap();
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].value, 42.0);
    assert_eq!(report.kept[0].op, "mul");
    assert_eq!(report.rejected.len(), 2);
    assert_eq!(report.rejected[0].line, 2);
    assert!(matches!(
        report.rejected[1].reason,
        Rejection::InvalidProgram(_)
    ));
}
