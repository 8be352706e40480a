//! One table of the settings that have a range or a default worth quoting: where each is in
//! the file (the CRD path under `spec` too; `[]` stands for a list index), its range and its
//! default per role. The range checks and their error paths (validate.rs, which keeps only
//! the rules across fields), the values in force (defaults.rs), the schema and CRD text (the
//! field's doc comment) and the tables of docs/design.md (§4 and §8 "Ranges and defaults")
//! all come from here; the tests below hold the doc comments and the tables to it.
use super::{ByteSize, Role, TimeSpan};
use std::fmt;
use std::time::Duration;

/// A value a setting can hold: a time span, a count or a size, as the file writes it.
pub trait Bounded: Copy + PartialOrd + fmt::Display {
    /// As a maximum: there is none.
    const UNBOUNDED: Self;
    /// As a minimum: there is none.
    const LEAST: Self;
    /// Between the ends of a range as documentation writes it (`1 s – 1 day`, `1–500`).
    const DASH: &'static str;
    /// An end of a range as people write it (`5 min`, `36MB`, `500`).
    fn human(self) -> String;
}

impl Bounded for TimeSpan {
    const UNBOUNDED: Self = TimeSpan(Duration::MAX);
    const LEAST: Self = TimeSpan(Duration::ZERO);
    const DASH: &'static str = " – ";
    fn human(self) -> String {
        human(self.0)
    }
}

impl Bounded for u32 {
    const UNBOUNDED: Self = u32::MAX;
    const LEAST: Self = 0;
    const DASH: &'static str = "–";
    fn human(self) -> String {
        self.to_string()
    }
}

/// A switch: every value is in range, so only its default is written.
impl Bounded for bool {
    const UNBOUNDED: Self = true;
    const LEAST: Self = false;
    const DASH: &'static str = "–";
    fn human(self) -> String {
        self.to_string()
    }
}

impl Bounded for ByteSize {
    const UNBOUNDED: Self = ByteSize::UNLIMITED;
    const LEAST: Self = ByteSize(0);
    const DASH: &'static str = " – ";
    fn human(self) -> String {
        self.to_string()
    }
}

/// A setting with a range and a default per role (the same in both outside §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T> {
    /// camelCase, dotted, `[]` for a list index: the path validation errors name.
    pub path: &'static str,
    pub min: T,
    /// [`Bounded::UNBOUNDED`]: no maximum.
    pub max: T,
    pub mailbox: T,
    pub edge: T,
}

impl<T: Bounded> Setting<T> {
    /// The default of `role`.
    pub fn default_for(&self, role: Role) -> T {
        match role {
            Role::Mailbox => self.mailbox,
            Role::Edge => self.edge,
        }
    }

    /// The default of a setting outside §4 (the same in both roles; a test holds them to it).
    pub fn default(&self) -> T {
        self.mailbox
    }

    /// The value in force: the file's, else the role's default.
    pub fn resolve(&self, role: Role, value: Option<T>) -> T {
        value.unwrap_or(self.default_for(role))
    }

    /// The value in force of a setting outside §4.
    pub fn or_default(&self, value: Option<T>) -> T {
        value.unwrap_or(self.default())
    }

    pub fn contains(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }

    /// Why `value` is refused, or `None` when it is in range.
    pub fn refusal(&self, value: T) -> Option<String> {
        if self.contains(value) {
            None
        } else if self.max == T::UNBOUNDED {
            Some(format!("{value} is out of range (at least {})", self.min))
        } else {
            Some(format!("{value} is out of range ({} to {})", self.min, self.max))
        }
    }

    /// The field's name, the last part of the path.
    pub fn field(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }

    /// The path of one occurrence: each `[]` filled with the next of `indices`.
    pub fn at(&self, indices: &[usize]) -> String {
        let mut parts = self.path.split("[]");
        let mut path = parts.next().unwrap_or_default().to_string();
        for (k, part) in parts.enumerate() {
            match indices.get(k) {
                Some(i) => path.push_str(&format!("[{i}]{part}")),
                None => path.push_str(&format!("[]{part}")),
            }
        }
        path
    }

