//! The layers of DESIGN.md §5, kept by a test: every `crate::` (and, in the binary,
//! `wmx::`) path under `src/` is read, and an import that climbs the declared
//! order, or two modules that import each other, fails with the file that does it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, top to bottom. A module imports only modules of
/// lower tiers: never one above, never one of its own tier.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["run"],
    &["compare"],
    &["report"],
    &["eval", "bench"],
    &["infer"],
    &["rundir"],
    &["train"],
    &["model", "curriculum", "prompt"],
    &["ops"],
    &["backend"],
    &["config"],
    &["sandbox", "tokenize"],
    &["tables", "profile"],
    &["fs"],
];

/// External crates only some layers may name: sandbox and tokenize know nothing of
/// burn; the model and everything above it nothing of wasmtime, which stays behind
/// the sandbox's own types.
const CRATES: &[(&str, &[&str])] = &[
    ("wasmtime", &["sandbox"]),
    ("wasmtime_wasi", &["sandbox"]),
    ("burn", &["cli", "run", "compare", "report", "eval", "bench", "infer", "rundir", "train", "model", "ops", "backend"]),
];

/// One import: the module path of the file that wrote it, the path it names, and
/// where it was written.
#[derive(Debug, Clone)]
struct Import {
    from: Vec<String>,
    to: Vec<String>,
    at: String,
}

/// The module path of a file under `src/`: `src/run/mod.rs` → `[run]`,
/// `src/ops/cuda/kernel.rs` → `[ops, cuda, kernel]`; the binary's files
/// (`main.rs`, `cli/`) are module `cli`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    if parts.first().is_some_and(|p| p == "main") {
        parts = vec!["cli".into()];
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable src/").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, strings or character literals (kept as blanks, so
/// line numbers hold): `crate::` in a doc link or a message is not an import.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || (next == Some('#') && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_'))) {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b::c, d}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(&tree);
        let path = path.split("as").next().unwrap_or(path);
        return vec![path.split("::").filter(|s| !s.is_empty() && *s != "*").map(String::from).collect()];
    };
    let prefix: Vec<String> = tree[..open].split("::").filter(|s| !s.is_empty()).map(String::from).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        for rest in expand(part) {
            let mut path = prefix.clone();
            if rest.first().is_some_and(|s| s != "self") {
                path.extend(rest);
            }
            out.push(path);
        }
    }
    out
}

/// Resolves `path`, written in module `from` of the library, to a module path of
/// the library, or `None` when it names something else (std, another crate).
fn resolve(from: &[String], path: &[String], binary: bool) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let mut at: Vec<String> = match first {
        "crate" if binary => return None,
        "crate" => Vec::new(),
        "wmx" if binary => Vec::new(),
        "super" | "self" if binary => return None,
        "self" => from.to_vec(),
        "super" => {
            let mut at = from.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                at.pop();
                rest = &rest[1..];
            }
            at.extend(rest.iter().cloned());
            return Some(at);
        }
        _ => return None,
    };
    at.extend(path[1..].iter().cloned());
    Some(at)
}

/// The inline modules (`mod tests { … }`) open at the start of each line of
/// `code`, innermost last: `super::` inside one names the file's own module.
fn inline_modules(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut lines = vec![Vec::new()];
    let mut depth = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\n' => lines.push(open.iter().map(|(m, _)| m.clone()).collect()),
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if open.last().is_some_and(|(_, d)| *d > depth) {
                    open.pop();
                }
            }
            'm' if chars[i..].starts_with(&['m', 'o', 'd', ' ']) && !(i > 0 && is_ident(chars[i - 1])) => {
                let mut j = i + 4;
                let mut name = String::new();
                while j < chars.len() && is_ident(chars[j]) {
                    name.push(chars[j]);
                    j += 1;
                }
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'{') {
                    depth += 1;
                    open.push((name, depth));
                    i = j;
                }
            }
            _ => {}
        }
        i += 1;
    }
    lines
}

