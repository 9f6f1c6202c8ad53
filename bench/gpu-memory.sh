# Sourced by bench/gpu.sh and bench/ab.sh: the GPU memory a measured process holds.
#
# sample_memory FILE starts, in the background, a sampler of the memory that every
# process on the GPU holds (nvidia-smi, every 100 ms), which keeps the peak so far
# in FILE (MiB; the file appears once any memory is held), and sets SAMPLER to its
# pid: `kill "$SAMPLER"; wait "$SAMPLER"` when the process has ended.
sample_memory() {
    local file=$1
    (
        peak=0
        while sleep 0.1; do
            used=$(nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2>/dev/null | awk '{s += $1} END {print s + 0}')
            if [ "${used:-0}" -gt "$peak" ]; then peak=$used; echo "$peak" > "$file"; fi
        done
    ) &
    SAMPLER=$!
}