    /// The range as the docs write it: `1 s – 1 day`, `1–500`, `at least 1KB`; `None`
    /// without bounds.
    pub fn range_text(&self) -> Option<String> {
        match (self.min == T::LEAST, self.max == T::UNBOUNDED) {
            (true, true) => None,
            (false, true) => Some(format!("at least {}", self.min.human())),
            _ => Some(format!("{}{}{}", self.min.human(), T::DASH, self.max.human())),
        }
    }

    /// The default as the docs write it: `00:15:00`, or `00:05:00 (Mailbox), 00:10:00 (Edge)`.
    pub fn default_text(&self) -> String {
        if self.mailbox == self.edge {
            self.mailbox.to_string()
        } else {
            format!("{} (Mailbox), {} (Edge)", self.mailbox, self.edge)
        }
    }

    /// What the field's doc comment (the schema and CRD description) says of it:
    /// `1 s – 1 day. Default 00:15:00.`, `At least 1. Default 5000.`, `Default 5.`
    pub fn doc(&self) -> String {
        let default = format!("Default {}.", self.default_text());
        match self.range_text() {
            Some(mut range) => {
                range[..1].make_ascii_uppercase();
                format!("{range}. {default}")
            }
            None => default,
        }
    }
}

const fn secs(n: u64) -> TimeSpan {
    TimeSpan(Duration::from_secs(n))
}
const fn mins(n: u64) -> TimeSpan {
    secs(n * 60)
}
const fn hours(n: u64) -> TimeSpan {
    secs(n * 3600)
}
const fn days(n: u64) -> TimeSpan {
    secs(n * 86400)
}
/// A §4 setting, with a default per role.
const fn per_role<T: Copy>(path: &'static str, (min, max): (T, T), mailbox: T, edge: T) -> Setting<T> {
    Setting { path, min, max, mailbox, edge }
}
/// A setting with one default for both roles.
const fn one<T: Copy>(path: &'static str, (min, max): (T, T), default: T) -> Setting<T> {
    Setting { path, min, max, mailbox: default, edge: default }
}
const AT_LEAST_ONE: (u32, u32) = (1, u32::MAX);
const SECOND_TO_DAY: (TimeSpan, TimeSpan) = (secs(1), days(1));
const ANY_SIZE: (ByteSize, ByteSize) = (ByteSize(0), ByteSize::UNLIMITED);
const AT_LEAST_1KB: (ByteSize, ByteSize) = (ByteSize::kb(1), ByteSize::UNLIMITED);
/// Exchange's log MaxAge: 00:00:00 (never by age) to 24855 days.
const LOG_AGE: (TimeSpan, TimeSpan) = (secs(0), days(24855));

// ---- docs/design.md §4: retry and expiration ----

pub const QUEUE_GLITCH_RETRY_COUNT: Setting<u32> = one("retry.queueGlitchRetryCount", (0, 15), 4);
// Undocumented in Exchange; bounded so that a glitch retry stays quick.
pub const QUEUE_GLITCH_RETRY_INTERVAL: Setting<TimeSpan> =
    one("retry.queueGlitchRetryInterval", (secs(1), hours(1)), mins(1));
pub const TRANSIENT_FAILURE_RETRY_COUNT: Setting<u32> = one("retry.transientFailureRetryCount", (0, 15), 6);
pub const TRANSIENT_FAILURE_RETRY_INTERVAL: Setting<TimeSpan> =
    per_role("retry.transientFailureRetryInterval", (secs(1), hours(12)), mins(5), mins(10));
pub const OUTBOUND_CONNECTION_FAILURE_RETRY_INTERVAL: Setting<TimeSpan> =
    per_role("retry.outboundConnectionFailureRetryInterval", (secs(1), days(20)), mins(10), mins(30));
// Seed 002's value; newer Microsoft pages say 5 minutes.
pub const MESSAGE_RETRY_INTERVAL: Setting<TimeSpan> = one("retry.messageRetryInterval", SECOND_TO_DAY, mins(15));
pub const MAILBOX_DELIVERY_QUEUE_RETRY_INTERVAL: Setting<TimeSpan> =
    one("retry.mailboxDeliveryQueueRetryInterval", SECOND_TO_DAY, mins(5));
// Undocumented in Exchange; at most the longest delay notification time-out.
pub const MAX_IDLE_TIME_BEFORE_RESUBMIT: Setting<TimeSpan> =
    one("retry.maxIdleTimeBeforeResubmit", (secs(1), days(30)), hours(12));
