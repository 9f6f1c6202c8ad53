//! Argument binding: the numbers and quoted strings of a question, in order of
//! appearance, become the arguments of the program's `compute` function.

use serde::{Deserialize, Serialize};

/// One value bound from a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    /// A number: fills one numeric parameter (`f64`, `f32`, `i64` or `i32`) — or,
    /// when `compute` ends in an `(i32 ptr, i32 len)` pair and the question has more
    /// numbers than scalar parameters, the remaining numbers are written to memory
    /// as an `f64` array passed as address and count (a list of any length).
    Number(f64),
    /// A quoted string: written into the module's exported `memory` and passed
    /// as an `(i32 ptr, i32 len)` pair.
    Text(String),
}

impl Arg {
    /// Parses a command-line value: a number when it reads as one, text otherwise.
    pub fn parse_cli(raw: &str) -> Arg {
        match parse_number(raw) {
            Some(n) => Arg::Number(n),
            None => Arg::Text(raw.to_string()),
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Number(n) => write!(f, "{}", crate::sandbox::format_value(*n)),
            Arg::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Parses a whole string as one number with the question rules (sign,
/// decimals, thousands separators); `None` if anything else is in it.
pub fn parse_number(raw: &str) -> Option<f64> {
    let chars: Vec<char> = raw.trim().chars().collect();
    let (value, end) = scan_number(&chars, 0)?;
    (end == chars.len()).then_some(value)
}

/// Binds the arguments of a question, in order of appearance.
///
/// - Numbers: an optional sign (only where it cannot be a binary minus, i.e. not
///   right after a digit), digits with optional `,` thousands separators (a comma
///   followed by exactly three digits), and an optional decimal part. Digits
///   glued to a preceding letter are part of a word (`H2SO4`, `x2`) and are not bound.
/// - Strings: text in double quotes, or in single quotes that do not touch a
///   letter on the outside (so the apostrophe of `what's` is not a quote).
///   Numbers inside a string belong to the string.
pub fn bind(question: &str) -> Vec<Arg> {
    bind_spans(question).into_iter().map(|(arg, _)| arg).collect()
}

/// [`bind`] with where each argument is written: the character range of a number,
/// or of a string's text inside its quotes.
pub fn bind_spans(question: &str) -> Vec<(Arg, std::ops::Range<usize>)> {
    let chars: Vec<char> = question.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i == 0 { None } else { Some(chars[i - 1]) };
        if c == '"' {
            if let Some(end) = chars[i + 1..].iter().position(|&d| d == '"') {
                args.push((
                    Arg::Text(chars[i + 1..i + 1 + end].iter().collect()),
                    i + 1..i + 1 + end,
                ));
                i += end + 2;
                continue;
            }
        } else if c == '\'' && !prev.is_some_and(char::is_alphanumeric) {
            if let Some(end) = closing_single_quote(&chars, i + 1) {
                args.push((Arg::Text(chars[i + 1..end].iter().collect()), i + 1..end));
                i = end + 1;
                continue;
            }
        } else if starts_number(&chars, i)
            && !prev.is_some_and(|p| p.is_alphabetic() || p == '_')
            && let Some((value, end)) = scan_number(&chars, i)
        {
            args.push((Arg::Number(value), i..end));
            i = end;
            continue;
        }
        // Skip the rest of a word so digits inside it are never bound.
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    args
}

fn closing_single_quote(chars: &[char], from: usize) -> Option<usize> {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '\'' && !chars.get(j + 1).is_some_and(|c| c.is_alphanumeric()) {
            return (j > from).then_some(j);
        }
        j += 1;
    }
    None
}

fn starts_number(chars: &[char], i: usize) -> bool {
    let digit_at = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    match chars[i] {
        d if d.is_ascii_digit() => true,
        '-' | '+' => {
            let after_digit = i > 0 && (chars[i - 1].is_ascii_digit() || chars[i - 1] == '.');
            !after_digit && (digit_at(i + 1) || (chars.get(i + 1) == Some(&'.') && digit_at(i + 2)))
        }
        '.' => digit_at(i + 1) && !(i > 0 && chars[i - 1].is_ascii_digit()),
        _ => false,
    }
}

/// Scans one number starting at `i`; returns its value and the index after it.
fn scan_number(chars: &[char], mut i: usize) -> Option<(f64, usize)> {
    let mut text = String::new();
    if matches!(chars.get(i), Some('-') | Some('+')) {
        if chars[i] == '-' {
            text.push('-');
        }
        i += 1;
    }
    let int_start = i;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            text.push(c);
            i += 1;
        } else if c == ',' && i > int_start && is_thousands_group(chars, i + 1) {
            i += 1;
        } else {
            break;
        }
    }
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        text.push('.');
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            text.push(chars[i]);
            i += 1;
        }
    }
    if !text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    // Scientific notation: `1.5e-06`, `3E8`.
    if matches!(chars.get(i), Some('e') | Some('E')) {
        let sign = usize::from(matches!(chars.get(i + 1), Some('-') | Some('+')));
        let digits = chars[(i + 1 + sign).min(chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let next_is_letter = chars
            .get(i + 1 + sign + digits)
            .is_some_and(|c| c.is_alphabetic());
        if digits > 0 && !next_is_letter {
            text.extend(&chars[i..i + 1 + sign + digits]);
            i += 1 + sign + digits;
        }
    }
    text.parse::<f64>().ok().map(|v| (v, i))
}

fn is_thousands_group(chars: &[char], at: usize) -> bool {
    (0..3).all(|k| chars.get(at + k).is_some_and(char::is_ascii_digit))
        && !chars.get(at + 3).is_some_and(char::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(q: &str) -> Vec<f64> {
        bind(q)
            .into_iter()
            .map(|a| match a {
                Arg::Number(n) => n,
                Arg::Text(t) => panic!("unexpected text {t:?}"),
            })
            .collect()
    }

    #[test]
    fn numbers_bind_in_order_with_signs_decimals_and_separators() {
        assert_eq!(nums("What is 12 * 7?"), vec![12.0, 7.0]);
        assert_eq!(nums("Add -3.5 and 1,234,567.25."), vec![-3.5, 1234567.25,]);
        assert_eq!(nums("What is 5-3?"), vec![5.0, 3.0]);
        assert_eq!(
            nums("Find the median of: [33, 29, 94]"),
            vec![33.0, 29.0, 94.0]
        );
        assert_eq!(nums("numbers 3,4,5"), vec![3.0, 4.0, 5.0]);
        assert_eq!(nums("What is 15% of 80?"), vec![15.0, 80.0]);
        assert_eq!(nums("Convert -40°C to Fahrenheit"), vec![-40.0]);
        assert_eq!(nums("It costs .5 dollars."), vec![0.5]);
        assert_eq!(nums("L = 1.5e-06 H and C = 2E3 F"), vec![1.5e-6, 2000.0]);
        assert_eq!(nums("3 eggs"), vec![3.0]);
    }

    #[test]
    fn digits_inside_words_are_not_bound() {
        assert_eq!(
            nums("How many moles are in 9.8 g of H2SO4 (sulfuric acid)?"),
            vec![9.8]
        );
        assert_eq!(nums("What is x2 plus 3?"), vec![3.0]);
    }

    #[test]
    fn quoted_strings_bind_as_text_and_hide_their_numbers() {
        let args = bind("Count the 's' characters in: \"abc 12 s\" please, what's 4?");
        assert_eq!(
            args,
            vec![
                Arg::Text("s".into()),
                Arg::Text("abc 12 s".into()),
                Arg::Number(4.0)
            ]
        );
    }

    #[test]
    fn cli_values_parse_as_numbers_or_text() {
        assert_eq!(Arg::parse_cli("4.5"), Arg::Number(4.5));
        assert_eq!(Arg::parse_cli("-2"), Arg::Number(-2.0));
        assert_eq!(Arg::parse_cli("1,000"), Arg::Number(1000.0));
        assert_eq!(Arg::parse_cli("4.5x"), Arg::Text("4.5x".into()));
        assert_eq!(Arg::parse_cli("hello"), Arg::Text("hello".into()));
    }

    #[test]
    fn spans_locate_each_argument_as_written() {
        let q = "Count 'l' in \"a b\" then add -1,250.5 and 3.";
        let chars: Vec<char> = q.chars().collect();
        let shown: Vec<String> = bind_spans(q)
            .into_iter()
            .map(|(_, span)| chars[span].iter().collect())
            .collect();
        assert_eq!(shown, ["l", "a b", "-1,250.5", "3"]);
    }

}
