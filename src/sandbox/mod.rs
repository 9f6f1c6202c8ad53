//! The wasmtime sandbox every candidate program runs in, under the experiment's policy.
//! Each execution gets a fresh store with fuel, a deadline and memory limits; its
//! outcome is a value — a trap, a denied import or malformed WAT never crash the caller.

pub mod args;
mod params;
pub mod policy;
pub mod value;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, ExternType, InstancePre, Linker, Module, ModuleExport, Store, StoreLimits,
    StoreLimitsBuilder, Trap, Val, ValType,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, HostWallClock, WasiCtxBuilder};

pub use args::{Arg, bind, bind_spans};
pub use policy::{Capability, GUEST_FILES_DIR, Policy, SystemPolicy};
pub use params::{NumType, number_fits};
use params::bind_params;
pub use value::{format_value, format_value_places};

/// The exported function every program provides.
pub const ENTRY: &str = "compute";
/// String arguments are laid out from offset 0 of the exported memory; programs
/// keep their own scratch data at or above this offset.
pub const ARGUMENT_AREA_BYTES: usize = 1024;
/// How often the deadline ticker advances the engine's epoch.
const TICK: Duration = Duration::from_millis(2);
/// Compiled modules kept per sandbox before the cache is cleared.
const CACHE_CAPACITY: usize = 4096;
/// Module shape bounds, checked before compiling so that compiling stays well under
/// any deadline (cranelift's time grows with functions × locals, which a small binary
/// can declare by the million). `bench/RESULTS.md` has the compile times at the bounds.
pub const MAX_FUNCTIONS: u32 = 256;
/// Locals (parameters included) of one function.
pub const MAX_FUNCTION_LOCALS: u64 = 1024;
/// Locals of all functions together.
pub const MAX_MODULE_LOCALS: u64 = 8192;
/// The largest files directory a sandbox snapshots, in bytes.
const MAX_FILES_BYTES: u64 = 256 << 20;

/// What running a program produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "lowercase")]
pub enum Outcome {
    /// `compute` returned this value.
    Value(f64),
    /// Execution stopped abnormally.
    Trap(TrapKind),
    /// The source is not a usable program: it does not parse or validate, or has
    /// no `compute` returning a number.
    Invalid(String),
    /// `compute`'s parameters cannot take the arguments bound from the question.
    Mismatch(String),
    /// The module imports something the policy does not grant (`module.name`).
    Denied(String),
}

impl Outcome {
    pub fn value(&self) -> Option<f64> {
        match self {
            Outcome::Value(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value(v) => write!(f, "value {}", format_value(*v)),
            Outcome::Trap(kind) => write!(f, "trap: {kind}"),
            Outcome::Invalid(msg) => write!(f, "invalid program: {msg}"),
            Outcome::Mismatch(msg) => write!(f, "arguments do not fit: {msg}"),
            Outcome::Denied(import) => {
                write!(f, "denied import `{import}`: the policy does not grant it")
            }
        }
    }
}

/// Why an execution stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    OutOfFuel,
    Deadline,
    /// Linear memory beyond the policy, or an out-of-bounds access.
    Memory,
    StackOverflow,
    DivisionByZero,
    IntegerOverflow,
    InvalidConversion,
    Unreachable,
    /// A table access or indirect call went wrong.
    Table,
    /// The program called WASI `proc_exit` with this code.
    Exit(i32),
    Other(String),
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::OutOfFuel => write!(f, "out of fuel"),
            TrapKind::Deadline => write!(f, "deadline exceeded"),
            TrapKind::Memory => write!(f, "memory limit or out-of-bounds access"),
            TrapKind::StackOverflow => write!(f, "stack overflow"),
            TrapKind::DivisionByZero => write!(f, "integer division by zero"),
            TrapKind::IntegerOverflow => write!(f, "integer overflow"),
            TrapKind::InvalidConversion => write!(f, "invalid conversion to integer"),
            TrapKind::Unreachable => write!(f, "unreachable executed"),
            TrapKind::Table => write!(f, "bad table access or indirect call"),
            TrapKind::Exit(code) => write!(f, "exited with code {code}"),
            TrapKind::Other(msg) => write!(f, "{msg}"),
        }
    }
}

/// Errors building a sandbox (never running a program: that yields an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox policy: `{key}` {message}")]
    Policy { key: String, message: String },
    #[error("sandbox: cannot create the wasmtime engine: {0}")]
    Engine(String),
    #[error("sandbox policy: cannot preopen files directory {path}: {message}")]
    Files { path: String, message: String },
}