pub const QUEUE_MAX_IDLE_TIME: Setting<TimeSpan> = one("retry.queueMaxIdleTime", (secs(5), hours(1)), mins(3));
pub const POISON_THRESHOLD: Setting<u32> = one("retry.poisonThreshold", (1, 10), 2);
pub const DELAY_NOTIFICATION_TIME_OUT: Setting<TimeSpan> =
    one("expiration.delayNotificationTimeOut", (secs(1), days(30)), hours(4));
pub const MESSAGE_EXPIRATION_TIME_OUT: Setting<TimeSpan> =
    one("expiration.messageExpirationTimeOut", (secs(5), days(90)), days(2));

/// Every time span of §4, in the order of its table.
pub const SPANS: [&Setting<TimeSpan>; 9] = [
    &QUEUE_GLITCH_RETRY_INTERVAL,
    &TRANSIENT_FAILURE_RETRY_INTERVAL,
    &OUTBOUND_CONNECTION_FAILURE_RETRY_INTERVAL,
    &MESSAGE_RETRY_INTERVAL,
    &MAILBOX_DELIVERY_QUEUE_RETRY_INTERVAL,
    &MAX_IDLE_TIME_BEFORE_RESUBMIT,
    &DELAY_NOTIFICATION_TIME_OUT,
    &MESSAGE_EXPIRATION_TIME_OUT,
    &QUEUE_MAX_IDLE_TIME,
];
/// Every count of §4.
pub const COUNTS: [&Setting<u32>; 3] = [&QUEUE_GLITCH_RETRY_COUNT, &TRANSIENT_FAILURE_RETRY_COUNT, &POISON_THRESHOLD];

// ---- Receive connectors (Exchange's New-ReceiveConnector defaults and ranges) ----

pub const RECEIVE_MAX_MESSAGE_SIZE: Setting<ByteSize> =
    one("receiveConnectors[].maxMessageSize", (ByteSize::kb(64), ByteSize::gb(2)), ByteSize::mb(36));
pub const RECEIVE_MAX_RECIPIENTS_PER_MESSAGE: Setting<u32> =
    one("receiveConnectors[].maxRecipientsPerMessage", (1, 512_000), 200);
// RFC 5321 §4.5.3.2.7 asks a server to wait at least 5 minutes for a command.
pub const RECEIVE_CONNECTION_INACTIVITY_TIMEOUT: Setting<TimeSpan> =
    one("receiveConnectors[].connectionInactivityTimeout", SECOND_TO_DAY, mins(5));
pub const RECEIVE_CONNECTION_TIMEOUT: Setting<TimeSpan> =
    one("receiveConnectors[].connectionTimeout", SECOND_TO_DAY, mins(10));
pub const RECEIVE_MAX_INBOUND_CONNECTION: Setting<u32> =
    one("receiveConnectors[].maxInboundConnection", AT_LEAST_ONE, 5000);
pub const RECEIVE_MAX_INBOUND_CONNECTION_PER_SOURCE: Setting<u32> =
    one("receiveConnectors[].maxInboundConnectionPerSource", (1, 10_000), 20);
pub const RECEIVE_MAX_PROTOCOL_ERRORS: Setting<u32> = one("receiveConnectors[].maxProtocolErrors", (0, u32::MAX), 5);
pub const RECEIVE_MAX_HEADER_SIZE: Setting<ByteSize> =
    one("receiveConnectors[].maxHeaderSize", AT_LEAST_1KB, ByteSize::kb(256));
pub const RECEIVE_MAX_HOP_COUNT: Setting<u32> = one("receiveConnectors[].maxHopCount", (1, 500), 30);

// ---- Send connectors ----

pub const SEND_CONNECTION_TIMEOUT: Setting<TimeSpan> =
    one("sendConnectors[].connectionTimeout", SECOND_TO_DAY, mins(1));
// Exchange's ConnectionInactivityTimeOut; also RFC 5321 §4.5.3.2.6's wait after the data.
pub const SEND_CONNECTION_INACTIVITY_TIMEOUT: Setting<TimeSpan> =
    one("sendConnectors[].connectionInactivityTimeout", SECOND_TO_DAY, mins(10));
pub const SEND_MAX_CONCURRENT_CONNECTIONS: Setting<u32> =
    one("sendConnectors[].maxConcurrentConnections", AT_LEAST_ONE, 20);
