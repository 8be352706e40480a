//! One table for each setting of docs/design.md §4 (retry and expiration): where it is in
//! the file (the CRD path under `spec` too), its range and its default per role. The range
//! check and its error path (validate.rs), the resolved policies (defaults.rs), the schema
//! and CRD text (the field's doc comment) and the §4 table of docs/design.md all come from
//! here; the tests below hold the last two to it.
use super::{Role, TimeSpan};
use std::time::Duration;

/// A setting with a range and a default per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T> {
    /// camelCase, dotted: the path validation errors name.
    pub path: &'static str,
    pub min: T,
    pub max: T,
    pub mailbox: T,
    pub edge: T,
}

impl<T: Copy + PartialOrd> Setting<T> {
    /// The default of `role`.
    pub fn default_for(&self, role: Role) -> T {
        match role {
            Role::Mailbox => self.mailbox,
            Role::Edge => self.edge,
        }
    }

    pub fn range(&self) -> (T, T) {
        (self.min, self.max)
    }

    /// The field's name, the last part of the path.
    pub fn field(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }
}

impl Setting<Duration> {
    /// The value in force: the file's, else the role's default.
    pub fn resolve(&self, role: Role, value: Option<TimeSpan>) -> Duration {
        value.map_or(self.default_for(role), |t| t.0)
    }
}

impl Setting<u32> {
    pub fn resolve(&self, role: Role, value: Option<u32>) -> u32 {
        value.unwrap_or(self.default_for(role))
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const fn mins(n: u64) -> Duration {
    secs(n * 60)
}
const fn hours(n: u64) -> Duration {
    secs(n * 3600)
}
const fn days(n: u64) -> Duration {
    secs(n * 86400)
}
const fn span(
    path: &'static str,
    (min, max): (Duration, Duration),
    mailbox: Duration,
    edge: Duration,
) -> Setting<Duration> {
    Setting { path, min, max, mailbox, edge }
}
const fn count(path: &'static str, (min, max): (u32, u32), default: u32) -> Setting<u32> {
    Setting { path, min, max, mailbox: default, edge: default }
}

pub const QUEUE_GLITCH_RETRY_COUNT: Setting<u32> = count("retry.queueGlitchRetryCount", (0, 15), 4);
/// Undocumented in Exchange; bounded so that a glitch retry stays quick.
pub const QUEUE_GLITCH_RETRY_INTERVAL: Setting<Duration> =
    span("retry.queueGlitchRetryInterval", (secs(1), hours(1)), mins(1), mins(1));
pub const TRANSIENT_FAILURE_RETRY_COUNT: Setting<u32> = count("retry.transientFailureRetryCount", (0, 15), 6);
pub const TRANSIENT_FAILURE_RETRY_INTERVAL: Setting<Duration> =
    span("retry.transientFailureRetryInterval", (secs(1), hours(12)), mins(5), mins(10));
pub const OUTBOUND_CONNECTION_FAILURE_RETRY_INTERVAL: Setting<Duration> =
    span("retry.outboundConnectionFailureRetryInterval", (secs(1), days(20)), mins(10), mins(30));
/// Seed 002's value; newer Microsoft pages say 5 minutes.
pub const MESSAGE_RETRY_INTERVAL: Setting<Duration> =
    span("retry.messageRetryInterval", (secs(1), days(1)), mins(15), mins(15));
pub const MAILBOX_DELIVERY_QUEUE_RETRY_INTERVAL: Setting<Duration> =
    span("retry.mailboxDeliveryQueueRetryInterval", (secs(1), days(1)), mins(5), mins(5));
/// Undocumented in Exchange; at most the longest delay notification time-out.
pub const MAX_IDLE_TIME_BEFORE_RESUBMIT: Setting<Duration> =
    span("retry.maxIdleTimeBeforeResubmit", (secs(1), days(30)), hours(12), hours(12));
pub const QUEUE_MAX_IDLE_TIME: Setting<Duration> =
    span("retry.queueMaxIdleTime", (secs(5), hours(1)), mins(3), mins(3));
pub const POISON_THRESHOLD: Setting<u32> = count("retry.poisonThreshold", (1, 10), 2);
pub const DELAY_NOTIFICATION_TIME_OUT: Setting<Duration> =
    span("expiration.delayNotificationTimeOut", (secs(1), days(30)), hours(4), hours(4));
pub const MESSAGE_EXPIRATION_TIME_OUT: Setting<Duration> =
    span("expiration.messageExpirationTimeOut", (secs(5), days(90)), days(2), days(2));

/// Every time span of §4, in the order of its table.
pub const SPANS: [&Setting<Duration>; 9] = [
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
        _ => format!("{s} s"),
    }
}

/// What a time span's doc comment (the schema and CRD description) starts with:
/// `1 s – 1 day. Default 00:15:00.`, with both defaults when the roles differ.
pub fn span_doc(s: &Setting<Duration>) -> String {
    let default = if s.mailbox == s.edge {
        format!("Default {}", TimeSpan(s.mailbox))
    } else {
        format!("Default {} (Mailbox), {} (Edge)", TimeSpan(s.mailbox), TimeSpan(s.edge))
    };
    format!("{} – {}. {default}.", human(s.min), human(s.max))
}

/// A count's: `0–15. Default 4.`
pub fn count_doc(s: &Setting<u32>) -> String {
    format!("{}–{}. Default {}.", s.min, s.max, s.mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportFile;
    use serde_json::Value;

    /// The schema of the property at `path` (through the `$ref`s of the file's schema).
    fn property<'a>(schema: &'a Value, path: &str) -> &'a Value {
        let mut node = schema;
        for part in path.split('.') {
            if let Some(reference) = node["$ref"].as_str() {
                node = &schema["$defs"][reference.trim_start_matches("#/$defs/")];
            }
            node = &node["properties"][part];
            assert!(!node.is_null(), "{path}: no property {part}");
        }
        node
    }