/// Per-store host state.
struct Host {
    limits: StoreLimits,
    wasi: Option<WasiP1Ctx>,
}

/// A compiled, linked program ready to instantiate.
struct Prepared {
    pre: InstancePre<Host>,
    /// `compute`, resolved once so each run skips the lookup by name.
    entry: ModuleExport,
    params: Vec<ValType>,
    result: Option<ValType>,
}

type CacheEntry = Arc<Result<Prepared, Outcome>>;

/// Runs programs under one policy. Cheap to share by reference across threads.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<Host>,
    policy: Policy,
    clock: Option<Duration>,
    /// The snapshot of the policy's files directory that programs see.
    files: Option<tempfile::TempDir>,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    ticker: Ticker,
}

impl Sandbox {
    pub fn new(policy: &Policy) -> Result<Sandbox, SandboxError> {
        policy
            .check()
            .map_err(|(key, message)| SandboxError::Policy { key, message })?;
        let clock = policy
            .system
            .clock_time()
            .map_err(|message| SandboxError::Policy {
                key: "system.clock".into(),
                message,
            })?;
        let mut files = None;
        if let Some(dir) = &policy.system.files
            && policy.allows_system()
        {
            if !dir.is_dir() {
                return Err(SandboxError::Files {
                    path: dir.display().to_string(),
                    message: "not a directory".into(),
                });
            }
            let snapshot = tempfile::Builder::new()
                .prefix("wmx-files-")
                .tempdir()
                .map_err(|e| SandboxError::Files { path: dir.display().to_string(), message: format!("cannot make a snapshot: {e}") })?;
            snapshot_files(dir, snapshot.path())?;
            files = Some(snapshot);
        }
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(policy.stack_kib as usize * 1024);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        if policy.allows_system() {
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |host: &mut Host| {
                host.wasi
                    .as_mut()
                    .expect("stores of a system-policy sandbox always carry WASI")
            })
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        }
        let ticker = Ticker::start(engine.clone()).map_err(|e| {
            SandboxError::Engine(format!("cannot start the deadline ticker thread: {e}"))
        })?;
        Ok(Sandbox {
            engine,
            linker,
            policy: policy.clone(),
            clock,
            files,
            cache: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Binds the arguments of `question` and runs `wat` on them.
    pub fn run_question(&self, wat: &str, question: &str) -> Outcome {
        self.run(wat, &bind(question))
    }

    /// Compiles and links `wat` (or finds it cached) without running it.
    pub fn check(&self, wat: &str) -> Result<(), Outcome> {
        match self.prepare(wat).as_ref() {
            Ok(_) => Ok(()),
            Err(outcome) => Err(outcome.clone()),
        }
    }

    /// Runs `compute` of `wat` on `args` in a fresh store.
    pub fn run(&self, wat: &str, args: &[Arg]) -> Outcome {
        let prepared = self.prepare(wat);
        match prepared.as_ref() {
            Ok(prepared) => self
                .execute(prepared, args)
                .unwrap_or_else(|outcome| outcome),
            Err(outcome) => outcome.clone(),
        }
    }

    /// Compiles and links `wat`, or returns the cached result for the same source.
    fn prepare(&self, wat: &str) -> CacheEntry {
        let key: [u8; 32] = Sha256::digest(wat.as_bytes()).into();
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let entry = Arc::new(self.compile(wat));
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key, entry.clone());
        }
        entry
    }

