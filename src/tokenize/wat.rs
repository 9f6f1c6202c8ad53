//! The WAT stream's closed vocabulary: parens, keywords, types and opcodes as whole
//! tokens; known `$names` and strings as whole tokens, others spelled out; numbers as
//! digit tokens. Every id decodes; text with a word outside the vocabulary is an error.

use std::collections::HashMap;
use std::fmt;

use super::TokenizeError;

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
/// Separates two spelled-out runs (two numbers, a name then a number).
pub const SEP: u32 = 3;

const SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<sep>"];

/// Keywords, types and instructions, each one token.
const WORDS: &[&str] = &[
    "(",
    ")",
    "module",
    "func",
    "export",
    "import",
    "param",
    "result",
    "local",
    "global",
    "mut",
    "memory",
    "data",
    "table",
    "elem",
    "type",
    "start",
    "offset",
    "block",
    "loop",
    "if",
    "then",
    "else",
    "end",
    "br",
    "br_if",
    "br_table",
    "return",
    "call",
    "call_indirect",
    "unreachable",
    "nop",
    "drop",
    "select",
    "i32",
    "i64",
    "f32",
    "f64",
    "funcref",
    "externref",
    "local.get",
    "local.set",
    "local.tee",
    "global.get",
    "global.set",
    "memory.size",
    "memory.grow",
    "memory.fill",
    "memory.copy",
    "i32.load",
    "i64.load",
    "f32.load",
    "f64.load",
    "i32.load8_s",
    "i32.load8_u",
    "i32.load16_s",
    "i32.load16_u",
    "i64.load8_s",
    "i64.load8_u",
    "i64.load16_s",
    "i64.load16_u",
    "i64.load32_s",
    "i64.load32_u",
    "i32.store",
    "i64.store",
    "f32.store",
    "f64.store",
    "i32.store8",
    "i32.store16",
    "i64.store8",
    "i64.store16",
    "i64.store32",
    "offset=",
    "align=",
    "i32.const",
    "i64.const",
    "f32.const",
    "f64.const",
    "i32.eqz",
    "i32.eq",
    "i32.ne",
    "i32.lt_s",
    "i32.lt_u",
    "i32.gt_s",
    "i32.gt_u",
    "i32.le_s",
    "i32.le_u",
    "i32.ge_s",
    "i32.ge_u",
    "i64.eqz",
    "i64.eq",
    "i64.ne",
    "i64.lt_s",
    "i64.lt_u",
    "i64.gt_s",
    "i64.gt_u",
    "i64.le_s",
    "i64.le_u",
    "i64.ge_s",
    "i64.ge_u",
    "f32.eq",
    "f32.ne",
    "f32.lt",
    "f32.gt",
    "f32.le",
    "f32.ge",
    "f64.eq",
    "f64.ne",
    "f64.lt",
    "f64.gt",
    "f64.le",
    "f64.ge",
    "i32.clz",
    "i32.ctz",
    "i32.popcnt",
    "i32.add",
    "i32.sub",
    "i32.mul",
    "i32.div_s",
    "i32.div_u",
    "i32.rem_s",
    "i32.rem_u",
    "i32.and",
    "i32.or",
    "i32.xor",
    "i32.shl",
    "i32.shr_s",
    "i32.shr_u",
    "i32.rotl",
    "i32.rotr",
    "i64.clz",
    "i64.ctz",
    "i64.popcnt",
    "i64.add",
    "i64.sub",
    "i64.mul",
    "i64.div_s",
    "i64.div_u",
    "i64.rem_s",
    "i64.rem_u",
    "i64.and",
    "i64.or",
    "i64.xor",
    "i64.shl",
    "i64.shr_s",
    "i64.shr_u",
    "i64.rotl",
    "i64.rotr",
    "f32.abs",
    "f32.neg",
    "f32.ceil",
    "f32.floor",
    "f32.trunc",
    "f32.nearest",
    "f32.sqrt",
    "f32.add",
    "f32.sub",
    "f32.mul",
    "f32.div",
    "f32.min",
    "f32.max",
    "f32.copysign",
    "f64.abs",
    "f64.neg",
    "f64.ceil",
    "f64.floor",
    "f64.trunc",
    "f64.nearest",
    "f64.sqrt",
    "f64.add",
    "f64.sub",
    "f64.mul",
    "f64.div",
    "f64.min",
    "f64.max",
    "f64.copysign",
    "i32.wrap_i64",
    "i32.trunc_f32_s",
    "i32.trunc_f32_u",
    "i32.trunc_f64_s",
    "i32.trunc_f64_u",
    "i64.extend_i32_s",
    "i64.extend_i32_u",
    "i64.trunc_f32_s",
    "i64.trunc_f32_u",
    "i64.trunc_f64_s",
    "i64.trunc_f64_u",
    "f32.convert_i32_s",
    "f32.convert_i32_u",
    "f32.convert_i64_s",
    "f32.convert_i64_u",
    "f32.demote_f64",
    "f64.convert_i32_s",
    "f64.convert_i32_u",
    "f64.convert_i64_s",
    "f64.convert_i64_u",
    "f64.promote_f32",
    "i32.reinterpret_f32",
    "i64.reinterpret_f64",
    "f32.reinterpret_i32",
    "f64.reinterpret_i64",
    "i32.extend8_s",
    "i32.extend16_s",
    "i64.extend8_s",
    "i64.extend16_s",
    "i64.extend32_s",
    "i32.trunc_sat_f64_s",
    "i64.trunc_sat_f64_s",
    "nan",
    "inf",
    "-inf",
    "+inf",
    "-nan",
];