pub const ADDRESS_SPACE_COST: Setting<u32> = one("sendConnectors[].addressSpaces[].cost", (1, 100), 1);
/// Outbound connections over every next hop (Exchange's MaxOutboundConnections).
pub const MAX_OUTBOUND_CONNECTIONS: Setting<u32> = one("maxOutboundConnections", AT_LEAST_ONE, 1000);

// ---- Organisation (Set-TransportConfig) ----

pub const MAX_SEND_SIZE: Setting<ByteSize> = one("transportConfig.maxSendSize", ANY_SIZE, ByteSize::mb(10));
pub const MAX_RECEIVE_SIZE: Setting<ByteSize> = one("transportConfig.maxReceiveSize", ANY_SIZE, ByteSize::mb(10));
pub const MAX_RECIPIENT_ENVELOPE_LIMIT: Setting<u32> =
    one("transportConfig.maxRecipientEnvelopeLimit", AT_LEAST_ONE, 500);
pub const DSN_MAX_MESSAGE_ATTACH_SIZE: Setting<ByteSize> =
    one("transportConfig.dsnMaxMessageAttachSize", ANY_SIZE, ByteSize::mb(10));
pub const SHADOW_HEARTBEAT_FREQUENCY: Setting<TimeSpan> =
    one("transportConfig.shadowHeartbeatFrequency", SECOND_TO_DAY, mins(2));
pub const SHADOW_RESUBMIT_TIME_SPAN: Setting<TimeSpan> =
    one("transportConfig.shadowResubmitTimeSpan", SECOND_TO_DAY, hours(3));
pub const SHADOW_MESSAGE_AUTO_DISCARD_INTERVAL: Setting<TimeSpan> =
    one("transportConfig.shadowMessageAutoDiscardInterval", (secs(5), days(90)), days(2));
pub const SAFETY_NET_HOLD_TIME: Setting<TimeSpan> =
    one("transportConfig.safetyNetHoldTime", (secs(0), days(90)), days(2));

// ---- Transport logs ----

pub const LOG_MAX_AGE: Setting<TimeSpan> = one("logging.maxAge", LOG_AGE, days(30));
pub const LOG_MAX_DIRECTORY_SIZE: Setting<ByteSize> = one("logging.maxDirectorySize", AT_LEAST_1KB, ByteSize::mb(250));
pub const LOG_MAX_FILE_SIZE: Setting<ByteSize> = one("logging.maxFileSize", AT_LEAST_1KB, ByteSize::mb(10));
pub const TRACKING_LOG_MAX_AGE: Setting<TimeSpan> = one("logging.messageTrackingLogMaxAge", LOG_AGE, days(30));
// Exchange 2013 and later (250MB before).
pub const TRACKING_LOG_MAX_DIRECTORY_SIZE: Setting<ByteSize> =
    one("logging.messageTrackingLogMaxDirectorySize", AT_LEAST_1KB, ByteSize::mb(1000));
pub const TRACKING_LOG_MAX_FILE_SIZE: Setting<ByteSize> =
    one("logging.messageTrackingLogMaxFileSize", AT_LEAST_1KB, ByteSize::mb(10));

// ---- Switches ----

const SWITCH: (bool, bool) = (false, true);
pub const RECEIVE_CHUNKING_ENABLED: Setting<bool> = one("receiveConnectors[].chunkingEnabled", SWITCH, true);
pub const RECEIVE_BINARY_MIME_ENABLED: Setting<bool> = one("receiveConnectors[].binaryMimeEnabled", SWITCH, true);
pub const RECEIVE_SMTP_UTF8_ENABLED: Setting<bool> = one("receiveConnectors[].smtpUtf8Enabled", SWITCH, true);
pub const INTERNAL_DELAY_DSN_ENABLED: Setting<bool> = one("transportConfig.internalDelayDSNEnabled", SWITCH, true);
pub const EXTERNAL_DELAY_DSN_ENABLED: Setting<bool> = one("transportConfig.externalDelayDSNEnabled", SWITCH, true);
pub const SHADOW_REDUNDANCY_ENABLED: Setting<bool> = one("transportConfig.shadowRedundancyEnabled", SWITCH, true);
pub const REJECT_MESSAGE_ON_SHADOW_FAILURE: Setting<bool> =
    one("transportConfig.rejectMessageOnShadowFailure", SWITCH, false);
