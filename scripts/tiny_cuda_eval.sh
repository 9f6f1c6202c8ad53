set -u
xz -dc bench/out/bin/wmx.xz > /tmp/wmx && chmod +x /tmp/wmx
. bench/kernel-cache.sh
RUN=$(mktemp -d)
sed -n '/^pub const CURRICULUM/,/^"#;/p' tests/common/mod.rs | sed '1d;$d' > "$RUN/curriculum.toml"
sed -n '/let text = format!(/,/^"#$/p' tests/common/mod.rs | sed '1d;$d' | sed -e 's/^ *r#"//' -e "s|{base:?}|\"$PWD/experiments/base.toml\"|" > "$RUN/tiny.toml"
cd "$RUN"
start=$SECONDS; timeout -k 5 100 /tmp/wmx run tiny.toml --backend cuda --set model.dtype=bf16 > run.txt 2>&1; echo "exit $? after $((SECONDS-start)) s"
grep -h "done\|evaluat\|failed\|error" runs/tiny/*/log.txt | tail -8
