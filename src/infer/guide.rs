//! Signature guidance: the arguments bound from a question fix what `compute`'s
//! parameters can be — a number fills one numeric parameter, a string an
//! `(i32 ptr, i32 len)` pair, a list of numbers may be passed as one pair — so while a
//! candidate is decoded, parameter types and counts the binding could never accept
//! are masked out. The program's body stays entirely the model's; only a header the
//! sandbox would reject with a mismatch is ruled out, token by token.

use crate::model::world::TokenGuide;
use crate::sandbox::{Arg, NumType};
use crate::tokenize::wat::WatVocab;

/// What one parameter slot accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// A bound number: any numeric type the binding can put it in
    /// ([`number_fits`](crate::sandbox::number_fits)).
    Number(f64),
    /// Half of a string or list pair: `i32`.
    Pointer,
}

impl Slot {
    fn accepts(self, ty: NumType) -> bool {
        match self {
            Slot::Pointer => ty == NumType::I32,
            Slot::Number(n) => crate::sandbox::number_fits(n, ty),
        }
    }
}

/// Every parameter list `compute` may have for `args`, as the sandbox binds them:
/// one slot per number and a pair per string; and, when the question binds only
/// numbers, `k` scalars followed by a pair holding the other numbers as a list.
fn shapes(args: &[Arg]) -> Vec<Vec<Slot>> {
    let number = Slot::Number;
    let direct = args
        .iter()
        .flat_map(|a| match a {
            Arg::Number(n) => vec![number(*n)],
            Arg::Text(_) => vec![Slot::Pointer, Slot::Pointer],
        })
        .collect();
    let mut shapes = vec![direct];
    let numbers: Option<Vec<f64>> = args
        .iter()
        .map(|a| match a {
            Arg::Number(n) => Some(*n),
            Arg::Text(_) => None,
        })
        .collect();
    if let Some(numbers) = numbers {
        for k in 0..numbers.len() {
            let mut shape: Vec<Slot> = numbers[..k].iter().map(|&n| number(n)).collect();
            shape.extend([Slot::Pointer, Slot::Pointer]);
            shapes.push(shape);
        }
    }
    shapes
}

/// Where the decoder is relative to `compute`'s header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before `"compute" )`: nothing is constrained.
    Before,
    /// Just after the `"compute"` string.
    AfterName,
    /// Inside the header, between parenthesised groups.
    Header,
    /// After a `(` in the header.
    Open,
    /// Inside a `(param …)` group.
    Param,
    /// Past the parameters: nothing is constrained.
    Done,
}

/// Masks `compute` parameter lists the question's arguments cannot bind.
pub struct SignatureGuide {
    shapes: Vec<Vec<Slot>>,
    /// Types of the parameters decoded so far.
    types: Vec<NumType>,
    state: State,
    compute: Option<u32>,
    open: Option<u32>,
    close: Option<u32>,
    param: Option<u32>,
    type_ids: [(Option<u32>, NumType); 4],
}

impl SignatureGuide {
    pub fn new(args: &[Arg], vocab: &WatVocab) -> SignatureGuide {
        SignatureGuide {
            shapes: shapes(args),
            types: Vec::new(),
            state: State::Before,
            compute: vocab.id("\"compute\""),
            open: vocab.id("("),
            close: vocab.id(")"),
            param: vocab.id("param"),
            type_ids: [
                (vocab.id("i32"), NumType::I32),
                (vocab.id("i64"), NumType::I64),
                (vocab.id("f32"), NumType::F32),
                (vocab.id("f64"), NumType::F64),
            ],
        }
    }

    fn type_of(&self, id: u32) -> Option<NumType> {
        self.type_ids
            .iter()
            .find(|(t, _)| *t == Some(id))
            .map(|(_, ty)| *ty)
    }

    /// Shapes that agree with the types decoded so far.
    fn consistent(&self) -> impl Iterator<Item = &Vec<Slot>> {
        self.shapes.iter().filter(|s| {
            s.len() >= self.types.len() && self.types.iter().zip(s.iter()).all(|(t, s)| s.accepts(*t))
        })
    }

    /// Whether the parameters may end here (a shape is complete).
    fn may_end(&self) -> bool {
        self.consistent().any(|s| s.len() == self.types.len())
    }

    /// Whether another parameter may follow.
    fn may_continue(&self) -> bool {
        self.consistent().any(|s| s.len() > self.types.len())
    }
}