// As Stalwart and KumoMTA send TLS reports.
pub const TLS_REPORTING_ENABLED: Setting<bool> = one("transportConfig.tlsReportingEnabled", SWITCH, true);
pub const LOG_CONNECTIVITY: Setting<bool> = one("logging.connectivityLog", SWITCH, true);
pub const LOG_PROTOCOL: Setting<bool> = one("logging.protocolLog", SWITCH, true);
pub const TRACKING_LOG_ENABLED: Setting<bool> = one("logging.messageTrackingLogEnabled", SWITCH, true);
pub const TRACKING_LOG_SUBJECT_LOGGING_ENABLED: Setting<bool> =
    one("logging.messageTrackingLogSubjectLoggingEnabled", SWITCH, false);

/// Every switch with a default, in the order of docs/design.md §8's "Ranges and defaults".
pub const SWITCHES: [&Setting<bool>; 12] = [
    &RECEIVE_CHUNKING_ENABLED,
    &RECEIVE_BINARY_MIME_ENABLED,
    &RECEIVE_SMTP_UTF8_ENABLED,
    &INTERNAL_DELAY_DSN_ENABLED,
    &EXTERNAL_DELAY_DSN_ENABLED,
    &SHADOW_REDUNDANCY_ENABLED,
    &REJECT_MESSAGE_ON_SHADOW_FAILURE,
    &TLS_REPORTING_ENABLED,
    &LOG_CONNECTIVITY,
    &LOG_PROTOCOL,
    &TRACKING_LOG_ENABLED,
    &TRACKING_LOG_SUBJECT_LOGGING_ENABLED,
];

/// Every time span outside §4, in the order of docs/design.md §8's "Ranges and defaults".
pub const OTHER_SPANS: [&Setting<TimeSpan>; 10] = [
    &RECEIVE_CONNECTION_INACTIVITY_TIMEOUT,
    &RECEIVE_CONNECTION_TIMEOUT,
    &SEND_CONNECTION_TIMEOUT,
    &SEND_CONNECTION_INACTIVITY_TIMEOUT,
    &SHADOW_HEARTBEAT_FREQUENCY,
    &SHADOW_RESUBMIT_TIME_SPAN,
    &SHADOW_MESSAGE_AUTO_DISCARD_INTERVAL,
    &SAFETY_NET_HOLD_TIME,
    &LOG_MAX_AGE,
    &TRACKING_LOG_MAX_AGE,
];
/// Every count outside §4.
pub const OTHER_COUNTS: [&Setting<u32>; 9] = [
    &RECEIVE_MAX_RECIPIENTS_PER_MESSAGE,
    &RECEIVE_MAX_INBOUND_CONNECTION,
    &RECEIVE_MAX_INBOUND_CONNECTION_PER_SOURCE,
    &RECEIVE_MAX_PROTOCOL_ERRORS,
    &RECEIVE_MAX_HOP_COUNT,
    &SEND_MAX_CONCURRENT_CONNECTIONS,
    &ADDRESS_SPACE_COST,
    &MAX_OUTBOUND_CONNECTIONS,
    &MAX_RECIPIENT_ENVELOPE_LIMIT,
];
/// Every size.
pub const SIZES: [&Setting<ByteSize>; 9] = [
    &RECEIVE_MAX_MESSAGE_SIZE,
    &RECEIVE_MAX_HEADER_SIZE,
    &MAX_SEND_SIZE,
    &MAX_RECEIVE_SIZE,
    &DSN_MAX_MESSAGE_ATTACH_SIZE,
    &LOG_MAX_DIRECTORY_SIZE,
    &LOG_MAX_FILE_SIZE,
    &TRACKING_LOG_MAX_DIRECTORY_SIZE,
    &TRACKING_LOG_MAX_FILE_SIZE,
];

