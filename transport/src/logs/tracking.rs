//! The message tracking log (`MessageTracking/MSGTRKyyyymmdd-n.log`,
//! docs/design.md §6): one record per event of a message's life, in Exchange's field
//! names, written and retained like the other transport logs, searched with
//! Get-MessageTrackingLog's filters ([`TrackingLog::search`]).
//!
//! A record is one row written with one `write` on a file opened for appending; a new
//! file is started after every restart. So a crash can at worst leave the last row of
//! a file without its line end, and the search skips exactly such a row: no torn
//! record is ever answered.
use super::rolling::{date_key, format_date_time, push_field, split_row, LogKind, RollingLog};
use super::LogSettings;
use crate::api::{ResultSize, TrackingEvent, TrackingQuery, TrackingRecord, DEFAULT_RESULT_SIZE};
use crate::clock::{parse_rfc3339, SharedClock};
use crate::envelope::{Address, Envelope};
use std::borrow::Cow;
use std::io::{self, BufRead};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;

/// Exchange's fields, in Exchange's order (the subset this server writes): the
/// `#Fields:` line. [`col`] numbers them (a test keeps the two in step).
const FIELDS: &str = "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,\
connector-id,source,event-id,internal-message-id,message-id,recipient-address,recipient-status,total-bytes,\
recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info";

/// How many fields a row has.
const FIELD_COUNT: usize = 21;

/// Column numbers of [`FIELDS`].
mod col {
    pub const DATE_TIME: usize = 0;
    pub const CLIENT_IP: usize = 1;
    pub const CLIENT_HOSTNAME: usize = 2;
    pub const SERVER_IP: usize = 3;
    pub const SERVER_HOSTNAME: usize = 4;
    pub const SOURCE_CONTEXT: usize = 5;
    pub const CONNECTOR_ID: usize = 6;
    pub const SOURCE: usize = 7;
    pub const EVENT_ID: usize = 8;
    pub const INTERNAL_MESSAGE_ID: usize = 9;
    pub const MESSAGE_ID: usize = 10;
    pub const RECIPIENT_ADDRESS: usize = 11;
    pub const RECIPIENT_STATUS: usize = 12;
    pub const TOTAL_BYTES: usize = 13;
    pub const RECIPIENT_COUNT: usize = 14;
    pub const RELATED_RECIPIENT_ADDRESS: usize = 15;
    pub const REFERENCE: usize = 16;
    pub const MESSAGE_SUBJECT: usize = 17;
    pub const SENDER_ADDRESS: usize = 18;
    pub const RETURN_PATH: usize = 19;
    pub const MESSAGE_INFO: usize = 20;
}

/// Separates the recipients of one record (and their statuses), as Exchange does.
const LIST_SEPARATOR: char = ';';

/// The component that logged an event (the `source` field, Exchange's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingSource {
    /// Receive and send sessions.
    Smtp,
    /// An administrator's action, or the replay directory.
    Admin,
    /// Reports this server generated.
    Dsn,
    /// The queue's own decisions (expiry, poison, Retry-Queue -Resubmit).
    Queue,
    /// The categorizer (no route, a redirect).
    Routing,
    /// Shadow redundancy.
    Redundancy,
    /// A resubmit request served from the Safety Net.
    SafetyNet,
}

impl TrackingSource {
    fn as_str(self) -> &'static str {
        match self {
            TrackingSource::Smtp => "SMTP",
            TrackingSource::Admin => "ADMIN",
            TrackingSource::Dsn => "DSN",
            TrackingSource::Queue => "QUEUE",
            TrackingSource::Routing => "ROUTING",
            TrackingSource::Redundancy => "REDUNDANCY",
            TrackingSource::SafetyNet => "SAFETYNET",
        }
    }
}

struct TrackingFile {
    file: RollingLog,
    subjects: bool,
}

/// The server's message tracking log. Cheap to clone; a disabled log writes nothing and
/// finds nothing.
#[derive(Clone)]
pub struct TrackingLog {
    inner: Option<Arc<TrackingFile>>,
}

/// Where and how long the tracking log is kept, and whether it names subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingSettings {
    pub retention: LogSettings,
    pub subjects: bool,
}

