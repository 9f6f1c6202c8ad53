//! The burn backends wmx runs on: CPU always, CUDA and ROCm behind cargo features.
//! Code generic over `Backend` is run on the one an experiment names via [`dispatch`].

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;

use crate::config::Backend as BackendName;

/// The CPU backend (burn's `flex`).
pub type Cpu = burn::backend::Flex;
/// The CPU backend with gradients, for training.
pub type CpuTrain = Autodiff<Cpu>;

#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32>;
#[cfg(feature = "rocm")]
pub type Rocm = burn::backend::Rocm<f32>;

/// Seeds the random numbers a model is initialised from. They are drawn on the
/// host by burn-flex's generator whatever the backend ([`crate::model::random`]),
/// so one seed starts every backend from the same weights: CPU and GPU runs of a
/// seed then differ by rounding alone. `B`'s own generator is seeded too.
pub fn seed<B: Backend>(device: &B::Device, seed: u64) {
    B::seed(device, seed);
    Cpu::seed(&Default::default(), seed);
}

/// Whether `B` runs on the host's cores (the CPU backend, with or without
/// gradients): work split across threads runs there side by side. A GPU backend
/// has one device queue, and its memory manager is not made for several threads
/// allocating at once, so work split for it runs one part after another.
pub fn runs_on_host<B: Backend>() -> bool {
    let b = std::any::TypeId::of::<B>();
    b == std::any::TypeId::of::<Cpu>() || b == std::any::TypeId::of::<CpuTrain>()
}

/// Makes the C allocator keep memory the process frees for its next allocations.
///
/// Training on the CPU frees and allocates tensors of the same few sizes at every
/// operation. With glibc's defaults, a freed tensor of some megabytes went back to
/// the kernel (unmapped, or trimmed off the heap's top) and the next one came back
/// as fresh pages, each faulted in and zeroed: 680k page faults and a fifth of the
/// process's time in the kernel over ten text-stream steps of base.toml
/// (bench/RESULTS.md). Blocks below 32 MiB (glibc's largest mmap threshold) now
/// come from the heap, whose top is trimmed only past 1 GiB free. Memory the run
/// has used stays with the process until it ends. Elsewhere than glibc, nothing
/// changes.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Runs `f` on a rayon pool of its own, as many threads as rayon's global pool
/// (the caller waits), unless `WMX_ON_POOL=0` or the caller is already on a
/// rayon pool.
///
/// The CPU kernels and burn-flex's products share their work through rayon. Called
/// from a thread outside a rayon pool, every such operation hands its work to the
/// pool and puts the caller to sleep until it is done, then wakes it: two thread
/// wake-ups per operation, each an interrupt between cores on a virtual machine.
/// From inside the pool, the calling thread does its share and waits only for
/// the others. Only for work on the CPU backend `B`: a GPU backend's work is not
/// shared through rayon, and runs where it is called.
///
/// A pool of its own because burn's autodiff holds a graph's lock through a
/// backward pass and then takes every graph's lock to clean up: on a shared
/// pool, a thread cleaning up after one training loop could wait for a lock held
/// by another loop that waits for that very pool's threads. On this pool only
/// `f`'s own work runs.
pub fn on_pool<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("WMX_ON_POOL").map_or(true, |v| v != "0"));
    if !on || !runs_on_host::<B>() || rayon::current_thread_index().is_some() {
        return f();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("wmx-train-{i}"))
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        // No threads to be had: run where called, as with `WMX_ON_POOL=0`.
        Err(_) => f(),
    }
}