/// A duration as people write a range: `1 s`, `5 min`, `12 h`, `1 day`, `90 days`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => match s / 86_400 {
            1 => "1 day".to_string(),
            n => format!("{n} days"),
        },
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{} min", s / 60),
        0 => "0".to_string(),
        _ => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportFile;
    use serde_json::Value;

    /// The schema `node` stands for: through its `$ref`, or an optional's `anyOf [$ref, null]`.
    fn deref<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
        if let Some(alternative) = node["anyOf"].as_array().and_then(|a| a.iter().find(|n| n["$ref"].is_string())) {
            return deref(schema, alternative);
        }
        match node["$ref"].as_str() {
            Some(reference) => &schema["$defs"][reference.trim_start_matches("#/$defs/")],
            None => node,
        }
    }

    /// The property at `path` as its parent lists it (with the field's own description
    /// beside a `$ref`); `[]` goes into a list's items.
    fn field<'a>(schema: &'a Value, path: &str) -> &'a Value {
        let mut parent = schema;
        let mut field = schema;
        for part in path.split('.') {
            let (name, list) = part.strip_suffix("[]").map_or((part, false), |n| (n, true));
            field = &deref(schema, parent)["properties"][name];
            assert!(!field.is_null(), "{path}: no property {name}");
            parent = if list { &field["items"] } else { field };
        }
        field
    }

    fn property<'a>(schema: &'a Value, path: &str) -> &'a Value {
        deref(schema, field(schema, path))
    }

    fn description(schema: &Value, path: &str) -> String {
        field(schema, path)["description"].as_str().unwrap_or_default().replace('\n', " ")
    }

    fn schema() -> Value {
        serde_json::to_value(schemars::schema_for!(TransportFile)).unwrap()
    }

    fn says_what_the_table_says<T: Bounded>(schema: &Value, s: &Setting<T>) {
        let doc = description(schema, s.path);
        assert!(doc.contains(&s.doc()), "{}: the doc comment should say {:?}: {doc:?}", s.path, s.doc());
    }

    #[test]
    fn the_schema_says_what_the_table_says() {
        let schema = schema();
        SPANS.iter().chain(OTHER_SPANS.iter()).for_each(|s| says_what_the_table_says(&schema, s));
        SIZES.iter().for_each(|s| says_what_the_table_says(&schema, s));
        SWITCHES.iter().for_each(|s| says_what_the_table_says(&schema, s));
        for s in COUNTS.iter().chain(OTHER_COUNTS.iter()) {
            says_what_the_table_says(&schema, s);
            let p = property(&schema, s.path);
            let max = (s.max != u32::MAX).then_some(u64::from(s.max));
            assert_eq!((p["minimum"].as_u64(), p["maximum"].as_u64()), (Some(s.min.into()), max), "{}", s.path);
        }
    }

    #[test]
    fn outside_section_4_a_default_is_the_same_in_both_roles() {
        for s in OTHER_SPANS {
            assert_eq!(s.mailbox, s.edge, "{}", s.path);
        }
        for s in OTHER_COUNTS {
            assert_eq!(s.mailbox, s.edge, "{}", s.path);
        }
        for s in SIZES {
            assert_eq!(s.mailbox, s.edge, "{}", s.path);
        }
        for s in SWITCHES {
            assert_eq!(s.mailbox, s.edge, "{}", s.path);
        }
    }

    /// The rows of the table in `section` of docs/design.md, as cells.
    fn design_table(section: &str) -> Vec<Vec<String>> {
        let design = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/design.md")).unwrap();
        let text = design.split(section).nth(1).unwrap_or_else(|| panic!("no {section:?}"));
        testkit::doc_table::rows(text, "| setting |")
    }

    #[test]
    fn docs_design_section_4_says_what_the_table_says() {
        let rows = design_table("## 4. Retry");
        assert_eq!(rows.len(), SPANS.len() + COUNTS.len(), "one row per setting: {rows:?}");
        let row = |field: &str| rows.iter().find(|r| r[0] == field).unwrap_or_else(|| panic!("no row {field}"));
        for s in SPANS {
            let r = row(s.field());
            assert_eq!((&*r[1], &*r[2]), (&*s.mailbox.to_string(), &*s.edge.to_string()), "{}", s.path);
            let want = s.range_text().unwrap_or_default();
            assert!(r[3].starts_with(&want), "{}: range {:?}, want {want:?}", s.path, r[3]);
        }
        for s in COUNTS {
            let r = row(s.field());
            assert_eq!((&*r[1], &*r[2]), (&*s.mailbox.to_string(), &*s.edge.to_string()), "{}", s.path);
            assert_eq!(Some(&r[3]), s.range_text().as_ref(), "{}", s.path);
        }
    }

    /// The rows of §8's "Ranges and defaults": `| `path` | range | default |`.
    #[test]
    fn docs_design_ranges_and_defaults_say_what_the_table_says() {
        let rows = design_table("#### Ranges and defaults");
        let mut want: Vec<(String, String, String)> = Vec::new();
        fn row<T: Bounded>(s: &Setting<T>) -> (String, String, String) {
            (format!("`{}`", s.path), s.range_text().unwrap_or_else(|| "—".into()), s.default_text())
        }
        want.extend(OTHER_SPANS.iter().map(|s| row(*s)));
        want.extend(OTHER_COUNTS.iter().map(|s| row(*s)));
        want.extend(SIZES.iter().map(|s| row(*s)));
        want.extend(SWITCHES.iter().map(|s| row(*s)));
        let got: Vec<(String, String, String)> =
            rows.iter().map(|r| (r[0].clone(), r[1].clone(), r.get(2).cloned().unwrap_or_default())).collect();
        for w in &want {
            assert!(got.contains(w), "docs/design.md should have the row {w:?}; it has {got:?}");
        }
        assert_eq!(got.len(), want.len(), "one row per setting");
    }

    #[test]
    fn ranges_and_defaults_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(1)), "1 s");
        assert_eq!(human(Duration::from_secs(300)), "5 min");
        assert_eq!(human(Duration::from_secs(12 * 3600)), "12 h");
        assert_eq!(human(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human(Duration::from_secs(90 * 86_400)), "90 days");
        assert_eq!(MESSAGE_RETRY_INTERVAL.doc(), "1 s – 1 day. Default 00:15:00.");
        assert_eq!(TRANSIENT_FAILURE_RETRY_INTERVAL.doc(), "1 s – 12 h. Default 00:05:00 (Mailbox), 00:10:00 (Edge).");
        assert_eq!(POISON_THRESHOLD.doc(), "1–10. Default 2.");
        assert_eq!(RECEIVE_MAX_INBOUND_CONNECTION.doc(), "At least 1. Default 5000.");
        assert_eq!(RECEIVE_MAX_PROTOCOL_ERRORS.doc(), "Default 5.");
        assert_eq!(RECEIVE_MAX_MESSAGE_SIZE.doc(), "64KB – 2GB. Default 36MB.");
        assert_eq!(LOG_MAX_FILE_SIZE.doc(), "At least 1KB. Default 10MB.");
        assert_eq!(SAFETY_NET_HOLD_TIME.doc(), "0 – 90 days. Default 2.00:00:00.");
        assert_eq!(REJECT_MESSAGE_ON_SHADOW_FAILURE.doc(), "Default false.");
        assert_eq!(TLS_REPORTING_ENABLED.refusal(false), None);
        assert_eq!(MESSAGE_EXPIRATION_TIME_OUT.resolve(Role::Edge, None), TimeSpan::from_days(2));
        assert_eq!(POISON_THRESHOLD.resolve(Role::Mailbox, Some(5)), 5);
        assert_eq!(POISON_THRESHOLD.field(), "poisonThreshold");
    }

    #[test]
    fn a_refusal_names_the_range_and_an_occurrence_its_indices() {
        assert_eq!(POISON_THRESHOLD.refusal(11).as_deref(), Some("11 is out of range (1 to 10)"));
        assert_eq!(POISON_THRESHOLD.refusal(10), None);
        assert_eq!(RECEIVE_MAX_INBOUND_CONNECTION.refusal(0).as_deref(), Some("0 is out of range (at least 1)"));
        assert_eq!(
            RECEIVE_MAX_MESSAGE_SIZE.refusal(ByteSize::kb(1)).as_deref(),
            Some("1KB is out of range (64KB to 2GB)")
        );
        assert_eq!(
            QUEUE_MAX_IDLE_TIME.refusal(TimeSpan::from_secs(1)).as_deref(),
            Some("00:00:01 is out of range (00:00:05 to 01:00:00)")
        );
        assert_eq!(MAX_RECEIVE_SIZE.refusal(ByteSize::UNLIMITED), None);
        assert_eq!(ADDRESS_SPACE_COST.at(&[2, 3]), "sendConnectors[2].addressSpaces[3].cost");
        assert_eq!(RECEIVE_MAX_HOP_COUNT.at(&[0]), "receiveConnectors[0].maxHopCount");
        assert_eq!(MAX_OUTBOUND_CONNECTIONS.at(&[]), "maxOutboundConnections");
    }
}
