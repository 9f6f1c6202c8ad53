//! The built-in tasks a curriculum family draws from: each knows its placeholders,
//! how to sample them, the value they should give, and the WAT program computing it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rng::{Rng, mix};
use crate::format_value;

/// A task: one kind of computation, phrased many ways by a curriculum family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Add,
    Sub,
    Mul,
    Div,
    /// `(a + b) * c`
    AddMul,
    /// `(a - b) / c`
    SubDiv,
    /// `a * b + c`
    MulAdd,
    /// `p` percent of `x`
    Percent,
    /// 1 if `a > b` else 0
    Greater,
    /// `a - b` if `a > b` else `a + b`
    Conditional,
    Min,
    Max,
    Average,
    Factorial,
    /// Sum of the integers from `a` to `b`
    SumRange,
    Power,
    Gcd,
    Fibonacci,
    /// 1 if `n` is prime else 0
    IsPrime,
    CountChar,
    TextLength,
    CountWords,
    CountVowels,
    FileSize,
    FileLines,
    FileNumber,
    ClockYear,
}

/// What a placeholder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    /// A list of 3 to 6 numbers, bound one parameter each.
    List,
    /// A quoted string, bound as `(ptr, len)`.
    Text,
}

/// How operands of the basic arithmetic tasks look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Numbers {
    #[default]
    Integer,
    /// Operands with one or two decimals.
    Decimal,
}

/// Which numbers a sample may use: training sees the seen ones, the test split
/// needs at least one held-out ("unseen") operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    Seen,
    Unseen,
}

/// One sampled placeholder value.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Number(f64),
    List(Vec<f64>),
    Text(String),
}

/// The pools of texts and files string and system tasks draw from.
#[derive(Debug, Clone, Default)]
pub struct Pools<'a> {
    pub texts: &'a [String],
    pub held_out_texts: &'a [String],
    pub files: &'a [String],
    pub held_out_files: &'a [String],
    pub number_files: &'a [String],
    pub held_out_number_files: &'a [String],
    /// Host directory the file tasks read (the `system` policy's files).
    pub files_dir: Option<&'a Path>,
    /// Fixed clock the clock tasks read, as seconds since the Unix epoch.
    pub clock_secs: Option<u64>,
}

pub type Sample = BTreeMap<&'static str, Slot>;

impl Task {
    pub const ALL: [Task; 27] = [
        Task::Add,
        Task::Sub,
        Task::Mul,
        Task::Div,
        Task::AddMul,
        Task::SubDiv,
        Task::MulAdd,
        Task::Percent,
        Task::Greater,
        Task::Conditional,
        Task::Min,
        Task::Max,
        Task::Average,
        Task::Factorial,
        Task::SumRange,
        Task::Power,
        Task::Gcd,
        Task::Fibonacci,
        Task::IsPrime,
        Task::CountChar,
        Task::TextLength,
        Task::CountWords,
        Task::CountVowels,
        Task::FileSize,
        Task::FileLines,
        Task::FileNumber,
        Task::ClockYear,
    ];

    /// The task's name as written in curriculum files (snake case).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The operation label used for per-layer specialization.
    pub fn op(self) -> String {
        self.name()
    }