/// Every library path each file names: `use` trees and paths written inline.
fn imports(src: &Path) -> (Vec<Import>, Vec<(String, String, String)>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    let mut crates = Vec::new();
    for file in files {
        let from = module_of(src, &file);
        let binary = from.first().is_some_and(|m| m == "cli");
        let code = code_only(&std::fs::read_to_string(&file).expect("readable source"));
        let inline = inline_modules(&code);
        let module_at = |line: usize| -> Vec<String> {
            let mut at = from.clone();
            at.extend(inline.get(line - 1).into_iter().flatten().cloned());
            at
        };
        let shown = file.strip_prefix(src.parent().unwrap_or(src)).unwrap_or(&file).display().to_string();
        for (n, line) in code.lines().enumerate() {
            let at = format!("{shown}:{}", n + 1);
            for krate in CRATES.iter().map(|(k, _)| *k) {
                let mut rest = line;
                while let Some(i) = rest.find(krate) {
                    let before = rest[..i].chars().next_back();
                    let after = &rest[i + krate.len()..];
                    if !before.is_some_and(|c| is_ident(c) || c == ':') && after.starts_with("::") {
                        crates.push((from[0].clone(), krate.to_string(), at.clone()));
                    }
                    rest = &rest[i + krate.len()..];
                }
            }
        }
        // `use` declarations, possibly over several lines.
        let mut rest = code.as_str();
        let mut offset = 0;
        while let Some(i) = rest.find("use ") {
            let before = rest[..i].chars().next_back();
            let start = i + 4;
            if before.is_some_and(is_ident) {
                offset += start;
                rest = &rest[start..];
                continue;
            }
            let end = rest[start..].find(';').map_or(rest.len(), |e| start + e);
            let line = code[..offset + i].matches('\n').count() + 1;
            for path in expand(&rest[start..end]) {
                if let Some(to) = resolve(&module_at(line), &path, binary) {
                    found.push(Import { from: from.clone(), to, at: format!("{shown}:{line}") });
                }
            }
            offset += end;
            rest = &rest[end..];
        }
        // Paths written inline: `crate::a::b`, `super::x`, `wmx::y`.
        for (n, line) in code.lines().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            for root in ["crate::", "super::", "wmx::"] {
                let mut search = 0;
                while let Some(i) = line[search..].find(root).map(|i| i + search) {
                    search = i + root.len();
                    let before = line[..i].chars().next_back();
                    if before.is_some_and(|c| is_ident(c) || c == ':') {
                        continue;
                    }
                    let mut j = line[..i].chars().count();
                    let mut path = String::new();
                    while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
                        path.push(chars[j]);
                        j += 1;
                    }
                    let parts: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
                    if let Some(to) = resolve(&module_at(n + 1), &parts, binary) {
                        found.push(Import { from: from.clone(), to, at: format!("{shown}:{}", n + 1) });
                    }
                }
            }
        }
    }
    (found, crates)
}

fn tier(module: &str) -> Option<usize> {
    LAYERS.iter().position(|tier| tier.contains(&module))
}

/// The imports that break a rule, one message each.
fn violations(src: &Path) -> Vec<String> {
    let (found, crates) = imports(src);
    let mut problems = BTreeSet::new();
    // Edges between sibling modules: for each import, the children of the two
    // paths' common ancestor. A module and its own descendants are one unit.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for import in &found {
        let common = import.from.iter().zip(&import.to).take_while(|(a, b)| a == b).count();
        if common >= import.from.len() || common >= import.to.len() {
            continue;
        }
        let (a, b) = (&import.from[common], &import.to[common]);
        if common == 0 {
            match (tier(a), tier(b)) {
                (Some(ta), Some(tb)) if tb <= ta => {
                    problems.insert(format!(
                        "{}: `{}` imports `{}` ({}), which is not below it in DESIGN.md §5",
                        import.at,
                        a,
                        import.to.join("::"),
                        if ta == tb { "the same layer" } else { "a layer above" }
                    ));
                }
                (None, _) => {
                    problems.insert(format!("{}: module `{a}` has no layer in tests/architecture.rs", import.at));
                }
                (_, None) if !b.chars().next().is_some_and(char::is_uppercase) && b.chars().all(|c| c.is_lowercase() || c == '_') => {
                    problems.insert(format!("{}: `{}` names `{b}`, which has no layer in tests/architecture.rs", import.at, import.to.join("::")));
                }
                _ => {}
            }
        }
        edges.entry((import.from[..common].to_vec(), a.clone(), b.clone())).or_insert_with(|| import.at.clone());
    }
    // Two siblings that import each other, directly or through others.
    let mut parents: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, a, b) in edges.keys() {
        parents.entry(parent.clone()).or_default().entry(a.clone()).or_default().insert(b.clone());
    }
    for (parent, graph) in &parents {
        for start in graph.keys() {
            if let Some(cycle) = cycle_from(graph, start).filter(|c| c.iter().min().is_some_and(|m| m == start)) {
                let mut steps = Vec::new();
                for pair in cycle.windows(2) {
                    let at = &edges[&(parent.clone(), pair[0].clone(), pair[1].clone())];
                    steps.push(format!("{} → {} ({at})", pair[0], pair[1]));
                }
                let scope = if parent.is_empty() { "crate".to_string() } else { parent.join("::") };
                problems.insert(format!("a cycle in {scope} through {start}: {}", steps.join(", ")));
            }
        }
    }
    for (module, krate, at) in crates {
        let allowed = CRATES.iter().find(|(k, _)| *k == krate).map_or(&[][..], |(_, m)| *m);
        if !allowed.contains(&module.as_str()) {
            problems.insert(format!("{at}: `{module}` names the `{krate}` crate, which belongs to {allowed:?}"));
        }
    }
    problems.into_iter().collect()
}

