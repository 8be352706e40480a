//! When a status is worth writing. A status a user reads is written as soon as anything in
//! it changes, except the queue counters (messages queued, to drain): those move with every
//! message, and a write per change would be a stream of writes nobody reads. A change of
//! counters alone is written at most once per [`COUNTER_INTERVAL`] per object; the
//! reconcile comes back by then to write the last value.
use std::time::{Duration, Instant};

pub const COUNTER_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it now.
    Write,
    /// Nothing changed.
    Unchanged,
    /// Only counters changed and the last write is recent: come back after this long.
    Later(Duration),
}

/// Whether to write `new` over `current`; `without_counters` blanks the counters of a
/// status, `last_write` is when this process last wrote this object's status. Statuses are
/// compared as the API server stores them (JSON): a time held to the nanosecond here is
/// stored to the second there, and must not count as a change on every reconcile.
pub fn decide<S: serde::Serialize>(
    current: Option<&S>,
    new: &S,
    without_counters: impl Fn(&S) -> S,
    last_write: Option<Instant>,
    now: Instant,
) -> Decision {
    let Some(current) = current else { return Decision::Write };
    let json = |s: &S| serde_json::to_value(s).unwrap_or_default();
    if json(current) == json(new) {
        return Decision::Unchanged;
    }
    if json(&without_counters(current)) != json(&without_counters(new)) {
        return Decision::Write;
    }
    match last_write.map(|t| now.saturating_duration_since(t)) {
        Some(since) if since < COUNTER_INTERVAL => Decision::Later(COUNTER_INTERVAL - since),
        _ => Decision::Write,
    }
}

/// The paths (`/servers/0/queueTotals`) where `new` differs from `old`, at most `limit`:
/// logged with each status write, so the log says why the operator wrote.
pub fn changed_paths(old: &serde_json::Value, new: &serde_json::Value, limit: usize) -> Vec<String> {
    fn walk(old: &serde_json::Value, new: &serde_json::Value, at: String, out: &mut Vec<String>, limit: usize) {
        use serde_json::Value;
        if out.len() >= limit || old == new {
            return;
        }
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                    walk(x, y, format!("{at}/{k}"), out, limit);
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(x, y, format!("{at}/{i}"), out, limit);
                }
            }
            _ => out.push(if at.is_empty() { "/".into() } else { at }),
        }
    }
    let mut out = Vec::new();
    walk(old, new, String::new(), &mut out, limit);
    out
}

/// The next look: `next`, or sooner when counters wait to be written (`later`).
pub fn sooner(next: Duration, later: Option<Duration>) -> Duration {
    later.map_or(next, |l| l.min(next))
}

/// `text` with every run of digits replaced by `#`: a message that differs only in a count
/// ("3 message(s) left") is a counter change.
pub fn mask_counts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The conditions with the counts in their messages masked.
pub fn mask_condition_counts(conditions: &mut [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) {
    for c in conditions {
        c.message = mask_counts(&c.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize)]
    struct S {
        ready: bool,
        queued: u64,
    }

    fn blank(s: &S) -> S {
        S { queued: 0, ..s.clone() }
    }

    #[test]
    fn times_compare_as_the_api_server_stores_them() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let stored = Time("2026-12-06T10:00:00Z".parse().unwrap());
        let here = Time("2026-12-06T10:00:00.123456789Z".parse().unwrap());
        assert_ne!(stored, here);
        let now = Instant::now();
        assert_eq!(decide(Some(&stored), &here, |t| t.clone(), None, now), Decision::Unchanged);
    }

    #[test]
    fn changed_paths_name_what_differs() {
        let old = serde_json::json!({"a": 1, "s": [{"q": 1, "n": "x"}], "c": [1]});
        let new = serde_json::json!({"a": 1, "s": [{"q": 2, "n": "x"}], "c": [1, 2], "d": true});
        assert_eq!(changed_paths(&old, &new, 10), ["/c", "/d", "/s/0/q"]);
        assert_eq!(changed_paths(&old, &old, 10), Vec::<String>::new());
        assert_eq!(changed_paths(&old, &new, 1).len(), 1);
    }

    #[test]
    fn counts_in_messages_are_masked() {
        assert_eq!(mask_counts("3 message(s) left on mail-1, 12 in retry"), "# message(s) left on mail-#, # in retry");
        assert_eq!(mask_counts("no digits"), "no digits");
    }

    #[test]
    fn counters_alone_wait_for_the_interval_anything_else_is_written_at_once() {
        let now = Instant::now();
        let old = S { ready: true, queued: 1 };
        let recent = Some(now - Duration::from_secs(3));
        assert_eq!(decide(None, &old, blank, recent, now), Decision::Write);
        assert_eq!(decide(Some(&old), &old.clone(), blank, recent, now), Decision::Unchanged);
        let counted = S { ready: true, queued: 2 };
        assert_eq!(decide(Some(&old), &counted, blank, recent, now), Decision::Later(Duration::from_secs(7)));
        assert_eq!(decide(Some(&old), &counted, blank, Some(now - COUNTER_INTERVAL), now), Decision::Write);
        assert_eq!(decide(Some(&old), &counted, blank, None, now), Decision::Write, "first write of this process");
        let changed = S { ready: false, queued: 2 };
        assert_eq!(decide(Some(&old), &changed, blank, recent, now), Decision::Write);
    }
}
