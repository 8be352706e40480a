//! Transport logs in Exchange's CSV formats (reference/exchange.md §6):
//! the connectivity log (outbound connections: one line per connect, send and
//! disconnect) and the protocol log (every SMTP line of connectors that ask
//! for it), each with file rollover and retention by age and directory size.
pub mod connectivity;
pub mod protocol;
mod rolling;

use std::path::PathBuf;
use std::time::Duration;

pub use connectivity::{ConnectivityLog, ConnectivitySession};
pub use protocol::{ProtocolKind, ProtocolLog, ProtocolSession};

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