impl TokenGuide for SignatureGuide {
    fn allows(&self, id: u32) -> bool {
        match self.state {
            State::Before | State::AfterName | State::Done => true,
            // An instruction right after the parameters (no result) ends them.
            State::Header => Some(id) == self.open || self.may_end(),
            State::Open if Some(id) == self.param => self.may_continue(),
            State::Open => self.may_end(),
            State::Param => match self.type_of(id) {
                Some(ty) => self.consistent().any(|s| {
                    s.get(self.types.len()).is_some_and(|slot| slot.accepts(ty))
                }),
                None => true,
            },
        }
    }

    fn push(&mut self, id: u32) {
        self.state = match self.state {
            State::Before if Some(id) == self.compute => State::AfterName,
            State::Before => State::Before,
            State::AfterName if Some(id) == self.close => State::Header,
            State::AfterName => State::Before,
            State::Header if Some(id) == self.open => State::Open,
            State::Open if Some(id) == self.param => State::Param,
            State::Param if Some(id) == self.close => State::Header,
            State::Param => {
                if let Some(ty) = self.type_of(id) {
                    self.types.push(ty);
                }
                State::Param
            }
            State::Header | State::Open | State::Done => State::Done,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program`'s tokens through a guide; returns the first token it refuses.
    fn first_refused(args: &[Arg], program: &str) -> Option<String> {
        let vocab = WatVocab::new();
        let mut guide = SignatureGuide::new(args, &vocab);
        for id in vocab.encode(program).unwrap() {
            if !guide.allows(id) {
                return vocab.token(id).map(str::to_string);
            }
            guide.push(id);
        }
        None
    }

    const TWO_F64: &str = r#"(module (func (export "compute") (param $a f64) (param $b f64) (result f64) local.get $a local.get $b f64.add))"#;
    const TEXT: &str = r#"(module (memory (export "memory") 1) (func (export "compute") (param $text i32) (param $text_len i32) (result f64) f64.const 0))"#;
    const LIST: &str = r#"(module (memory (export "memory") 1) (func (export "compute") (param $list i32) (param $list_len i32) (result f64) f64.const 0))"#;

    #[test]
    fn programs_the_arguments_bind_pass_untouched() {
        let n = |v: f64| Arg::Number(v);
        assert_eq!(first_refused(&[n(3.0), n(4.0)], TWO_F64), None);
        assert_eq!(first_refused(&[Arg::Text("hi".into())], TEXT), None);
        assert_eq!(first_refused(&[n(1.0), n(2.0), n(3.0)], LIST), None);
        // Unnamed parameters, and integer types for integral numbers.
        let unnamed = r#"(module (func (export "compute") (param i64 i32) (result f64) f64.const 0))"#;
        assert_eq!(first_refused(&[n(3.0), n(4.0)], unnamed), None);
        // Imports' own parameter lists are not `compute`'s.
        let imports = r#"(module (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32))) (func (export "compute") (result f64) f64.const 2026))"#;
        assert_eq!(first_refused(&[], imports), None);
    }

    #[test]
    fn headers_the_binding_would_reject_are_refused_where_they_go_wrong() {
        let n = |v: f64| Arg::Number(v);
        let text = [Arg::Text("Curricula teach".into())];
        // A number's f64 where a string's pointer must go.
        assert_eq!(first_refused(&text, TWO_F64).as_deref(), Some("f64"));
        // Too few parameters: the result may not start yet.
        assert_eq!(first_refused(&[n(1.0), n(2.0), n(3.0)], TWO_F64).as_deref(), Some("result"));
        // Too many: a third parameter may not start.
        let three = r#"(module (func (export "compute") (param $a f64) (param $b f64) (param $c f64) (result f64) f64.const 0))"#;
        assert_eq!(first_refused(&[n(1.0), n(2.0)], three).as_deref(), Some("param"));
        // No arguments, no parameters.
        assert_eq!(first_refused(&[], TWO_F64).as_deref(), Some("param"));
        // A fractional number cannot fill an integer parameter.
        let int = r#"(module (func (export "compute") (param $n i64) (result f64) f64.const 0))"#;
        assert_eq!(first_refused(&[n(2.5)], int).as_deref(), Some("i64"));
        assert_eq!(first_refused(&[n(2.0)], int), None);
    }
}