    fn compile(&self, wat: &str) -> Result<Prepared, Outcome> {
        if wat.len() > self.policy.max_source_bytes {
            return Err(Outcome::Invalid(format!(
                "source is {} bytes; the policy allows {}",
                wat.len(),
                self.policy.max_source_bytes
            )));
        }
        let bytes = parse_wat(wat).map_err(Outcome::Invalid)?;
        check_shape(&bytes).map_err(Outcome::Invalid)?;
        let module =
            Module::new(&self.engine, &bytes).map_err(|e| Outcome::Invalid(format!("{e:#}")))?;
        for import in module.imports() {
            if !self.grants(import.module(), import.name()) {
                return Err(Outcome::Denied(format!(
                    "{}.{}",
                    import.module(),
                    import.name()
                )));
            }
        }
        let memory_limit = u64::from(self.policy.memory_pages) * 65_536;
        let required = module.resources_required();
        if required
            .max_initial_memory_size
            .is_some_and(|pages| pages * 65_536 > memory_limit)
        {
            return Err(Outcome::Trap(TrapKind::Memory));
        }
        let (func, entry) = match (module.get_export(ENTRY), module.get_export_index(ENTRY)) {
            (Some(ExternType::Func(func)), Some(entry)) => (func, entry),
            _ => {
                return Err(Outcome::Invalid(format!(
                    "the module exports no function `{ENTRY}`"
                )));
            }
        };
        let params: Vec<ValType> = func.params().collect();
        let results: Vec<ValType> = func.results().collect();
        if results.len() > 1 {
            return Err(Outcome::Invalid(format!(
                "`{ENTRY}` returns {} values; it must return one",
                results.len()
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Outcome::Denied(format!("{e:#}")))?;
        Ok(Prepared {
            pre,
            entry,
            params,
            result: results.into_iter().next(),
        })
    }

    fn grants(&self, module: &str, name: &str) -> bool {
        // Blocking or networking calls would escape the deadline or the policy.
        let refused = name.starts_with("sock_")
            || matches!(name, "poll_oneoff" | "proc_raise" | "sched_yield");
        self.policy.allows_system() && module == "wasi_snapshot_preview1" && !refused
    }

    fn execute(&self, prepared: &Prepared, args: &[Arg]) -> Result<Outcome, Outcome> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.policy.memory_pages as usize * 65_536)
            .memories(1)
            .tables(4)
            .table_elements(10_000)
            .instances(1)
            .build();
        let wasi = if self.policy.allows_system() {
            Some(self.wasi_context()?)
        } else {
            None
        };
        let mut store = Store::new(&self.engine, Host { limits, wasi });
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(self.policy.fuel)
            .map_err(|e| Outcome::Trap(TrapKind::Other(format!("{e:#}"))))?;
        store.set_epoch_deadline(self.ticker.ticks(self.policy.deadline()));

        let instance = prepared.pre.instantiate(&mut store).map_err(classify)?;
        let params = bind_params(&prepared.params, args, &mut store, &instance)?;
        let func = instance
            .get_module_export(&mut store, &prepared.entry)
            .and_then(wasmtime::Extern::into_func)
            .ok_or_else(|| Outcome::Invalid(format!("the module exports no function `{ENTRY}`")))?;
        let mut result = [Val::I32(0)];
        let results = if prepared.result.is_some() {
            &mut result[..]
        } else {
            &mut result[..0]
        };
        func.call(&mut store, &params, results).map_err(classify)?;
        match results.first() {
            Some(Val::F64(bits)) => Ok(Outcome::Value(f64::from_bits(*bits))),
            Some(Val::F32(bits)) => Ok(Outcome::Value(f64::from(f32::from_bits(*bits)))),
            Some(Val::I32(v)) => Ok(Outcome::Value(f64::from(*v))),
            Some(Val::I64(v)) => Ok(Outcome::Value(*v as f64)),
            Some(other) => Err(Outcome::Invalid(format!(
                "`{ENTRY}` returns a {:?}, not a number",
                other.ty(&store)
            ))),
            None => Err(Outcome::Invalid(format!(
                "`{ENTRY}` returns nothing; it must return a number"
            ))),
        }
    }

    fn wasi_context(&self) -> Result<WasiP1Ctx, Outcome> {
        let mut builder = WasiCtxBuilder::new();
        builder.allow_blocking_current_thread(true);
        for (key, value) in &self.policy.system.env {
            builder.env(key, value);
        }
        if let Some(at) = self.clock {
            builder.wall_clock(FixedClock(at));
        }
        if let Some(dir) = &self.files {
            let dir = dir.path();
            builder
                .preopened_dir(dir, GUEST_FILES_DIR, FsPerms::ReadOnly)
                .map_err(|e| {
                    Outcome::Trap(TrapKind::Other(format!(
                        "cannot preopen {}: {e:#}",
                        dir.display()
                    )))
                })?;
        }
        Ok(builder.build_p1())
    }
}

/// Classifies a wasmtime error raised while instantiating or calling.
fn classify(err: wasmtime::Error) -> Outcome {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        let kind = match trap {
            Trap::OutOfFuel => TrapKind::OutOfFuel,
            Trap::Interrupt => TrapKind::Deadline,
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::MemoryOutOfBounds | Trap::HeapMisaligned | Trap::AllocationTooLarge => {
                TrapKind::Memory
            }
            Trap::IntegerDivisionByZero => TrapKind::DivisionByZero,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::BadConversionToInteger => TrapKind::InvalidConversion,
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::TableOutOfBounds | Trap::IndirectCallToNull | Trap::BadSignature => {
                TrapKind::Table
            }
            other => TrapKind::Other(other.to_string()),
        };
        return Outcome::Trap(kind);
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Outcome::Trap(TrapKind::Exit(exit.0));
    }
    let message = format!("{err:#}");
    if message.contains("memory") && (message.contains("limit") || message.contains("exceed")) {
        return Outcome::Trap(TrapKind::Memory);
    }
    Outcome::Trap(TrapKind::Other(message))
}