/// `f(0)`, …, `f(jobs − 1)`, their results in that order, run on
/// `min(jobs, threads)` threads side by side (`threads` being rayon's current
/// count), each thread taking the next job not yet taken, each job alone on a
/// one-thread rayon pool of its own thread: whatever the job's operations share
/// through rayon runs on that thread only. With one thread to run on, the jobs
/// run where called.
///
/// For CPU work too small to share well within each operation (a training shard
/// of a few rows, whose operations are each tens of microseconds): each job keeps
/// one core busy from its start to its end, where sharing every operation costs a
/// thread wake-up per operation and leaves the second core idle in between. A job
/// computes what it would on any pool: the CPU kernels and gemm give the same bits
/// whatever the number of threads.
///
/// Why not rayon's own pool: burn's autodiff holds a graph's lock through a
/// backward pass, then takes every graph's lock in turn to clean up. A rayon worker
/// waiting inside one job's backward pass may run another job queued on the same
/// pool, whose clean-up would then wait for the lock that same worker holds further
/// down its stack. Here no thread ever holds more than its own job.
pub fn on_threads<T: Send>(jobs: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = rayon::current_num_threads().min(jobs);
    if threads <= 1 {
        return (0..jobs).map(f).collect();
    }
    let (f, next) = (&f, &std::sync::atomic::AtomicUsize::new(0));
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    // Jobs of unequal length (shards of longer rows) keep both
                    // threads busy to the end.
                    let mine = std::iter::from_fn(|| Some(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).take_while(|&j| j < jobs);
                    match rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| format!("wmx-shard-{t}")).build() {
                        Ok(pool) => mine.map(|j| (j, pool.install(|| f(j)))).collect::<Vec<_>>(),
                        // No thread to be had for a pool: the job's operations share
                        // through the global pool instead.
                        Err(_) => mine.map(|j| (j, f(j))).collect(),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    done.sort_by_key(|(j, _)| *j);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Work generic over the backend.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Makes `dtype` the device's float type for every tensor created after this
/// (weights, activations, optimizer state). Must run before the first tensor, or
/// find the device already set to `dtype` (evaluation after training in one
/// process: burn keeps one setting per device, whatever backend type drives it).
pub fn set_float_dtype<B: Backend>(device: &B::Device, dtype: crate::config::DType) -> Result<(), String> {
    use burn::tensor::{FloatDType, IntDType};
    let float = match dtype {
        crate::config::DType::F32 => return Ok(()),
        crate::config::DType::Bf16 => FloatDType::BF16,
        crate::config::DType::F16 => FloatDType::F16,
    };
    match burn::tensor::set_default_dtypes::<B>(device, float, IntDType::I32) {
        Ok(()) => Ok(()),
        Err(_) if burn::tensor::get_device_settings::<B>(device).float_dtype == float => Ok(()),
        Err(e) => Err(format!("this backend cannot compute in {dtype:?}: {e:?}")),
    }
}

/// The named backend is not compiled into this binary.
#[derive(Debug, thiserror::Error)]
#[error(
    "backend `{name}` is not built into this wmx; rebuild with `cargo build --release --features {name}`"
)]
pub struct MissingBackend {
    pub name: &'static str,
}

/// Where compiled GPU kernels and autotune results persist between runs:
/// `$WMX_KERNEL_CACHE` when set; otherwise — unless a `cubecl.toml` (or `burn.toml`)
/// in the working directory or a parent decides for itself —
/// `$XDG_CACHE_HOME/wmx/kernels`, else `~/.cache/wmx/kernels`.
/// Without it every process compiles and tunes each kernel shape again, which
/// delays the first training step by minutes.
pub fn kernel_cache_dir() -> Option<std::path::PathBuf> {
    kernel_cache_dir_in(&std::env::current_dir().ok()?, |key| std::env::var_os(key))
}

/// [`kernel_cache_dir`] as seen from `cwd` with the environment `var`.
pub fn kernel_cache_dir_in(
    cwd: &std::path::Path,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(dir) = var("WMX_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let configured = cwd.ancestors().any(|dir| {
        ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"]
            .iter()
            .any(|f| dir.join(f).is_file())
    });
    if configured {
        return None;
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wmx").join("kernels"))
}

/// Points cubecl's compilation and autotune caches at [`kernel_cache_dir`]; must
/// run before the first GPU kernel. The rest of cubecl's configuration (its
/// `cubecl.toml`, environment overrides such as `CUBECL_AUTOTUNE_LEVEL`) still applies.
#[cfg(any(feature = "cuda", feature = "rocm"))]
fn use_kernel_cache() {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = kernel_cache_dir() else { return };
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.compilation.cache = Some(CacheConfig::File(dir.clone()));
        config.autotune.cache = CacheConfig::File(dir);
        CubeClRuntimeConfig::set(config);
    });
}