/// `$names` the curricula use, each one token (others are spelled `$` + characters).
const NAMES: &[&str] = &[
    "$a",
    "$b",
    "$c",
    "$n",
    "$p",
    "$x",
    "$i",
    "$d",
    "$v",
    "$t",
    "$y",
    "$z",
    "$acc",
    "$end",
    "$prev",
    "$cur",
    "$next",
    "$done",
    "$step",
    "$count",
    "$inside",
    "$space",
    "$seen",
    "$chunk",
    "$byte",
    "$eof",
    "$scanned",
    "$era",
    "$doe",
    "$yoe",
    "$mp",
    "$list",
    "$list_len",
    "$text",
    "$text_len",
    "$char",
    "$char_len",
    "$file",
    "$file_len",
    "$compute",
    "$main",
    "$l",
    "$loop",
    "$path_open",
    "$fd_read",
    "$fd_filestat_get",
    "$clock_time_get",
    "$fd_write",
    "$x0",
    "$x1",
    "$x2",
    "$x3",
    "$x4",
    "$x5",
    "$x6",
    "$x7",
    "$x8",
    "$x9",
    "$x10",
    "$x11",
    "$x12",
    "$x13",
    "$x14",
    "$x15",
];

/// Strings the curricula use, each one token (others are spelled between quotes).
const STRINGS: &[&str] = &[
    "\"compute\"",
    "\"memory\"",
    "\"wasi_snapshot_preview1\"",
    "\"path_open\"",
    "\"fd_read\"",
    "\"fd_filestat_get\"",
    "\"clock_time_get\"",
    "\"fd_write\"",
    "\"fd_close\"",
    "\"environ_get\"",
    "\"environ_sizes_get\"",
    "\"main\"",
];

/// What a token is, for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Special,
    Word,
    /// Starts a spelled-out name: `$`.
    Dollar,
    /// Opens or closes a spelled-out string: `"`.
    Quote,
    /// One printable character of a number, name or string.
    Char,
}

/// The closed WAT vocabulary.
#[derive(Debug, Clone)]
pub struct WatVocab {
    tokens: Vec<(String, Kind)>,
    ids: HashMap<String, u32>,
}

