//! The connectivity log (`Connectivity/CONNECTLOGyyyymmdd-n.log`): fields
//! `date-time,session,source,destination,direction,description`.
use super::LogSettings;
use crate::clock::SharedClock;

/// The server's connectivity log. Cheap to clone; disabled logs write nothing.
#[derive(Clone)]
pub struct ConnectivityLog {
    _private: (),
}

impl ConnectivityLog {
    pub fn open(_settings: &LogSettings, _clock: SharedClock) -> std::io::Result<ConnectivityLog> {
        todo!("logs helper")
    }

    pub fn disabled() -> ConnectivityLog {
        todo!("logs helper")
    }

    /// A new outbound session (a fresh session id) from `source` (`SMTP`) to
    /// `destination` (the queue's next hop).
    pub fn session(&self, _source: &str, _destination: &str) -> ConnectivitySession {
        todo!("logs helper")
    }
}

/// One outbound session's lines.
pub struct ConnectivitySession {
    _private: (),
}

impl ConnectivitySession {
    /// `+`: e.g. the queue and its length when the session starts.
    pub fn connect(&self, _description: &str) {
        todo!("logs helper")
    }
    /// `>`: DNS results, "Established connection to 1.2.3.4", ...
    pub fn send(&self, _description: &str) {
        todo!("logs helper")
    }
    /// `-`: "Messages: N Bytes: M (Retry : reason)" when it failed.
    pub fn disconnect(&self, _description: &str) {
        todo!("logs helper")
    }
}