/// Checks a module's functions and locals against [`MAX_FUNCTIONS`],
/// [`MAX_FUNCTION_LOCALS`] and [`MAX_MODULE_LOCALS`] without compiling it.
pub fn check_shape(bytes: &[u8]) -> Result<(), String> {
    use wasmparser::{Parser, Payload};
    let mut functions = 0u32;
    let mut total = 0u64;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("{e}"))? {
            Payload::CodeSectionStart { count, .. } if count > MAX_FUNCTIONS => {
                return Err(format!("the module defines {count} functions; the sandbox compiles at most {MAX_FUNCTIONS}"));
            }
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                let mut locals = 0u64;
                for entry in body.get_locals_reader().map_err(|e| format!("{e}"))? {
                    locals += u64::from(entry.map_err(|e| format!("{e}"))?.0);
                    if locals > MAX_FUNCTION_LOCALS {
                        return Err(format!("function {} declares more than {MAX_FUNCTION_LOCALS} locals", functions - 1));
                    }
                }
                total += locals;
                if total > MAX_MODULE_LOCALS {
                    return Err(format!("the module's functions declare more than {MAX_MODULE_LOCALS} locals together"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Copies the regular files under `dir` into `into`, refusing anything else (FIFOs,
/// devices, sockets, links that lead outside `dir`): a program reads a snapshot that
/// no read can block on and nothing can change under it.
fn snapshot_files(dir: &Path, into: &Path) -> Result<(), SandboxError> {
    let fail = |path: &Path, message: String| SandboxError::Files { path: path.display().to_string(), message };
    let root = dir.canonicalize().map_err(|e| fail(dir, e.to_string()))?;
    let mut budget = MAX_FILES_BYTES;
    let mut stack = vec![(root.clone(), into.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        std::fs::create_dir_all(&to).map_err(|e| fail(&to, e.to_string()))?;
        let entries = std::fs::read_dir(&from).map_err(|e| fail(&from, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail(&from, e.to_string()))?;
            let path = entry.path();
            let real = path.canonicalize().map_err(|e| fail(&path, e.to_string()))?;
            if !real.starts_with(&root) {
                return Err(fail(&path, format!("leads outside the files directory (to {})", real.display())));
            }
            let meta = std::fs::metadata(&real).map_err(|e| fail(&path, e.to_string()))?;
            let target = to.join(entry.file_name());
            if meta.is_dir() {
                stack.push((real, target));
            } else if meta.is_file() {
                budget = budget.checked_sub(meta.len()).ok_or_else(|| {
                    fail(dir, format!("holds more than {} MiB; the sandbox snapshots at most that", MAX_FILES_BYTES >> 20))
                })?;
                std::fs::copy(&real, &target).map_err(|e| fail(&path, e.to_string()))?;
            } else {
                return Err(fail(
                    &path,
                    "is not a regular file (a FIFO, socket or device): the files directory may hold only files and directories".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Parses WAT to wasm bytes; errors read `line L, column C: message`.
pub fn parse_wat(wat: &str) -> Result<Vec<u8>, String> {
    wat::parse_str(wat).map_err(|e| {
        // wat renders `message\n --> <anon>:L:C\n  | source...`; keep message and position.
        let rendered = e.to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or("malformed WAT")
            .trim()
            .to_string();
        let position = rendered
            .lines()
            .find_map(|line| line.trim().strip_prefix("--> "))
            .and_then(|loc| {
                let mut parts = loc.rsplitn(3, ':');
                let col = parts.next()?.parse::<usize>().ok()?;
                let line = parts.next()?.parse::<usize>().ok()?;
                Some((line, col))
            });
        match position {
            Some((line, col)) => format!("line {line}, column {col}: {message}"),
            None => message,
        }
    })
}

/// A wall clock stopped at one instant, for reproducible `system` programs.
struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// Advances the engine epoch every [`TICK`] so deadlines interrupt running code.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wmx-sandbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }

    /// Epoch ticks covering `deadline` (at least one).
    fn ticks(&self, deadline: Duration) -> u64 {
        (deadline.as_micros() / TICK.as_micros()).max(1) as u64 + 1
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