impl TrackingLog {
    /// Opens the log in `<directory>/MessageTracking` (created if needed) and deletes
    /// files beyond the retention limits.
    pub fn open(settings: &TrackingSettings, clock: SharedClock) -> io::Result<TrackingLog> {
        let kind = LogKind { prefix: "MSGTRK", log_type: "Message Tracking Log", fields: FIELDS };
        let dir = settings.retention.directory.join("MessageTracking");
        let file = RollingLog::open(dir, kind, &settings.retention, clock)?;
        Ok(TrackingLog { inner: Some(Arc::new(TrackingFile { file, subjects: settings.subjects })) })
    }

    pub fn disabled() -> TrackingLog {
        TrackingLog { inner: None }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A record of `event` about `envelope`, to fill in and [`Record::write`].
    pub fn record<'a>(&'a self, event: TrackingEvent, source: TrackingSource, envelope: &'a Envelope) -> Record<'a> {
        Record { envelope: Some(envelope), ..self.record_id(event, source, envelope.id.0) }
    }

    /// A record about message `id` of this server whose envelope is not at hand (a
    /// discarded shadow copy): addresses, size and Message-ID stay empty.
    pub fn record_id(&self, event: TrackingEvent, source: TrackingSource, id: u64) -> Record<'_> {
        Record {
            log: self.inner.as_deref(),
            event,
            source,
            id,
            envelope: None,
            recipients: Vec::new(),
            client_ip: None,
            client_hostname: "",
            server_ip: None,
            server_hostname: "",
            source_context: "",
            connector: "",
            related_recipient: "",
            reference: "",
            message_info: "",
        }
    }

    /// The records that match `query`, oldest first, at most its result size. Reads
    /// the files (skipping the days outside `start`..`end`); run it off the runtime.
    pub fn search(&self, query: &TrackingQuery) -> Result<Vec<TrackingRecord>, SearchError> {
        let filter = Filter::new(query)?;
        let Some(inner) = &self.inner else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        let files = inner.file.files().map_err(SearchError::Read)?;
        for (path, day) in files {
            if filter.first_day.is_some_and(|d| day < d) || filter.last_day.is_some_and(|d| day > d) {
                continue;
            }
            if filter.search_file(&path, &mut found)? {
                break;
            }
        }
        Ok(found)
    }
}

/// Why a search could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A filter that does not parse: the query names it.
    #[error("{field}: {reason}")]
    Query { field: &'static str, reason: String },
    #[error("cannot read the message tracking log: {0}")]
    Read(#[source] io::Error),
}

/// One record being filled in; nothing is written until [`Record::write`].
#[must_use = "a record is written only by write()"]
pub struct Record<'a> {
    log: Option<&'a TrackingFile>,
    event: TrackingEvent,
    source: TrackingSource,
    id: u64,
    envelope: Option<&'a Envelope>,
    /// (address, status); the status may be empty.
    recipients: Vec<(&'a str, Cow<'a, str>)>,
    client_ip: Option<IpAddr>,
    client_hostname: &'a str,
    server_ip: Option<IpAddr>,
    server_hostname: &'a str,
    source_context: &'a str,
    connector: &'a str,
    related_recipient: &'a str,
    reference: &'a str,
    message_info: &'a str,
}

impl<'a> Record<'a> {
    /// Every recipient of the envelope, without a status (RECEIVE, DSN, ...).
    pub fn all_recipients(mut self) -> Self {
        if let (Some(_), Some(env)) = (self.log, self.envelope) {
            self.recipients = env.recipients.iter().map(|r| (r.address.as_str(), Cow::Borrowed(""))).collect();
        }
        self
    }