    /// The placeholders every phrasing of this task must contain, once each.
    pub fn placeholders(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Task::Add | Task::Sub | Task::Mul | Task::Div | Task::Greater | Task::Conditional => {
                &[("a", Number), ("b", Number)]
            }
            Task::AddMul | Task::SubDiv | Task::MulAdd => {
                &[("a", Number), ("b", Number), ("c", Number)]
            }
            Task::Percent => &[("p", Number), ("x", Number)],
            Task::Min | Task::Max | Task::Average => &[("list", List)],
            Task::Factorial | Task::Fibonacci | Task::IsPrime => &[("n", Number)],
            Task::SumRange | Task::Power | Task::Gcd => &[("a", Number), ("b", Number)],
            Task::CountChar => &[("char", Text), ("text", Text)],
            Task::TextLength | Task::CountWords | Task::CountVowels => &[("text", Text)],
            Task::FileSize | Task::FileLines | Task::FileNumber => &[("file", Text)],
            Task::ClockYear => &[],
        }
    }

    /// Whether the program needs the sandbox's `system` capability.
    pub fn needs_system(self) -> bool {
        matches!(
            self,
            Task::FileSize | Task::FileLines | Task::FileNumber | Task::ClockYear
        )
    }

    /// Whether answers are yes/no (value 1 or 0).
    pub fn is_yes_no(self) -> bool {
        matches!(self, Task::Greater | Task::IsPrime)
    }

    /// Draws placeholder values.
    pub fn sample(
        self,
        rng: &mut Rng,
        draw: Draw,
        numbers: Numbers,
        pools: &Pools,
    ) -> Result<Sample, String> {
        let mut s = Sample::new();
        // The first number follows `draw`; the rest are free so test operands vary.
        let mut first = Some(draw);
        let mut int = |rng: &mut Rng, lo: i64, hi: i64| draw_int(rng, lo, hi, first.take());
        let put = |s: &mut Sample, k: &'static str, v: f64| {
            s.insert(k, Slot::Number(v));
        };
        match self {
            Task::Add | Task::Sub | Task::Mul | Task::Div => {
                let (a, b) = match (self, numbers) {
                    (Task::Add | Task::Sub, Numbers::Integer) => {
                        (int(rng, 0, 999) as f64, int(rng, 0, 999) as f64)
                    }
                    (Task::Add | Task::Sub, Numbers::Decimal) => (
                        int(rng, 0, 99_999) as f64 / 100.0,
                        int(rng, 0, 99_999) as f64 / 100.0,
                    ),
                    (Task::Mul, Numbers::Integer) => {
                        (int(rng, 2, 99) as f64, int(rng, 2, 99) as f64)
                    }
                    (Task::Mul, Numbers::Decimal) => {
                        (int(rng, 1, 999) as f64 / 10.0, int(rng, 2, 99) as f64)
                    }
                    (_, Numbers::Integer) => {
                        let q = int(rng, 1, 99);
                        let b = int(rng, 2, 49);
                        ((q * b) as f64, b as f64)
                    }
                    (_, Numbers::Decimal) => {
                        (int(rng, 1, 9_999) as f64 / 10.0, int(rng, 2, 99) as f64)
                    }
                };
                // Subtraction keeps non-negative results so word problems stay sensible.
                let (a, b) = if self == Task::Sub && b > a {
                    (b, a)
                } else {
                    (a, b)
                };
                put(&mut s, "a", a);
                put(&mut s, "b", b);
            }
            Task::AddMul | Task::SubDiv | Task::MulAdd => {
                let a = int(rng, 1, 99) as f64;
                let b = int(rng, 1, 99) as f64;
                let (a, b) = if self == Task::SubDiv && b > a {
                    (b, a)
                } else {
                    (a, b)
                };
                put(&mut s, "a", a);
                put(&mut s, "b", b);
                put(&mut s, "c", int(rng, 2, 20) as f64);
            }
            Task::Percent => {
                put(&mut s, "p", int(rng, 1, 100) as f64);
                put(&mut s, "x", (int(rng, 1, 100) * 10) as f64);
            }
            Task::Greater | Task::Conditional => {
                let a = int(rng, 0, 999) as f64;
                let mut b = int(rng, 0, 999) as f64;
                if b == a {
                    b = (b + 1.0) % 1000.0;
                }
                put(&mut s, "a", a);
                put(&mut s, "b", b);
            }
            Task::Min | Task::Max | Task::Average => {
                let len = rng.range(3, 6);
                let list = (0..len).map(|_| int(rng, 0, 999) as f64).collect();
                s.insert("list", Slot::List(list));
            }
            Task::Factorial => put(&mut s, "n", int(rng, 1, 15) as f64),
            Task::Fibonacci => put(&mut s, "n", int(rng, 1, 70) as f64),
            Task::IsPrime => put(&mut s, "n", int(rng, 2, 9_999) as f64),
            Task::SumRange => {
                let a = int(rng, 0, 200);
                let b = a + rng.range(1, 300);
                put(&mut s, "a", a as f64);
                put(&mut s, "b", b as f64);
            }
            Task::Power => {
                put(&mut s, "a", int(rng, 2, 12) as f64);
                put(&mut s, "b", int(rng, 0, 9) as f64);
            }
            Task::Gcd => {
                let g = int(rng, 1, 30);
                put(&mut s, "a", (g * rng.range(1, 30)) as f64);
                put(&mut s, "b", (g * rng.range(1, 30)) as f64);
            }
            Task::CountChar | Task::TextLength | Task::CountWords | Task::CountVowels => {
                let pool = if draw == Draw::Seen {
                    pools.texts
                } else {
                    pools.held_out_texts
                };
                let text = pick(rng, pool, "texts")?;
                if self == Task::CountChar {
                    let letters: Vec<char> =
                        text.chars().filter(char::is_ascii_lowercase).collect();
                    if letters.is_empty() {
                        return Err(format!("text {text:?} has no lowercase letter to count"));
                    }
                    s.insert("char", Slot::Text(rng.pick(&letters).to_string()));
                }
                s.insert("text", Slot::Text(text));
            }
            Task::FileSize | Task::FileLines => {
                let pool = if draw == Draw::Seen {
                    pools.files
                } else {
                    pools.held_out_files
                };
                s.insert("file", Slot::Text(pick(rng, pool, "files")?));
            }
            Task::FileNumber => {
                let pool = if draw == Draw::Seen {
                    pools.number_files
                } else {
                    pools.held_out_number_files
                };
                s.insert("file", Slot::Text(pick(rng, pool, "number_files")?));
            }
            Task::ClockYear => {}
        }
        Ok(s)
    }

    /// The value a correct program computes for `sample`.
    pub fn evaluate(self, s: &Sample, pools: &Pools) -> Result<f64, String> {
        let n = |k: &str| match s.get(k) {
            Some(Slot::Number(v)) => *v,
            _ => f64::NAN,
        };
        let text = |k: &str| match s.get(k) {
            Some(Slot::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let list = || match s.get("list") {
            Some(Slot::List(l)) => l.clone(),
            _ => Vec::new(),
        };
        let (a, b) = (n("a"), n("b"));
        Ok(match self {
            Task::Add => a + b,
            Task::Sub => a - b,
            Task::Mul => a * b,
            Task::Div => a / b,
            Task::AddMul => (a + b) * n("c"),
            Task::SubDiv => (a - b) / n("c"),
            Task::MulAdd => a * b + n("c"),
            Task::Percent => n("p") * n("x") / 100.0,
            Task::Greater => f64::from(u8::from(a > b)),
            Task::Conditional => {
                if a > b {
                    a - b
                } else {
                    a + b
                }
            }
            Task::Min => list().into_iter().fold(f64::INFINITY, f64::min),
            Task::Max => list().into_iter().fold(f64::NEG_INFINITY, f64::max),
            Task::Average => {
                let l = list();
                l.iter().sum::<f64>() / l.len() as f64
            }
            Task::Factorial => (1..=n("n") as i64).product::<i64>() as f64,
            Task::Fibonacci => {
                let (mut prev, mut cur) = (0i64, 1i64);
                for _ in 1..n("n") as i64 {
                    (prev, cur) = (cur, prev + cur);
                }
                cur as f64
            }
            Task::IsPrime => {
                let v = n("n") as i64;
                f64::from(u8::from(
                    v >= 2 && (2..).take_while(|d| d * d <= v).all(|d| v % d != 0),
                ))
            }
            Task::SumRange => (a as i64..=b as i64).sum::<i64>() as f64,
            Task::Power => a.powi(b as i32),
            Task::Gcd => {
                let (mut x, mut y) = (a as i64, b as i64);
                while y != 0 {
                    (x, y) = (y, x % y);
                }
                x as f64
            }
            Task::CountChar => {
                let c = text("char");
                text("text").matches(c.as_str()).count() as f64
            }
            Task::TextLength => text("text").len() as f64,
            Task::CountWords => text("text").split_whitespace().count() as f64,
            Task::CountVowels => text("text")
                .chars()
                .filter(|c| "aeiouAEIOU".contains(*c))
                .count() as f64,
            Task::FileSize | Task::FileLines | Task::FileNumber => {
                let dir = pools
                    .files_dir
                    .ok_or("file tasks need `system.files` in the curriculum")?;
                let path = dir.join(text("file"));
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                match self {
                    Task::FileSize => bytes.len() as f64,
                    Task::FileLines => bytes.iter().filter(|&&b| b == b'\n').count() as f64,
                    _ => first_integer(&bytes)
                        .ok_or_else(|| format!("{} holds no number", path.display()))?,
                }
            }
            Task::ClockYear => {
                let secs = pools
                    .clock_secs
                    .ok_or("clock tasks need a fixed `system.clock` in the curriculum")?;
                crate::sandbox::policy::year_of(std::time::Duration::from_secs(secs)) as f64
            }
        })
    }

    /// The answer text for `value`; a family's own template may replace it.
    pub fn default_answer(self, value: f64) -> String {
        if self.is_yes_no() {
            if value == 1.0 {
                "Yes.".into()
            } else {
                "No.".into()
            }
        } else {
            format!("The answer is {}.", format_value(value))
        }
    }

    /// The WAT program computing this task, with parameters in `order` (the order
    /// the placeholders appear in the question) and list lengths from `sample`.
    pub fn program(self, order: &[&str], sample: &Sample) -> String {
        let mut p = Program::default();
        for &name in order {
            match sample.get(name) {
                Some(Slot::Number(_)) => p.params.push(format!("(param ${name} f64)")),
                Some(Slot::Text(_)) => {
                    p.params.push(format!("(param ${name} i32)"));
                    p.params.push(format!("(param ${name}_len i32)"));
                    p.memory = true;
                }
                Some(Slot::List(_)) => {
                    // Any length: the sandbox writes the numbers to memory as f64s.
                    p.params.push("(param $list i32)".into());
                    p.params.push("(param $list_len i32)".into());
                    p.memory = true;
                }
                None => {}
            }
        }
        let binary = |op: &str| vec!["local.get $a".to_string(), "local.get $b".into(), op.into()];
        p.body = match self {
            Task::Add => binary("f64.add"),
            Task::Sub => binary("f64.sub"),
            Task::Mul => binary("f64.mul"),
            Task::Div => binary("f64.div"),
            Task::AddMul => lines(&[
                "local.get $a",
                "local.get $b",
                "f64.add",
                "local.get $c",
                "f64.mul",
            ]),
            Task::SubDiv => lines(&[
                "local.get $a",
                "local.get $b",
                "f64.sub",
                "local.get $c",
                "f64.div",
            ]),
            Task::MulAdd => lines(&[
                "local.get $a",
                "local.get $b",
                "f64.mul",
                "local.get $c",
                "f64.add",
            ]),
            Task::Percent => lines(&[
                "local.get $p",
                "local.get $x",
                "f64.mul",
                "f64.const 100",
                "f64.div",
            ]),
            Task::Greater => lines(&[
                "local.get $a",
                "local.get $b",
                "f64.gt",
                "f64.convert_i32_u",
            ]),
            Task::Conditional => lines(&[
                "local.get $a",
                "local.get $b",
                "f64.gt",
                "if (result f64)",
                "  local.get $a",
                "  local.get $b",
                "  f64.sub",
                "else",
                "  local.get $a",
                "  local.get $b",
                "  f64.add",
                "end",
            ]),
            Task::Min | Task::Max | Task::Average => {
                let op = match self {
                    Task::Min => "f64.min",
                    Task::Max => "f64.max",
                    _ => "f64.add",
                };
                p.locals = vec!["(local $i i32)", "(local $acc f64)"];
                // acc = list[0]; for i in 1..len: acc = op(acc, list[i])
                let mut body = lines(&[
                    "local.get $list",
                    "f64.load",
                    "local.set $acc",
                    "i32.const 1",
                    "local.set $i",
                ]);
                body.extend(counted_loop(
                    &["local.get $i", "local.get $list_len", "i32.ge_u"],
                    &[
                        "local.get $acc",
                        "local.get $list",
                        "local.get $i",
                        "i32.const 8",
                        "i32.mul",
                        "i32.add",
                        "f64.load",
                        op,
                        "local.set $acc",
                    ],
                    &step("$i", "i32", "add"),
                ));
                body.push("local.get $acc".into());
                if self == Task::Average {
                    body.extend(lines(&["local.get $list_len", "f64.convert_i32_u", "f64.div"]));
                }
                body
            }
            Task::Factorial => {
                p.locals = vec!["(local $i i64)", "(local $acc i64)"];
                let mut body = lines(&[
                    "i64.const 1",
                    "local.set $acc",
                    "local.get $n",
                    "i64.trunc_f64_s",
                    "local.set $i",
                ]);
                body.extend(counted_loop(
                    &["local.get $i", "i64.const 1", "i64.le_s"],
                    &[
                        "local.get $acc",
                        "local.get $i",
                        "i64.mul",
                        "local.set $acc",
                    ],
                    &step("$i", "i64", "sub"),
                ));
                body.extend(lines(&["local.get $acc", "f64.convert_i64_s"]));
                body
            }
            Task::Fibonacci => {
                p.locals = vec![
                    "(local $i i64)",
                    "(local $prev i64)",
                    "(local $cur i64)",
                    "(local $next i64)",
                ];
                let mut body = lines(&[
                    "i64.const 1",
                    "local.set $cur",
                    "i64.const 1",
                    "local.set $i",
                ]);
                body.extend(counted_loop(
                    &[
                        "local.get $i",
                        "local.get $n",
                        "i64.trunc_f64_s",
                        "i64.ge_s",
                    ],
                    &[
                        "local.get $prev",
                        "local.get $cur",
                        "i64.add",
                        "local.set $next",
                        "local.get $cur",
                        "local.set $prev",
                        "local.get $next",
                        "local.set $cur",
                    ],
                    &step("$i", "i64", "add"),
                ));
                body.extend(lines(&["local.get $cur", "f64.convert_i64_s"]));
                body
            }
            Task::IsPrime => {
                p.locals = vec!["(local $v i64)", "(local $d i64)"];
                let mut body = lines(&[
                    "local.get $n",
                    "i64.trunc_f64_s",
                    "local.set $v",
                    "local.get $v",
                    "i64.const 2",
                    "i64.lt_s",
                    "if",
                    "  f64.const 0",
                    "  return",
                    "end",
                    "i64.const 2",
                    "local.set $d",
                ]);
                body.extend(counted_loop(
                    &[
                        "local.get $d",
                        "local.get $d",
                        "i64.mul",
                        "local.get $v",
                        "i64.gt_s",
                    ],
                    &[
                        "local.get $v",
                        "local.get $d",
                        "i64.rem_s",
                        "i64.eqz",
                        "if",
                        "  f64.const 0",
                        "  return",
                        "end",
                    ],
                    &step("$d", "i64", "add"),
                ));
                body.push("f64.const 1".into());
                body
            }
            Task::SumRange => {
                p.locals = vec!["(local $i i64)", "(local $end i64)", "(local $acc i64)"];
                let mut body = lines(&[
                    "local.get $a",
                    "i64.trunc_f64_s",
                    "local.set $i",
                    "local.get $b",
                    "i64.trunc_f64_s",
                    "local.set $end",
                ]);
                body.extend(counted_loop(
                    &["local.get $i", "local.get $end", "i64.gt_s"],
                    &[
                        "local.get $acc",
                        "local.get $i",
                        "i64.add",
                        "local.set $acc",
                    ],
                    &step("$i", "i64", "add"),
                ));
                body.extend(lines(&["local.get $acc", "f64.convert_i64_s"]));
                body
            }
            Task::Power => {
                p.locals = vec!["(local $i i64)", "(local $acc f64)"];
                let mut body = lines(&[
                    "f64.const 1",
                    "local.set $acc",
                    "local.get $b",
                    "i64.trunc_f64_s",
                    "local.set $i",
                ]);
                body.extend(counted_loop(
                    &["local.get $i", "i64.eqz"],
                    &[
                        "local.get $acc",
                        "local.get $a",
                        "f64.mul",
                        "local.set $acc",
                    ],
                    &step("$i", "i64", "sub"),
                ));
                body.push("local.get $acc".into());
                body
            }
            Task::Gcd => {
                p.locals = vec!["(local $x i64)", "(local $y i64)", "(local $t i64)"];
                let mut body = lines(&[
                    "local.get $a",
                    "i64.trunc_f64_s",
                    "local.set $x",
                    "local.get $b",
                    "i64.trunc_f64_s",
                    "local.set $y",
                ]);
                body.extend(counted_loop(
                    &["local.get $y", "i64.eqz"],
                    &[
                        "local.get $x",
                        "local.get $y",
                        "i64.rem_s",
                        "local.set $t",
                        "local.get $y",
                        "local.set $x",
                        "local.get $t",
                        "local.set $y",
                    ],
                    &[],
                ));
                body.extend(lines(&["local.get $x", "f64.convert_i64_s"]));
                body
            }
            Task::CountChar => {
                p.locals = vec!["(local $i i32)", "(local $count i32)", "(local $c i32)"];
                let mut body = lines(&["local.get $char", "i32.load8_u", "local.set $c"]);
                body.extend(counted_loop(
                    &TEXT_END,
                    &[
                        &TEXT_BYTE[..],
                        &[
                            "local.get $c",
                            "i32.eq",
                            "local.get $count",
                            "i32.add",
                            "local.set $count",
                        ],
                    ]
                    .concat(),
                    &step("$i", "i32", "add"),
                ));
                body.extend(lines(&["local.get $count", "f64.convert_i32_u"]));
                body
            }
            Task::TextLength => lines(&["local.get $text_len", "f64.convert_i32_u"]),
            Task::CountWords => {
                // A word starts at a non-space byte that follows a space (or the start).
                p.locals = vec![
                    "(local $i i32)",
                    "(local $count i32)",
                    "(local $inside i32)",
                    "(local $space i32)",
                ];
                let mut body = counted_loop(
                    &TEXT_END,
                    &[
                        &TEXT_BYTE[..],
                        &[
                            "i32.const 32",
                            "i32.le_u",
                            "local.set $space",
                            "local.get $space",
                            "i32.eqz",
                            "local.get $inside",
                            "i32.eqz",
                            "i32.and",
                            "local.get $count",
                            "i32.add",
                            "local.set $count",
                            "local.get $space",
                            "i32.eqz",
                            "local.set $inside",
                        ],
                    ]
                    .concat(),
                    &step("$i", "i32", "add"),
                );
                body.extend(lines(&["local.get $count", "f64.convert_i32_u"]));
                body
            }
            Task::CountVowels => {
                // Lower-case the byte (| 32), then compare it with each vowel.
                p.locals = vec!["(local $i i32)", "(local $count i32)", "(local $c i32)"];
                let mut inner: Vec<&str> =
                    [&TEXT_BYTE[..], &["i32.const 32", "i32.or", "local.set $c"]].concat();
                for (k, vowel) in [
                    "i32.const 97",
                    "i32.const 101",
                    "i32.const 105",
                    "i32.const 111",
                    "i32.const 117",
                ]
                .iter()
                .enumerate()
                {
                    inner.extend(["local.get $c", vowel, "i32.eq"]);
                    if k > 0 {
                        inner.push("i32.or");
                    }
                }
                inner.extend(["local.get $count", "i32.add", "local.set $count"]);
                let mut body = counted_loop(&TEXT_END, &inner, &step("$i", "i32", "add"));
                body.extend(lines(&["local.get $count", "f64.convert_i32_u"]));
                body
            }
            Task::FileSize => {
                p.imports = vec![PATH_OPEN, FD_FILESTAT_GET];
                let mut body = open_file();
                body.extend(lines(&[
                    "i32.const 1024",
                    "i32.load",
                    "i32.const 1032",
                    "call $fd_filestat_get",
                    "if",
                    "  unreachable",
                    "end",
                    "i32.const 1064",
                    "i64.load",
                    "f64.convert_i64_u",
                ]));
                body
            }
            Task::FileLines | Task::FileNumber => {
                p.imports = vec![PATH_OPEN, FD_READ];
                p.locals = vec![
                    "(local $i i32)",
                    "(local $n i32)",
                    "(local $acc i64)",
                    "(local $c i32)",
                    "(local $seen i32)",
                ];
                let mut body = open_file();
                body.extend(lines(&[
                    "i32.const 1040",
                    "i32.const 2048",
                    "i32.store",
                    "i32.const 1044",
                    "i32.const 4096",
                    "i32.store",
                    "block $eof",
                    "  loop $chunk",
                    "    i32.const 1024",
                    "    i32.load",
                    "    i32.const 1040",
                    "    i32.const 1",
                    "    i32.const 1048",
                    "    call $fd_read",
                    "    if",
                    "      unreachable",
                    "    end",
                    "    i32.const 1048",
                    "    i32.load",
                    "    local.tee $n",
                    "    i32.eqz",
                    "    br_if $eof",
                    "    i32.const 0",
                    "    local.set $i",
                    "    block $scanned",
                    "      loop $byte",
                    "        local.get $i",
                    "        local.get $n",
                    "        i32.ge_u",
                    "        br_if $scanned",
                    "        i32.const 2048",
                    "        local.get $i",
                    "        i32.add",
                    "        i32.load8_u",
                    "        local.set $c",
                ]));
                if self == Task::FileLines {
                    body.extend(lines(&[
                        "        local.get $c",
                        "        i32.const 10",
                        "        i32.eq",
                        "        i64.extend_i32_u",
                        "        local.get $acc",
                        "        i64.add",
                        "        local.set $acc",
                    ]));
                } else {
                    // Digits accumulate; the first non-digit after a digit ends the number.
                    body.extend(lines(&[
                        "        local.get $c",
                        "        i32.const 48",
                        "        i32.sub",
                        "        i32.const 10",
                        "        i32.lt_u",
                        "        if",
                        "          local.get $acc",
                        "          i64.const 10",
                        "          i64.mul",
                        "          local.get $c",
                        "          i32.const 48",
                        "          i32.sub",
                        "          i64.extend_i32_u",
                        "          i64.add",
                        "          local.set $acc",
                        "          i32.const 1",
                        "          local.set $seen",
                        "        else",
                        "          local.get $seen",
                        "          br_if $eof",
                        "        end",
                    ]));
                }
                body.extend(lines(&[
                    "        local.get $i",
                    "        i32.const 1",
                    "        i32.add",
                    "        local.set $i",
                    "        br $byte",
                    "      end",
                    "    end",
                    "    br $chunk",
                    "  end",
                    "end",
                    "local.get $acc",
                    "f64.convert_i64_u",
                ]));
                body
            }
            Task::ClockYear => {
                p.imports = vec![CLOCK_TIME_GET];
                p.memory = true;
                p.locals = vec![
                    "(local $z i64)",
                    "(local $era i64)",
                    "(local $doe i64)",
                    "(local $yoe i64)",
                    "(local $mp i64)",
                ];
                lines(&[
                    "i32.const 0",
                    "i64.const 1000000000",
                    "i32.const 1024",
                    "call $clock_time_get",
                    "if",
                    "  unreachable",
                    "end",
                    "i32.const 1024",
                    "i64.load",
                    "i64.const 86400000000000",
                    "i64.div_u",
                    "i64.const 719468",
                    "i64.add",
                    "local.set $z",
                    "local.get $z",
                    "i64.const 146097",
                    "i64.div_s",
                    "local.set $era",
                    "local.get $z",
                    "local.get $era",
                    "i64.const 146097",
                    "i64.mul",
                    "i64.sub",
                    "local.set $doe",
                    "local.get $doe",
                    "local.get $doe",
                    "i64.const 1460",
                    "i64.div_s",
                    "i64.sub",
                    "local.get $doe",
                    "i64.const 36524",
                    "i64.div_s",
                    "i64.add",
                    "local.get $doe",
                    "i64.const 146096",
                    "i64.div_s",
                    "i64.sub",
                    "i64.const 365",
                    "i64.div_s",
                    "local.set $yoe",
                    "local.get $doe",
                    "local.get $yoe",
                    "i64.const 365",
                    "i64.mul",
                    "local.get $yoe",
                    "i64.const 4",
                    "i64.div_s",
                    "i64.add",
                    "local.get $yoe",
                    "i64.const 100",
                    "i64.div_s",
                    "i64.sub",
                    "i64.sub",
                    "i64.const 5",
                    "i64.mul",
                    "i64.const 2",
                    "i64.add",
                    "i64.const 153",
                    "i64.div_s",
                    "local.set $mp",
                    "local.get $yoe",
                    "local.get $era",
                    "i64.const 400",
                    "i64.mul",
                    "i64.add",
                    "local.get $mp",
                    "i64.const 10",
                    "i64.ge_s",
                    "i64.extend_i32_u",
                    "i64.add",
                    "f64.convert_i64_s",
                ])
            }
        };
        p.render()
    }
}

const PATH_OPEN: &str = "(import \"wasi_snapshot_preview1\" \"path_open\" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))";
const FD_FILESTAT_GET: &str = "(import \"wasi_snapshot_preview1\" \"fd_filestat_get\" (func $fd_filestat_get (param i32 i32) (result i32)))";
const FD_READ: &str = "(import \"wasi_snapshot_preview1\" \"fd_read\" (func $fd_read (param i32 i32 i32 i32) (result i32)))";
const CLOCK_TIME_GET: &str = "(import \"wasi_snapshot_preview1\" \"clock_time_get\" (func $clock_time_get (param i32 i64 i32) (result i32)))";

/// Opens `$file` under the preopened files directory (fd 3) for reading; the new
/// descriptor is stored at address 1024. A failed open traps.
fn open_file() -> Vec<String> {
    lines(&[
        "i32.const 3",
        "i32.const 0",
        "local.get $file",
        "local.get $file_len",
        "i32.const 0",
        "i64.const 2097154",
        "i64.const 0",
        "i32.const 0",
        "i32.const 1024",
        "call $path_open",
        "if",
        "  unreachable",
        "end",
    ])
}

/// `$i >= $text_len`: the end of the text argument.
const TEXT_END: [&str; 3] = ["local.get $i", "local.get $text_len", "i32.ge_u"];
/// Loads byte `$i` of the text argument.
const TEXT_BYTE: [&str; 4] = ["local.get $text", "local.get $i", "i32.add", "i32.load8_u"];

/// `block $done (loop $next (br_if $done exit_when) body step (br $next))`, flat.
fn counted_loop(exit_when: &[&str], body: &[&str], step: &[String]) -> Vec<String> {
    let mut out = lines(&["block $done", "  loop $next"]);
    out.extend(exit_when.iter().map(|l| format!("    {l}")));
    out.push("    br_if $done".into());
    out.extend(body.iter().map(|l| format!("    {l}")));
    out.extend(step.iter().map(|l| format!("    {l}")));
    out.extend(lines(&["    br $next", "  end", "end"]));
    out
}

/// `var = var op 1` for a counter of type `ty`.
fn step(var: &str, ty: &str, op: &str) -> Vec<String> {
    vec![
        format!("local.get {var}"),
        format!("{ty}.const 1"),
        format!("{ty}.{op}"),
        format!("local.set {var}"),
    ]
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[derive(Default)]
struct Program {
    imports: Vec<&'static str>,
    memory: bool,
    params: Vec<String>,
    locals: Vec<&'static str>,
    body: Vec<String>,
}

impl Program {
    fn render(&self) -> String {
        let mut out = String::from("(module\n");
        for import in &self.imports {
            out.push_str(&format!("  {import}\n"));
        }
        if self.memory || !self.imports.is_empty() {
            out.push_str("  (memory (export \"memory\") 1)\n");
        }
        let mut header = String::from("  (func (export \"compute\")");
        for param in &self.params {
            header.push(' ');
            header.push_str(param);
        }
        header.push_str(" (result f64)\n");
        out.push_str(&header);
        if !self.locals.is_empty() {
            out.push_str(&format!("    {}\n", self.locals.join(" ")));
        }
        for line in &self.body {
            out.push_str(&format!("    {line}\n"));
        }
        out.truncate(out.trim_end().len());
        out.push_str("))\n");
        out
    }
}

fn pick(rng: &mut Rng, pool: &[String], name: &str) -> Result<String, String> {
    if pool.is_empty() {
        return Err(format!("the `{name}` pool is empty"));
    }
    Ok(rng.pick(pool).clone())
}

/// Whether the integer `k` is held out for the test split (about one in five).
pub fn held_out(k: i64) -> bool {
    mix(k as u64 ^ 0x005e_ed0f_7e57).is_multiple_of(5)
}

/// An integer in `lo..=hi` that is seen (not held out), unseen (held out), or free.
fn draw_int(rng: &mut Rng, lo: i64, hi: i64, draw: Option<Draw>) -> i64 {
    let Some(draw) = draw else {
        return rng.range(lo, hi);
    };
    for _ in 0..10_000 {
        let k = rng.range(lo, hi);
        if held_out(k) == (draw == Draw::Unseen) {
            return k;
        }
    }
    // A range with no value of the wanted kind (tiny ranges): any value will do.
    rng.range(lo, hi)
}

fn first_integer(bytes: &[u8]) -> Option<f64> {
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let digits: String = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse::<f64>().ok()
}

/// Renders a placeholder value the way a question shows it.
pub fn render_slot(name: &str, slot: &Slot) -> String {
    match slot {
        Slot::Number(v) => format_value(*v),
        Slot::List(items) => items
            .iter()
            .map(|v| format_value(*v))
            .collect::<Vec<_>>()
            .join(", "),
        Slot::Text(t) if name == "char" => format!("'{t}'"),
        Slot::Text(t) => format!("\"{t}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_name_round_trips() {
        for task in Task::ALL {
            let back: Task =
                serde_json::from_value(serde_json::Value::String(task.name())).unwrap();
            assert_eq!(back, task);
        }
    }

    #[test]
    fn held_out_numbers_are_about_a_fifth() {
        let held = (0..10_000).filter(|&k| held_out(k)).count();
        assert!((1_700..2_300).contains(&held), "{held}");
    }
}