/// A word outside the vocabulary, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownToken {
    pub token: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for UnknownToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: `{}` is not in the WAT vocabulary",
            self.line, self.column, self.token
        )
    }
}

impl Default for WatVocab {
    fn default() -> Self {
        Self::new()
    }
}

impl WatVocab {
    pub fn new() -> WatVocab {
        let mut tokens: Vec<(String, Kind)> = SPECIALS
            .iter()
            .map(|s| (s.to_string(), Kind::Special))
            .collect();
        tokens.extend(
            WORDS
                .iter()
                .chain(NAMES)
                .chain(STRINGS)
                .map(|w| (w.to_string(), Kind::Word)),
        );
        tokens.push(("$".into(), Kind::Dollar));
        tokens.push(("\"".into(), Kind::Quote));
        tokens.extend((0x20u8..0x7f).map(|b| (format!("·{}", b as char), Kind::Char)));
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.clone(), i as u32))
            .collect();
        WatVocab { tokens, ids }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a whole token (`"(", "param", "f64", "\"compute\""`, …).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The token text of `id` (characters are shown as `·c`).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|(t, _)| t.as_str())
    }

    fn char_id(&self, c: char) -> Option<u32> {
        self.ids.get(&format!("·{c}")).copied()
    }

    /// Token ids of a WAT program (no `<bos>`/`<eos>`); comments and layout are dropped.
    pub fn encode(&self, wat: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut out: Vec<u32> = Vec::new();
        let mut in_run = false;
        for lexeme in lex(wat) {
            let (text, line, column) = lexeme;
            let unknown = || {
                TokenizeError::Wat(UnknownToken {
                    token: text.to_string(),
                    line,
                    column,
                })
            };
            if let Some(&id) = self.ids.get(text) {
                out.push(id);
                in_run = false;
                continue;
            }
            let spelled: Vec<u32> = if let Some(name) = text.strip_prefix('$') {
                let mut ids = vec![self.ids["$"]];
                for c in name.chars() {
                    ids.push(self.char_id(c).ok_or_else(unknown)?);
                }
                ids
            } else if text.starts_with('"') {
                let inner = text
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .ok_or_else(unknown)?;
                let mut ids = vec![self.ids["\""]];
                for c in inner.chars() {
                    ids.push(self.char_id(c).ok_or_else(unknown)?);
                }
                ids.push(self.ids["\""]);
                out.extend(ids);
                in_run = false;
                continue;
            } else if is_number(text) {
                text.chars()
                    .map(|c| self.char_id(c).ok_or_else(unknown))
                    .collect::<Result<_, _>>()?
            } else if let Some(value) = text
                .strip_prefix("offset=")
                .or_else(|| text.strip_prefix("align="))
            {
                let key = &text[..text.len() - value.len()];
                let mut ids = vec![self.ids[key]];
                for c in value.chars() {
                    ids.push(self.char_id(c).ok_or_else(unknown)?);
                }
                out.extend(ids);
                in_run = true;
                continue;
            } else {
                return Err(unknown());
            };
            // Two spelled runs in a row need a separator, or they would read as one.
            let starts_with_char = self.kind(spelled[0]) == Kind::Char;
            if in_run && starts_with_char {
                out.push(SEP);
            }
            out.extend(spelled);
            in_run = true;
        }
        Ok(out)
    }

    fn kind(&self, id: u32) -> Kind {
        self.tokens
            .get(id as usize)
            .map_or(Kind::Special, |(_, k)| *k)
    }

    /// The text of any id sequence: whole tokens separated by spaces, spelled runs
    /// joined; `<pad>`, `<bos>` and `<eos>` are dropped, unknown ids too.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        let mut joined = false; // the previous token continues into this one
        let mut in_string = false;
        for &id in ids {
            let Some((text, kind)) = self.tokens.get(id as usize) else {
                continue;
            };
            match kind {
                Kind::Special => {
                    joined = false;
                    continue;
                }
                Kind::Char => {
                    if !joined && !in_string {
                        space(&mut out);
                    }
                    out.push_str(text.trim_start_matches('·'));
                    joined = true;
                }
                Kind::Dollar => {
                    if !in_string {
                        space(&mut out);
                    }
                    out.push('$');
                    joined = true;
                }
                Kind::Quote => {
                    if !in_string {
                        space(&mut out);
                    }
                    out.push('"');
                    in_string = !in_string;
                    joined = in_string;
                }
                Kind::Word => {
                    if !(text.as_str() == ")" || out.ends_with('(')) {
                        space(&mut out);
                    }
                    out.push_str(text);
                    joined = text.ends_with('=');
                }
            }
        }
        out
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('(') {
        out.push(' ');
    }
}