/// A path `start → … → start` through `graph`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_flow_down_the_layers_without_cycles() {
    let problems = violations(&src());
    assert!(problems.is_empty(), "{} layering problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(src()).expect("src/").flatten() {
        let name = entry.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if !["lib", "main"].contains(&name.as_str()) && tier(&name).is_none() {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}

/// Writes a small crate into a temporary directory and returns what the checker says of it.
fn check_planted(files: &[(&str, &str)]) -> Vec<String> {
    // Its own directory: tests run side by side, and two may plant as many files.
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("src");
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("temp dir");
        std::fs::write(path, text).expect("temp file");
    }
    violations(&root)
}

#[test]
fn a_planted_cycle_and_a_climbing_import_fail() {
    // eval ↔ infer would climb, and ops' children import each other.
    let problems = check_planted(&[
        ("lib.rs", "pub mod eval; pub mod infer; pub mod ops;"),
        ("eval/mod.rs", "use crate::infer::Answerer;\n"),
        ("infer/mod.rs", "pub struct Answerer;\nfn f() { let _ = crate::eval::Summary::default(); }\n"),
        ("ops/mod.rs", "pub mod a; pub mod b;"),
        ("ops/a.rs", "use super::b::{One, Two};\n"),
        ("ops/b.rs", "// crate::eval in a comment is not an import\nuse crate::ops::a::Three;\n"),
    ]);
    assert!(problems.iter().any(|p| p.contains("infer/mod.rs:2") && p.contains("`infer` imports `eval::Summary")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.starts_with("a cycle in crate through eval")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.starts_with("a cycle in ops through a: a → b") && p.contains("ops/a.rs:1")), "{problems:#?}");
    assert!(!problems.iter().any(|p| p.contains("ops/b.rs:1")), "a comment was read as an import: {problems:#?}");
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn a_layer_naming_a_crate_it_should_not_fails() {
    let problems = check_planted(&[
        ("lib.rs", "pub mod infer; pub mod sandbox;"),
        ("infer/guide.rs", "use wasmtime::ValType;\n"),
        ("sandbox/mod.rs", "use wasmtime::Engine;\nlet s = \"burn::x\";\n"),
    ]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("infer/guide.rs:1") && problems[0].contains("`wasmtime`"), "{problems:#?}");
}

#[test]
fn imports_down_the_layers_pass() {
    let problems = check_planted(&[
        ("lib.rs", "pub mod eval; pub mod infer;"),
        ("eval/mod.rs", "use crate::{infer::{self, Answerer}, sandbox::Outcome};\nuse super::sandbox;"),
        ("infer/mod.rs", "pub mod guide;\nuse guide::Slot;"),
        ("infer/guide.rs", "use super::Answerer;\nmod tests {\n    use super::super::Answerer;\n}\n"),
        ("main.rs", "use wmx::run::Outcome; mod cli;"),
        ("cli/run.rs", "use crate::cli::Args; use wmx::eval::Summary;"),
    ]);
    assert!(problems.is_empty(), "{problems:#?}");
}
