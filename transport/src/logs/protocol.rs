//! The protocol log (`ProtocolLog/SmtpReceive/RECVyyyymmdd-n.log` and
//! `ProtocolLog/SmtpSend/SENDyyyymmdd-n.log`): fields
//! `date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context`.
use super::rolling::{push_field, LogKind};
use super::{LogEvent, LogSettings, SessionLog};
use crate::clock::SharedClock;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const FIELDS: &str =
    "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolKind {
    Receive,
    Send,
}

impl ProtocolKind {
    fn log_kind(self) -> LogKind {
        match self {
            ProtocolKind::Receive => LogKind { prefix: "RECV", log_type: "SMTP Receive Protocol Log", fields: FIELDS },
            ProtocolKind::Send => LogKind { prefix: "SEND", log_type: "SMTP Send Protocol Log", fields: FIELDS },
        }
    }

    fn subdirectory(self) -> &'static str {
        match self {
            ProtocolKind::Receive => "SmtpReceive",
            ProtocolKind::Send => "SmtpSend",
        }
    }
}

/// One direction's protocol log. Cheap to clone.
#[derive(Clone)]
pub struct ProtocolLog {
    log: Option<Arc<SessionLog>>,
}

impl ProtocolLog {
    /// Opens the log in `<directory>/ProtocolLog/SmtpReceive` or `.../SmtpSend`
    /// (created if needed) and deletes files beyond the retention limits.
    pub fn open(kind: ProtocolKind, settings: &LogSettings, clock: SharedClock) -> std::io::Result<ProtocolLog> {
        let dir = settings.directory.join("ProtocolLog").join(kind.subdirectory());
        Ok(ProtocolLog { log: Some(SessionLog::open(dir, kind.log_kind(), settings, clock)?) })
    }

    pub fn disabled() -> ProtocolLog {
        ProtocolLog { log: None }
    }

    /// A session's lines: sequence numbers start at 0.
    pub fn session(&self, connector: &str, local: SocketAddr, remote: SocketAddr) -> ProtocolSession {
        self.session_with_id("", connector, local, remote)
    }

    /// Like [`session`](Self::session) but under an id given by the caller,
    /// e.g. the outbound session's [`ConnectivitySession::id`] so both logs
    /// can be matched; an empty `id` gets a fresh one.
    ///
    /// [`ConnectivitySession::id`]: super::ConnectivitySession::id
    pub fn session_with_id(&self, id: &str, connector: &str, local: SocketAddr, remote: SocketAddr) -> ProtocolSession {
        let id = match &self.log {
            None => String::new(),
            Some(_) if !id.is_empty() => id.to_string(),
            Some(log) => log.ids.next(),
        };
        ProtocolSession {
            log: self.log.clone(),
            connector: connector.to_string(),
            id,
            local: local.to_string(),
            remote: remote.to_string(),
            sequence: AtomicU64::new(0),
        }
    }
}

/// One SMTP session in the protocol log.
pub struct ProtocolSession {
    log: Option<Arc<SessionLog>>,
    connector: String,
    id: String,
    local: String,
    remote: String,
    sequence: AtomicU64,
}

impl ProtocolSession {
    pub fn record(&self, event: LogEvent, data: &str, context: &str) {
        let Some(log) = &self.log else { return };
        log.file.write_row(|row| {
            // Taken under the log's lock: the numbers appear in the file in order.
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
            push_field(row, &self.connector);
            push_field(row, &self.id);
            push_field(row, &sequence.to_string());
            push_field(row, &self.local);
            push_field(row, &self.remote);
            push_field(row, event.symbol());
            push_field(row, data);
            push_field(row, context);
        });
    }

    /// The session id written in the `session-id` column (empty when the log
    /// is disabled).
    pub fn id(&self) -> &str {
        &self.id
    }
}