fn is_number(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    body.starts_with(|c: char| c.is_ascii_digit())
        || body.starts_with("nan")
        || body.starts_with("inf")
}

/// Splits WAT into lexemes with 1-based positions: parens, strings, and atoms;
/// whitespace and comments are skipped.
fn lex(wat: &str) -> Vec<(&str, usize, usize)> {
    let bytes = wat.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        let column = i - line_start + 1;
        match c {
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' if bytes.get(i + 1) == Some(&b';') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' if bytes.get(i + 1) == Some(&b';') => {
                let end = wat[i..].find(";)").map_or(bytes.len(), |e| i + e + 2);
                for &b in &bytes[i..end] {
                    if b == b'\n' {
                        line += 1;
                    }
                }
                if let Some(nl) = wat[..end].rfind('\n').filter(|&nl| nl >= i) {
                    line_start = nl + 1;
                }
                i = end;
            }
            b'(' | b')' => {
                out.push((&wat[i..i + 1], line, column));
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(bytes.len());
                out.push((&wat[i..end], line, column));
                i = end;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"')
                {
                    i += 1;
                }
                out.push((&wat[start..i], line, column));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(wat: &str) {
        let vocab = WatVocab::new();
        let ids = vocab.encode(wat).unwrap();
        let decoded = vocab.decode(&ids);
        assert_eq!(
            wat::parse_str(&decoded).unwrap(),
            wat::parse_str(wat).unwrap(),
            "{wat}\n→ {decoded}"
        );
    }

    #[test]
    fn programs_round_trip_to_the_same_module() {
        round_trip(
            "(module (func (export \"compute\") (param $a f64) (param $b f64) (result f64) local.get $a local.get $b f64.add))",
        );
        round_trip(
            "(module ;; comment\n (memory (export \"memory\") 1) (data (i32.const 1024) \"hi \\\"there\\\"\")\n (func $spin (export \"other\") (param $q1 i32) (result f64) (; block ;) i32.const 12 i32.const -3 i32.add drop f64.const 2.5e-3))",
        );
        round_trip(
            "(module (func (export \"compute\") (result f64) (block $x (br_table 0 0 (i32.const 1))) f64.const nan))",
        );
        round_trip(
            "(module (memory 1) (func (export \"compute\") (result f64) i32.const 8 i64.load offset=8 align=4 f64.convert_i64_s))",
        );
    }

    #[test]
    fn unknown_words_are_errors_with_positions() {
        let err = WatVocab::new()
            .encode("(module\n  (func f64.cnst))")
            .unwrap_err();
        match err {
            TokenizeError::Wat(u) => assert_eq!(
                u,
                UnknownToken {
                    token: "f64.cnst".into(),
                    line: 2,
                    column: 9
                }
            ),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn every_id_decodes() {
        let vocab = WatVocab::new();
        let all: Vec<u32> = (0..vocab.len() as u32 + 3).collect();
        assert!(!vocab.decode(&all).is_empty());
        assert!(vocab.len() < 512, "{}", vocab.len());
    }
}