    fn description(schema: &Value, path: &str) -> String {
        property(schema, path)["description"].as_str().unwrap_or_default().replace('\n', " ")
    }

    #[test]
    fn the_schema_says_what_the_table_says() {
        let schema = serde_json::to_value(schemars::schema_for!(TransportFile)).unwrap();
        for s in SPANS {
            let doc = description(&schema, s.path);
            assert!(
                doc.starts_with(&span_doc(s)),
                "{}: the doc comment should start {:?}: {doc:?}",
                s.path,
                span_doc(s)
            );
        }
        for s in COUNTS {
            let doc = description(&schema, s.path);
            assert!(
                doc.starts_with(&count_doc(s)),
                "{}: the doc comment should start {:?}: {doc:?}",
                s.path,
                count_doc(s)
            );
            let p = property(&schema, s.path);
            assert_eq!(
                (p["minimum"].as_u64(), p["maximum"].as_u64()),
                (Some(s.min.into()), Some(s.max.into())),
                "{}",
                s.path
            );
        }
    }

    /// The rows of docs/design.md §4: setting → (Mailbox, Edge, range).
    fn design_table() -> Vec<(String, String, String, String)> {
        let design = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/design.md")).unwrap();
        let section = design.split("## 4. Retry").nth(1).expect("§4").split("\n## ").next().unwrap_or_default();
        section
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| setting"))
            .map(|l| {
                let cells: Vec<String> = l.split('|').map(|c| c.trim().to_string()).collect();
                (cells[1].clone(), cells[2].clone(), cells[3].clone(), cells[4].clone())
            })
            .collect()
    }

    #[test]
    fn docs_design_section_4_says_what_the_table_says() {
        let rows = design_table();
        assert_eq!(rows.len(), SPANS.len() + COUNTS.len(), "one row per setting: {rows:?}");
        let row = |field: &str| rows.iter().find(|r| r.0 == field).unwrap_or_else(|| panic!("no row {field}"));
        for s in SPANS {
            let (_, mailbox, edge, range) = row(s.field());
            assert_eq!(
                (mailbox.as_str(), edge.as_str()),
                (&*TimeSpan(s.mailbox).to_string(), &*TimeSpan(s.edge).to_string()),
                "{}",
                s.path
            );
            let want = format!("{} – {}", human(s.min), human(s.max));
            assert!(range.starts_with(&want), "{}: range {range:?}, want {want:?}", s.path);
        }
        for s in COUNTS {
            let (_, mailbox, edge, range) = row(s.field());
            assert_eq!(
                (mailbox.as_str(), edge.as_str()),
                (&*s.mailbox.to_string(), &*s.edge.to_string()),
                "{}",
                s.path
            );
            assert_eq!(range, &format!("{}–{}", s.min, s.max), "{}", s.path);
        }
    }

    #[test]
    fn ranges_and_defaults_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(1)), "1 s");
        assert_eq!(human(Duration::from_secs(300)), "5 min");
        assert_eq!(human(Duration::from_secs(12 * 3600)), "12 h");
        assert_eq!(human(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human(Duration::from_secs(90 * 86_400)), "90 days");
        assert_eq!(span_doc(&MESSAGE_RETRY_INTERVAL), "1 s – 1 day. Default 00:15:00.");
        assert_eq!(
            span_doc(&TRANSIENT_FAILURE_RETRY_INTERVAL),
            "1 s – 12 h. Default 00:05:00 (Mailbox), 00:10:00 (Edge)."
        );
        assert_eq!(count_doc(&POISON_THRESHOLD), "1–10. Default 2.");
        assert_eq!(MESSAGE_EXPIRATION_TIME_OUT.resolve(Role::Edge, None), Duration::from_secs(2 * 86_400));
        assert_eq!(POISON_THRESHOLD.resolve(Role::Mailbox, Some(5)), 5);
        assert_eq!(POISON_THRESHOLD.field(), "poisonThreshold");
    }
}