    /// The envelope's recipients at `indexes`, each with its status.
    pub fn recipients(mut self, items: impl IntoIterator<Item = (usize, Cow<'a, str>)>) -> Self {
        if let (Some(_), Some(env)) = (self.log, self.envelope) {
            self.recipients = items
                .into_iter()
                .filter_map(|(i, status)| env.recipients.get(i).map(|r| (r.address.as_str(), status)))
                .collect();
        }
        self
    }

    /// The message's number on this server, when it is not the envelope's (a shadow
    /// copy is numbered by the server that holds it).
    pub fn id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    pub fn client(mut self, ip: Option<IpAddr>, hostname: &'a str) -> Self {
        self.client_ip = ip;
        self.client_hostname = hostname;
        self
    }

    pub fn server(mut self, ip: Option<IpAddr>, hostname: &'a str) -> Self {
        self.server_ip = ip;
        self.server_hostname = hostname;
        self
    }

    pub fn connector(mut self, name: &'a str) -> Self {
        self.connector = name;
        self
    }

    pub fn source_context(mut self, context: &'a str) -> Self {
        self.source_context = context;
        self
    }

    pub fn related_recipient(mut self, address: &'a str) -> Self {
        self.related_recipient = address;
        self
    }

    /// The Message-ID of the message this one is about (a DSN's original).
    pub fn reference(mut self, message_id: &'a str) -> Self {
        self.reference = message_id;
        self
    }

    pub fn message_info(mut self, info: &'a str) -> Self {
        self.message_info = info;
        self
    }

    pub fn write(self) {
        let Some(log) = self.log else { return };
        let env = self.envelope;
        let sender = env.and_then(|e| e.mail_from.as_ref()).map_or("", Address::as_str);
        let subject = env.and_then(|e| e.subject.as_deref()).filter(|_| log.subjects).unwrap_or("");
        let message_id = env.and_then(|e| e.internet_message_id.as_deref()).unwrap_or("");
        let size = env.map(|e| e.size.to_string()).unwrap_or_default();
        let separator = LIST_SEPARATOR.to_string();
        let addresses = self.recipients.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(&separator);
        // A status never holds the separator, so the two lists stay in step.
        let statuses = if self.recipients.iter().all(|(_, s)| s.is_empty()) {
            String::new()
        } else {
            self.recipients.iter().map(|(_, s)| s.replace(LIST_SEPARATOR, ",")).collect::<Vec<_>>().join(&separator)
        };
        let ip = |ip: Option<IpAddr>| ip.map(|ip| ip.to_string()).unwrap_or_default();
        log.file.write_row(|row| {
            push_field(row, &ip(self.client_ip));
            push_field(row, self.client_hostname);
            push_field(row, &ip(self.server_ip));
            push_field(row, self.server_hostname);
            push_field(row, self.source_context);
            push_field(row, self.connector);
            push_field(row, self.source.as_str());
            push_field(row, self.event.as_str());
            push_field(row, &self.id.to_string());
            push_field(row, message_id);
            push_field(row, &addresses);
            push_field(row, &statuses);
            push_field(row, &size);
            push_field(row, &self.recipients.len().to_string());
            push_field(row, self.related_recipient);
            push_field(row, self.reference);
            push_field(row, subject);
            push_field(row, sender);
            push_field(row, sender);
            push_field(row, self.message_info);
        });
    }
}

/// A [`TrackingQuery`] parsed once: lower-cased addresses, the time window in the
/// log's own `date-time` form (which sorts as text), the days of the files to read.
struct Filter {
    sender: Option<String>,
    recipients: Vec<String>,
    message_id: Option<String>,
    internal_message_id: Option<String>,
    event: Option<&'static str>,
    start: Option<String>,
    end: Option<String>,
    first_day: Option<u32>,
    last_day: Option<u32>,
    limit: Option<usize>,
}

impl Filter {
    fn new(query: &TrackingQuery) -> Result<Filter, SearchError> {
        let time = |field: &'static str, text: &Option<String>| -> Result<Option<OffsetDateTime>, SearchError> {
            let Some(text) = text.as_deref() else { return Ok(None) };
            let ms = parse_rfc3339(text).map_err(|reason| SearchError::Query { field, reason })?;
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map(Some)
                .map_err(|e| SearchError::Query { field, reason: format!("{text:?}: {e}") })
        };
        let (start, end) = (time("start", &query.start)?, time("end", &query.end)?);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(SearchError::Query { field: "end", reason: "must be later than start".into() });
            }
        }
        Ok(Filter {
            sender: query.sender.as_deref().map(|s| bare_address(s).to_lowercase()),
            recipients: query.recipients.iter().map(|r| bare_address(r).to_lowercase()).collect(),
            message_id: query
                .message_id
                .as_deref()
                .map(|m| m.trim().trim_start_matches('<').trim_end_matches('>').to_string()),
            internal_message_id: query.internal_message_id.map(|n| n.to_string()),
            event: query.event_id.map(TrackingEvent::as_str),
            first_day: start.map(|s| date_key(s.date())),
            last_day: end.map(|e| date_key(e.date())),
            start: start.map(format_date_time),
            end: end.map(format_date_time),
            limit: query.result_size.unwrap_or(ResultSize::Rows(DEFAULT_RESULT_SIZE)).limit(),
        })
    }

    /// Appends the matching records of one file; true once the result size is reached.
    fn search_file(&self, path: &Path, found: &mut Vec<TrackingRecord>) -> Result<bool, SearchError> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            // Deleted by retention since the directory was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(SearchError::Read(e)),
        };
        let mut reader = io::BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(SearchError::Read)? == 0 {
                return Ok(false);
            }
            // A row without its line end was cut short by a crash: never answered.
            let Some(row) = line.strip_suffix(b"\r\n") else { continue };
            if row.first() == Some(&b'#') {
                continue;
            }
            let Ok(row) = std::str::from_utf8(row) else { continue };
            let Some(fields) = split_row(row) else { continue };
            if fields.len() != FIELD_COUNT || !self.matches(&fields) {
                continue;
            }
            if let Some(record) = to_record(&fields) {
                found.push(record);
                if self.limit.is_some_and(|l| found.len() >= l) {
                    return Ok(true);
                }
            }
        }
    }

    fn matches(&self, f: &[Cow<str>]) -> bool {
        let time = &f[col::DATE_TIME];
        if self.start.as_deref().is_some_and(|s| time.as_ref() < s)
            || self.end.as_deref().is_some_and(|e| time.as_ref() >= e)
        {
            return false;
        }
        if self.event.is_some_and(|e| f[col::EVENT_ID] != e) {
            return false;
        }
        if self.internal_message_id.as_deref().is_some_and(|id| f[col::INTERNAL_MESSAGE_ID] != id) {
            return false;
        }
        if let Some(id) = &self.message_id {
            let logged = f[col::MESSAGE_ID].trim_start_matches('<').trim_end_matches('>');
            let referenced = f[col::REFERENCE].trim_start_matches('<').trim_end_matches('>');
            if logged != id && referenced != id {
                return false;
            }
        }
        if self.sender.as_deref().is_some_and(|s| !f[col::SENDER_ADDRESS].eq_ignore_ascii_case(s)) {
            return false;
        }
        if !self.recipients.is_empty() {
            let named = f[col::RECIPIENT_ADDRESS].split(LIST_SEPARATOR);
            if !named.into_iter().any(|r| self.recipients.iter().any(|want| r.eq_ignore_ascii_case(want))) {
                return false;
            }
        }
        true
    }
}

