//! The connectivity log (`Connectivity/CONNECTLOGyyyymmdd-n.log`): fields
//! `date-time,session,source,destination,direction,description`.
use super::rolling::{push_field, LogKind};
use super::{LogEvent, LogSettings, SessionLog};
use crate::clock::SharedClock;
use std::sync::Arc;

const KIND: LogKind = LogKind {
    prefix: "CONNECTLOG",
    log_type: "Transport Connectivity Log",
    fields: "date-time,session,source,destination,direction,description",
};

/// The server's connectivity log. Cheap to clone; disabled logs write nothing.
#[derive(Clone)]
pub struct ConnectivityLog {
    log: Option<Arc<SessionLog>>,
}

impl ConnectivityLog {
    /// Opens the log in `<directory>/Connectivity` (created if needed) and
    /// deletes files beyond the retention limits.
    pub fn open(settings: &LogSettings, clock: SharedClock) -> std::io::Result<ConnectivityLog> {
        let log = SessionLog::open(settings.directory.join("Connectivity"), KIND, settings, clock)?;
        Ok(ConnectivityLog { log: Some(log) })
    }

    pub fn disabled() -> ConnectivityLog {
        ConnectivityLog { log: None }
    }

    /// A new outbound session (a fresh session id) from `source` (`SMTP`) to
    /// `destination` (the queue's next hop).
    pub fn session(&self, source: &str, destination: &str) -> ConnectivitySession {
        let id = self.log.as_ref().map(|i| i.ids.next()).unwrap_or_default();
        ConnectivitySession {
            log: self.log.clone(),
            id,
            source: source.to_string(),
            destination: destination.to_string(),
        }
    }
}

/// One outbound session's lines.
pub struct ConnectivitySession {
    log: Option<Arc<SessionLog>>,
    id: String,
    source: String,
    destination: String,
}

impl ConnectivitySession {
    /// `+`: e.g. the queue and its length when the session starts.
    pub fn connect(&self, description: &str) {
        self.line(LogEvent::Connect, description)
    }
    /// `>`: DNS results, "Established connection to 1.2.3.4", ...
    pub fn send(&self, description: &str) {
        self.line(LogEvent::Sent, description)
    }
    /// `-`: "Messages: N Bytes: M (Retry : reason)" when it failed.
    pub fn disconnect(&self, description: &str) {
        self.line(LogEvent::Disconnect, description)
    }

    /// The session id written in the `session` column (empty when the log is
    /// disabled).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn line(&self, event: LogEvent, description: &str) {
        let Some(log) = &self.log else { return };
        log.file.write_row(|row| {
            push_field(row, &self.id);
            push_field(row, &self.source);
            push_field(row, &self.destination);
            push_field(row, event.symbol());
            push_field(row, description);
        });
    }
}
