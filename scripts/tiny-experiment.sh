# Sourced by the GPU scripts: `tiny_experiment DIR` writes the tiny experiment of
# tests/common/mod.rs into DIR (curriculum.toml and tiny.toml, extending this
# checkout's experiments/base.toml). Run from the repository root.
tiny_experiment() {
    sed -n '/^pub const CURRICULUM/,/^"#;/p' tests/common/mod.rs | sed '1d;$d' > "$1/curriculum.toml"
    sed -n '/let text = format!(/,/^"#$/p' tests/common/mod.rs | sed '1d;$d' \
        | sed -e 's/^ *r#"//' -e "s|{base:?}|\"$PWD/experiments/base.toml\"|" > "$1/tiny.toml"
}