/// An address as the log writes it: no angle brackets, no surrounding space.
fn bare_address(a: &str) -> &str {
    a.trim().trim_start_matches('<').trim_end_matches('>')
}

/// A row's fields as the API answers them; `None` for a row this version did not write
/// (an unknown event, a number that is not one).
fn to_record(f: &[Cow<str>]) -> Option<TrackingRecord> {
    let opt = |i: usize| Some(f[i].to_string()).filter(|s| !s.is_empty());
    let list = |i: usize| -> Vec<String> {
        if f[i].is_empty() {
            Vec::new()
        } else {
            f[i].split(LIST_SEPARATOR).map(str::to_string).collect()
        }
    };
    Some(TrackingRecord {
        timestamp: f[col::DATE_TIME].to_string(),
        client_ip: opt(col::CLIENT_IP),
        client_hostname: opt(col::CLIENT_HOSTNAME),
        server_ip: opt(col::SERVER_IP),
        server_hostname: opt(col::SERVER_HOSTNAME),
        source_context: opt(col::SOURCE_CONTEXT),
        connector_id: opt(col::CONNECTOR_ID),
        source: f[col::SOURCE].to_string(),
        event_id: f[col::EVENT_ID].parse().ok()?,
        internal_message_id: f[col::INTERNAL_MESSAGE_ID].parse().ok()?,
        message_id: opt(col::MESSAGE_ID),
        recipients: list(col::RECIPIENT_ADDRESS),
        recipient_status: list(col::RECIPIENT_STATUS),
        total_bytes: if f[col::TOTAL_BYTES].is_empty() { 0 } else { f[col::TOTAL_BYTES].parse().ok()? },
        recipient_count: f[col::RECIPIENT_COUNT].parse().ok()?,
        related_recipient_address: opt(col::RELATED_RECIPIENT_ADDRESS),
        reference: opt(col::REFERENCE),
        message_subject: opt(col::MESSAGE_SUBJECT),
        sender: f[col::SENDER_ADDRESS].to_string(),
        return_path: opt(col::RETURN_PATH),
        message_info: opt(col::MESSAGE_INFO),
    })
}

#[cfg(test)]
mod tests;
