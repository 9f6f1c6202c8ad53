# Sourced by the GPU scripts (from the repository root): a Qwen3-0.6B directory
# without weights — Qwen3-0.6B's config.json (bench/qwen3-0.6b/) and the real Qwen3
# tokenizer (tests/fixtures/qwen3/tokenizer/) — for `model.init = "random"` at the
# 0.6B shape, since no model hub is reachable here. Sets QWEN3_DIR.
QWEN3_DIR=$(mktemp -d)/qwen3-0.6b
mkdir -p "$QWEN3_DIR"
cp bench/qwen3-0.6b/config.json "$QWEN3_DIR/"
cp tests/fixtures/qwen3/tokenizer/tokenizer.json "$QWEN3_DIR/"
export QWEN3_DIR

# Prints a copy of $QWEN3_DIR with $1 text layers (for measurements by depth).
qwen3_dir_layers() {
    local dir="$QWEN3_DIR-$1-layers"
    mkdir -p "$dir"
    cp "$QWEN3_DIR/tokenizer.json" "$dir/"
    sed "s/\"num_hidden_layers\": [0-9]*/\"num_hidden_layers\": $1/" "$QWEN3_DIR/config.json" > "$dir/config.json"
    echo "$dir"
}
