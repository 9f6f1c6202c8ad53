//! Every example is verified by running its program on the arguments bound from
//! its question: the binding and the value must be the ones the example states.

use super::{CurriculumError, Example};
use crate::sandbox::{Arg, Outcome, Sandbox, bind};

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
                crate::sandbox::format_value(example.value)
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

