//! The built-in tasks a curriculum family draws from: each knows its placeholders,
//! how to sample them, the value they should give, and the WAT program computing it
//! (`programs/<task>.wat`, its parameters filled in from the question).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rng::{Rng, mix};
use crate::sandbox::format_value;

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
    /// `a + b - c`
    AddSub,
    /// `a - b * c`: the product first
    SubMul,
    /// `a + b / c`: the quotient first
    AddDiv,
    /// `(a - b) * c`
    SubMulParen,
    /// `a - (b + c)`
    SubSumParen,
    /// `a + b * c - d`
    AddMulSub,
    /// The sum of `n`'s digits
    DigitSum,
    /// The product of `n`'s digits
    DigitProduct,
    /// How many digits `n` has
    DigitCount,
    /// `n` with its digits in reverse order
    ReverseDigits,
}

/// A number placeholder any phrasing of a task on numbers may hold once, which the
/// computation does not use ("Mina, who is {z}, had {a} stickers…"): it binds to a
/// parameter like every number in the question, and the program leaves it unread.
pub const DISTRACTOR: &str = "z";

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
    /// Integers of either sign: operands and results may be negative (in
    /// symbols, a negative operand after an operator is written in parentheses).
    Signed,
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
    pub const ALL: [Task; 37] = [
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
        Task::AddSub,
        Task::SubMul,
        Task::AddDiv,
        Task::SubMulParen,
        Task::SubSumParen,
        Task::AddMulSub,
        Task::DigitSum,
        Task::DigitProduct,
        Task::DigitCount,
        Task::ReverseDigits,
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
            Task::AddSub | Task::SubMul | Task::AddDiv | Task::SubMulParen | Task::SubSumParen => {
                &[("a", Number), ("b", Number), ("c", Number)]
            }
            Task::AddMulSub => &[("a", Number), ("b", Number), ("c", Number), ("d", Number)],
            Task::DigitSum | Task::DigitProduct | Task::DigitCount | Task::ReverseDigits => &[("n", Number)],
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
                let (a, b) = self.operands(rng, numbers, &mut int);
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
            Task::CountChar | Task::TextLength | Task::CountWords | Task::CountVowels | Task::FileSize | Task::FileLines | Task::FileNumber => {
                self.sample_strings(rng, draw, pools, &mut s)?
            }
            Task::ClockYear => {}
            Task::AddSub | Task::SubSumParen => {
                // Non-negative results, so the word problems stay sensible.
                let a = int(rng, 1, 999);
                let b = int(rng, 1, 500);
                let c = if self == Task::AddSub { rng.range(1, (a + b).min(500)) } else { rng.range(1, 500) };
                let (b, c) = if self == Task::SubSumParen && b + c > a {
                    let b = rng.range(0, a / 2);
                    (b, rng.range(0, a - b))
                } else {
                    (b, c)
                };
                put(&mut s, "a", a as f64);
                put(&mut s, "b", b as f64);
                put(&mut s, "c", c as f64);
            }
            Task::SubMul => {
                put(&mut s, "a", int(rng, 1, 999) as f64);
                put(&mut s, "b", int(rng, 2, 20) as f64);
                put(&mut s, "c", int(rng, 2, 20) as f64);
            }
            Task::AddDiv => {
                put(&mut s, "a", int(rng, 1, 999) as f64);
                let c = int(rng, 2, 12);
                put(&mut s, "b", (c * rng.range(1, 50)) as f64);
                put(&mut s, "c", c as f64);
            }
            Task::SubMulParen => {
                let a = int(rng, 1, 99);
                let b = rng.range(0, a);
                put(&mut s, "a", a as f64);
                put(&mut s, "b", b as f64);
                put(&mut s, "c", int(rng, 2, 20) as f64);
            }
            Task::AddMulSub => {
                put(&mut s, "a", int(rng, 1, 200) as f64);
                put(&mut s, "b", int(rng, 2, 20) as f64);
                put(&mut s, "c", int(rng, 2, 20) as f64);
                put(&mut s, "d", int(rng, 1, 200) as f64);
            }
            Task::DigitSum | Task::DigitProduct | Task::DigitCount | Task::ReverseDigits => {
                let digits = rng.range(2, 7) as u32;
                put(&mut s, "n", int(rng, 10i64.pow(digits - 1), 10i64.pow(digits) - 1) as f64);
            }
        }
        Ok(s)
    }

    /// The two operands of a binary arithmetic task.
    fn operands(self, rng: &mut Rng, numbers: Numbers, int: &mut dyn FnMut(&mut Rng, i64, i64) -> i64) -> (f64, f64) {
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
            (Task::Add | Task::Sub, Numbers::Signed) => {
                (signed(rng, 9999, int), signed(rng, 9999, &mut |r: &mut Rng, lo, hi| r.range(lo, hi)))
            }
            (Task::Mul, Numbers::Signed) => {
                (signed(rng, 99, int), signed(rng, 99, &mut |r: &mut Rng, lo, hi| r.range(lo, hi)))
            }
            (_, Numbers::Signed) => {
                let q = signed(rng, 99, int);
                let b = signed(rng, 49, &mut |r: &mut Rng, lo, hi| r.range(lo, hi));
                let b = if b.abs() < 2.0 { 2.0 * b.signum() } else { b };
                (q * b, b)
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
        // Subtraction keeps non-negative results so word problems stay sensible;
        // signed operands may give any result.
        if self == Task::Sub && b > a && numbers != Numbers::Signed { (b, a) } else { (a, b) }
    }

    /// A string task's text (and character), or a file task's file, from the pool
    /// `draw` names.
    fn sample_strings(self, rng: &mut Rng, draw: Draw, pools: &Pools, s: &mut Sample) -> Result<(), String> {
        match self {
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
            _ => {}
        }
        Ok(())
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
            Task::AddSub => a + b - n("c"),
            Task::SubMul => a - b * n("c"),
            Task::AddDiv => a + b / n("c"),
            Task::SubMulParen => (a - b) * n("c"),
            Task::SubSumParen => a - (b + n("c")),
            Task::AddMulSub => a + b * n("c") - n("d"),
            Task::DigitSum | Task::DigitProduct | Task::DigitCount | Task::ReverseDigits => {
                let digits: Vec<i64> = format!("{}", n("n") as i64).bytes().map(|b| i64::from(b - b'0')).collect();
                match self {
                    Task::DigitSum => digits.iter().sum::<i64>() as f64,
                    Task::DigitProduct => digits.iter().product::<i64>() as f64,
                    Task::DigitCount => digits.len() as f64,
                    _ => digits.iter().rev().fold(0i64, |r, d| r * 10 + d) as f64,
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
    /// the placeholders appear in the question): the task's module from
    /// `programs/<task>.wat` with its `{params}` filled.
    pub fn program(self, order: &[&str], sample: &Sample) -> String {
        let mut params = String::new();
        for &name in order {
            match sample.get(name) {
                Some(Slot::Number(_)) => params += &format!(" (param ${name} f64)"),
                Some(Slot::Text(_)) => params += &format!(" (param ${name} i32) (param ${name}_len i32)"),
                // Any length: the sandbox writes the numbers to memory as f64s.
                Some(Slot::List(_)) => params += " (param $list i32) (param $list_len i32)",
                None => {}
            }
        }
        self.template().replace("{params}", &params)
    }

    /// The task's program with `{params}` where `compute`'s parameters go.
    fn template(self) -> &'static str {
        match self {
            Task::Add => include_str!("programs/add.wat"),
            Task::Sub => include_str!("programs/sub.wat"),
            Task::Mul => include_str!("programs/mul.wat"),
            Task::Div => include_str!("programs/div.wat"),
            Task::AddMul => include_str!("programs/add_mul.wat"),
            Task::SubDiv => include_str!("programs/sub_div.wat"),
            Task::MulAdd => include_str!("programs/mul_add.wat"),
            Task::Percent => include_str!("programs/percent.wat"),
            Task::Greater => include_str!("programs/greater.wat"),
            Task::Conditional => include_str!("programs/conditional.wat"),
            Task::Min => include_str!("programs/min.wat"),
            Task::Max => include_str!("programs/max.wat"),
            Task::Average => include_str!("programs/average.wat"),
            Task::Factorial => include_str!("programs/factorial.wat"),
            Task::SumRange => include_str!("programs/sum_range.wat"),
            Task::Power => include_str!("programs/power.wat"),
            Task::Gcd => include_str!("programs/gcd.wat"),
            Task::Fibonacci => include_str!("programs/fibonacci.wat"),
            Task::IsPrime => include_str!("programs/is_prime.wat"),
            Task::CountChar => include_str!("programs/count_char.wat"),
            Task::TextLength => include_str!("programs/text_length.wat"),
            Task::CountWords => include_str!("programs/count_words.wat"),
            Task::CountVowels => include_str!("programs/count_vowels.wat"),
            Task::FileSize => include_str!("programs/file_size.wat"),
            Task::FileLines => include_str!("programs/file_lines.wat"),
            Task::FileNumber => include_str!("programs/file_number.wat"),
            Task::ClockYear => include_str!("programs/clock_year.wat"),
            Task::AddSub => include_str!("programs/add_sub.wat"),
            Task::SubMul => include_str!("programs/sub_mul.wat"),
            Task::AddDiv => include_str!("programs/add_div.wat"),
            Task::SubMulParen => include_str!("programs/sub_mul_paren.wat"),
            Task::SubSumParen => include_str!("programs/sub_sum_paren.wat"),
            Task::AddMulSub => include_str!("programs/add_mul_sub.wat"),
            Task::DigitSum => include_str!("programs/digit_sum.wat"),
            Task::DigitProduct => include_str!("programs/digit_product.wat"),
            Task::DigitCount => include_str!("programs/digit_count.wat"),
            Task::ReverseDigits => include_str!("programs/reverse_digits.wat"),
        }
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

/// A nonzero integer of up to `max` in size, its size drawn by `int`: negative
/// half the time.
fn signed(rng: &mut Rng, max: i64, int: &mut dyn FnMut(&mut Rng, i64, i64) -> i64) -> f64 {
    let size = int(rng, 1, max) as f64;
    if rng.unit() < 0.5 { -size } else { size }
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
    fn expressions_and_digit_tasks_compute_what_they_say() {
        let pools = Pools::default();
        let eval = |task: Task, slots: &[(&'static str, f64)]| {
            let sample: Sample = slots.iter().map(|&(k, v)| (k, Slot::Number(v))).collect();
            task.evaluate(&sample, &pools).unwrap()
        };
        let abcd = [("a", 9.0), ("b", 4.0), ("c", 2.0), ("d", 1.0)];
        assert_eq!(eval(Task::AddSub, &abcd), 11.0);
        assert_eq!(eval(Task::SubMul, &abcd), 1.0);
        assert_eq!(eval(Task::AddDiv, &abcd), 11.0);
        assert_eq!(eval(Task::SubMulParen, &abcd), 10.0);
        assert_eq!(eval(Task::SubSumParen, &abcd), 3.0);
        assert_eq!(eval(Task::AddMulSub, &abcd), 16.0);
        assert_eq!(eval(Task::DigitSum, &[("n", 4719.0)]), 21.0);
        assert_eq!(eval(Task::DigitProduct, &[("n", 4719.0)]), 252.0);
        assert_eq!(eval(Task::DigitCount, &[("n", 4719.0)]), 4.0);
        assert_eq!(eval(Task::ReverseDigits, &[("n", 1200.0)]), 21.0);
    }

    #[test]
    fn signed_operands_take_either_sign() {
        let mut rng = Rng::new(9);
        let pools = Pools::default();
        for task in [Task::Add, Task::Sub, Task::Mul, Task::Div] {
            let (mut negative_operand, mut negative_value) = (0, 0);
            for _ in 0..200 {
                let s = task.sample(&mut rng, Draw::Seen, Numbers::Signed, &pools).unwrap();
                let (Slot::Number(a), Slot::Number(b)) = (&s["a"], &s["b"]) else { panic!() };
                negative_operand += usize::from(*a < 0.0 || *b < 0.0);
                let v = task.evaluate(&s, &pools).unwrap();
                negative_value += usize::from(v < 0.0);
                if task == Task::Div {
                    assert_eq!(v.fract(), 0.0, "{a} / {b}");
                    assert!(b.abs() >= 2.0);
                }
            }
            assert!(negative_operand > 100 && negative_value > 50, "{task:?}: {negative_operand} {negative_value}");
        }
    }

    #[test]
    fn held_out_numbers_are_about_a_fifth() {
        let held = (0..10_000).filter(|&k| held_out(k)).count();
        assert!((1_700..2_300).contains(&held), "{held}");
    }
}
