//! The `[sandbox]` policy of an experiment or curriculum: how much a program may
//! compute, how long it may run, and which host capabilities it may import.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits and capabilities for every program execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Fuel per execution; one unit is roughly one wasm instruction.
    pub fuel: u64,
    /// Largest linear memory a module may have, in 64 KiB wasm pages.
    pub memory_pages: u32,
    /// Wall-clock deadline per execution, in milliseconds (epoch interruption).
    pub deadline_ms: u64,
    /// Wasm call-stack limit, in KiB.
    pub stack_kib: u32,
    /// Largest accepted WAT source, in bytes; longer sources are rejected before compiling.
    pub max_source_bytes: usize,
    /// Host capabilities: none (pure computation) or `"system"`.
    pub capabilities: Vec<Capability>,
    /// What the `system` capability exposes.
    pub system: SystemPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fuel: 20_000_000,
            memory_pages: 16,
            deadline_ms: 250,
            stack_kib: 256,
            max_source_bytes: 64 * 1024,
            capabilities: Vec::new(),
            system: SystemPolicy::default(),
        }
    }
}

impl Policy {
    /// The same limits with the `system` capability granted.
    pub fn with_system(mut self) -> Policy {
        if !self.allows_system() {
            self.capabilities.push(Capability::System);
        }
        self
    }

    pub fn allows_system(&self) -> bool {
        self.capabilities.contains(&Capability::System)
    }

    /// Checks the ranges serde cannot express; returns `(key, message)` on the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, msg: &str| Err((key.to_string(), msg.to_string()));
        if self.fuel == 0 {
            return fail("fuel", "must be positive");
        }
        if self.memory_pages == 0 || self.memory_pages > 65_536 {
            return fail("memory_pages", "must be between 1 and 65536 (4 GiB)");
        }
        if self.deadline_ms == 0 || self.deadline_ms > 600_000 {
            return fail("deadline_ms", "must be between 1 and 600000 (10 minutes)");
        }
        if self.stack_kib < 16 || self.stack_kib > MAX_STACK_KIB {
            return fail(
                "stack_kib",
                "must be between 16 and 1024: a program's stack lives on the host thread's, and wasmtime allows no more than its 2 MiB async stack",
            );
        }
        if self.max_source_bytes < 64 {
            return fail("max_source_bytes", "must be at least 64");
        }
        if let Err(msg) = self.system.clock_time() {
            return fail("system.clock", &msg);
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// The largest wasm stack, in KiB: programs run on the calling thread's stack (2 MiB
/// for threads Rust starts) and wasmtime refuses more than its async stack (2 MiB).
pub const MAX_STACK_KIB: u32 = 1024;

/// A host capability a policy may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// WASI preview 1: read-only declared files, a clock, declared environment.
    System,
}

/// The view of the host that the `system` capability gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemPolicy {
    /// Host directory preopened read-only as the guest's `/data` (file descriptor 3).
    pub files: Option<PathBuf>,
    /// `"real"` for the host clock, or a fixed UTC time such as `"2026-06-15T12:00:00Z"`.
    pub clock: String,
    /// Environment variables the program can read.
    pub env: BTreeMap<String, String>,
}

impl Default for SystemPolicy {
    fn default() -> Self {
        SystemPolicy {
            files: None,
            clock: "real".into(),
            env: BTreeMap::new(),
        }
    }
}

/// The guest path the declared files directory is preopened at.
pub const GUEST_FILES_DIR: &str = "/data";

impl SystemPolicy {
    /// `None` for the real clock, else the fixed time since the Unix epoch.
    pub fn clock_time(&self) -> Result<Option<Duration>, String> {
        if self.clock == "real" {
            return Ok(None);
        }
        parse_utc(&self.clock).map(Some).ok_or_else(|| {
            format!(
                "`{}` is neither \"real\" nor a UTC time like \"2026-06-15T12:00:00Z\"",
                self.clock
            )
        })
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (UTC) into the time since the Unix epoch.
pub fn parse_utc(text: &str) -> Option<Duration> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::from(num(0..4)?), month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let [h, m, s] = [num(11..13)?, num(14..16)?, num(17..19)?].map(|n| u8::try_from(n).unwrap_or(u8::MAX));
    let at = date.with_time(time::Time::from_hms(h, m, s).ok()?).assume_utc();
    u64::try_from(at.unix_timestamp()).ok().map(Duration::from_secs)
}

/// A time since the Unix epoch as a UTC date and time (the latest one time
/// represents, for times past year 9999).
fn utc(secs: u64) -> time::OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// The calendar year of a time since the Unix epoch.
pub fn year_of(since_epoch: Duration) -> i64 {
    i64::from(utc(since_epoch.as_secs()).year())
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(secs: u64) -> String {
    let t = utc(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_and_give_their_year() {
        let t = parse_utc("2026-06-15T12:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_781_524_800);
        assert_eq!(year_of(t), 2026);
        assert_eq!(year_of(parse_utc("2000-02-29T00:00:00Z").unwrap()), 2000);
        assert_eq!(year_of(parse_utc("1999-12-31T23:59:59Z").unwrap()), 1999);
        assert!(parse_utc("2026-02-30T00:00:00Z").is_none());
        assert!(parse_utc("2026-06-15 12:00:00").is_none());
        for text in [
            "2026-06-15T12:00:00Z",
            "2000-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
        ] {
            assert_eq!(format_utc(parse_utc(text).unwrap().as_secs()), text);
        }
    }

    #[test]
    fn default_policy_passes_its_own_checks() {
        assert_eq!(Policy::default().check(), Ok(()));
        let bad = Policy {
            memory_pages: 0,
            ..Policy::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "memory_pages");
    }
}