/// How cubecl manages CUDA memory (through the vendored cubecl-cuda's
/// `set_memory_configuration`; must run before the device starts):
/// `WMX_CUDA_MEMORY=exclusive` gives each buffer a page of its own from a pool of
/// its size class, `sliced` (cubecl's default) cuts buffers from shared pages.
/// The sliced pools merge every page's free neighbours on each allocation, a cost
/// cubecl's device thread pays on every step (bench/RESULTS.md).
#[cfg(feature = "cuda")]
fn cuda_memory() {
    use burn::cubecl::MemoryConfiguration;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let config = match std::env::var("WMX_CUDA_MEMORY").as_deref() {
            Ok("sliced") => MemoryConfiguration::SubSlices,
            Ok("exclusive") | Err(_) => MemoryConfiguration::ExclusivePages,
            Ok(other) => {
                log::warn!("WMX_CUDA_MEMORY={other:?} is neither `exclusive` nor `sliced`; using `exclusive`");
                MemoryConfiguration::ExclusivePages
            }
        };
        burn::cubecl::cuda::set_memory_configuration(config);
    });
}

/// Runs `task` on the named backend's default device.
pub fn dispatch<T: BackendTask>(
    backend: BackendName,
    task: T,
) -> Result<T::Output, MissingBackend> {
    match backend {
        BackendName::Cpu => Ok(task.run::<Cpu>(Default::default())),
        #[cfg(feature = "cuda")]
        BackendName::Cuda => {
            use_kernel_cache();
            cuda_memory();
            Ok(task.run::<Cuda>(Default::default()))
        }
        #[cfg(not(feature = "cuda"))]
        BackendName::Cuda => Err(MissingBackend { name: "cuda" }),
        #[cfg(feature = "rocm")]
        BackendName::Rocm => {
            use_kernel_cache();
            Ok(task.run::<Rocm>(Default::default()))
        }
        #[cfg(not(feature = "rocm"))]
        BackendName::Rocm => Err(MissingBackend { name: "rocm" }),
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_cache_dir_in;
    use std::ffi::OsString;

    #[test]
    fn the_kernel_cache_follows_the_environment_unless_cubecl_is_configured() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("a").join("b");
        std::fs::create_dir_all(&work).unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| OsString::from(v))
        };
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(kernel_cache_dir_in(&work, home).unwrap(), std::path::Path::new("/home/u/.cache/wmx/kernels"));
        let xdg = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")]);
        assert_eq!(kernel_cache_dir_in(&work, xdg).unwrap(), std::path::Path::new("/c/wmx/kernels"));
        let named = env(&[("WMX_KERNEL_CACHE", "/k"), ("XDG_CACHE_HOME", "/c")]);
        assert_eq!(kernel_cache_dir_in(&work, named).unwrap(), std::path::Path::new("/k"));
        // A cubecl.toml above the working directory decides for itself.
        std::fs::write(root.path().join("a").join("cubecl.toml"), "").unwrap();
        assert_eq!(kernel_cache_dir_in(&work, env(&[("HOME", "/home/u")])), None);
        assert_eq!(kernel_cache_dir_in(&work, named).unwrap(), std::path::Path::new("/k"));
    }

    /// Jobs come back in their order, each having run alone: on a two-thread pool,
    /// seven jobs run on at most two threads besides the caller, and what a job
    /// shares through rayon stays on its own thread.
    #[test]
    fn jobs_on_threads_run_alone_and_return_in_order() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let caller = std::thread::current().id();
        let done = pool.install(|| {
            super::on_threads(7, |j| {
                use rayon::prelude::*;
                let here = std::thread::current().id();
                let elsewhere = (0..64).into_par_iter().filter(|_| std::thread::current().id() != here).count();
                (j, rayon::current_num_threads(), elsewhere, here)
            })
        });
        assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
        assert!(done.iter().all(|d| d.1 == 1 && d.2 == 0), "{done:?}");
        let threads: std::collections::HashSet<_> = done.iter().map(|d| d.3).collect();
        assert!(threads.len() <= 2 && !threads.contains(&caller), "{done:?}");
        // One thread to run on: the jobs run where called.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| super::on_threads(3, |j| j * 2)), vec![0, 2, 4]);
    }
}
