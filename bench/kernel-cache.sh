# Sourced by bench/gpu.sh and bench/profile.sh (from the repository root): how the
# GPU scripts carry cubecl's compiled kernels and autotune results between device
# calls. wmx keeps them under $XDG_CACHE_HOME/wmx/kernels; the scripts point that
# at bench/cache, start from bench/kernels.tar.xz when one is there, and leave the
# grown cache as kernels.tar.xz beside their results for the next call to carry.
# CUBECL_AUTOTUNE_LEVEL defaults to minimal: a cold tune of every shape took most of
# a 10-minute call on an H100.
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
export XDG_CACHE_HOME=$PWD/bench/cache
KERNELS=$XDG_CACHE_HOME/wmx/kernels
mkdir -p "$KERNELS"
[ -f bench/kernels.tar.xz ] && tar -xJf bench/kernels.tar.xz -C "$KERNELS"

# Writes the kernel cache to $1/kernels.tar.xz.
save_kernel_cache() {
    tar -cf - -C "$KERNELS" . | xz -T0 -6 > "$1/kernels.tar.xz"
}
