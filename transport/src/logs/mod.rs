//! Transport logs in Exchange's CSV formats (docs/design.md §6): the connectivity
//! log (outbound connections: one line per connect, send and disconnect), the
//! protocol log (every SMTP line of connectors that ask for it) and the message
//! tracking log (every event of every message, searchable), each with file rollover
//! and retention by age and directory size.
pub mod connectivity;
pub mod protocol;
mod rolling;
pub mod tracking;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use connectivity::{ConnectivityLog, ConnectivitySession};
pub use protocol::{ProtocolKind, ProtocolLog, ProtocolSession};
pub use tracking::{TrackingLog, TrackingSettings, TrackingSource};

/// Direction of a log line: `+` connect, `-` disconnect, `>` sent, `<` received, `*` information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEvent {
    Connect,
    Disconnect,
    Sent,
    Received,
    Info,
}

impl LogEvent {
    pub fn symbol(self) -> &'static str {
        match self {
            LogEvent::Connect => "+",
            LogEvent::Disconnect => "-",
            LogEvent::Sent => ">",
            LogEvent::Received => "<",
            LogEvent::Info => "*",
        }
    }
}

/// Where and how long logs are kept (resolved from `logging` and `logDirectory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The log root; each log writes to its own subdirectory.
    pub directory: PathBuf,
    /// Zero: never delete by age.
    pub max_age: Duration,
    pub max_directory_size: u64,
    pub max_file_size: u64,
}

/// A log whose rows belong to sessions (connectivity, protocol): its rolling file and the
/// session ids it hands out.
pub(crate) struct SessionLog {
    pub(crate) file: rolling::RollingLog,
    pub(crate) ids: SessionIds,
}

impl SessionLog {
    /// Opens the log in `dir` (created if needed), its session ids starting from now.
    pub(crate) fn open(
        dir: PathBuf,
        kind: rolling::LogKind,
        settings: &LogSettings,
        clock: crate::clock::SharedClock,
    ) -> std::io::Result<std::sync::Arc<SessionLog>> {
        let ids = SessionIds::new(clock.now());
        let file = rolling::RollingLog::open(dir, kind, settings, clock)?;
        Ok(std::sync::Arc::new(SessionLog { file, ids }))
    }
}

/// Session ids as Exchange writes them: 16 upper-case hex digits, the start
/// time of the log in .NET ticks (100 ns since 0001-01-01) plus a counter,
/// so ids are unique within a run and increase across restarts.
pub(crate) struct SessionIds {
    base: u64,
    next: AtomicU64,
}

/// .NET ticks at the Unix epoch.
const TICKS_AT_UNIX_EPOCH: u64 = 621_355_968_000_000_000;

impl SessionIds {
    pub(crate) fn new(start: SystemTime) -> Self {
        let since_epoch = start.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let ticks = (since_epoch.as_nanos() / 100) as u64;
        SessionIds { base: TICKS_AT_UNIX_EPOCH.wrapping_add(ticks), next: AtomicU64::new(0) }
    }

    pub(crate) fn next(&self) -> String {
        format!("{:016X}", self.base.wrapping_add(self.next.fetch_add(1, Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests;
