//! The counts themselves: per UTC day and policy domain, successful and failed sessions
//! with their failure details (RFC 8460 §4). Pure: the owner (`TlsReports`) adds the
//! clock, the lock and the file.
use crate::api::{TlsFailureDetail, TlsReportDay, TlsReportDomain};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Past days kept for the admin API after their report went (or did not go).
pub const KEEP_DAYS: usize = 7;

/// The policy a session ran under (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySeen {
    pub domain: String,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: &'static str,
    pub policy_string: Vec<String>,
    pub mx_host: Vec<String>,
}

/// One failed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub result_type: &'static str,
    pub mx_host: String,
    pub ip: Option<String>,
    /// This server's address on the connection (sending-mta-ip).
    pub sending_ip: Option<String>,
    pub reason: String,
}

/// Every day's counts, by date (`YYYY-MM-DD`) then domain; the file's content too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Days {
    pub days: BTreeMap<String, BTreeMap<String, TlsReportDomain>>,
}

impl Days {
    /// Counts one session of `date` under `policy`: a success, or `failure`.
    pub fn add(&mut self, date: &str, policy: &PolicySeen, failure: Option<Failure>) {
        let day = self.days.entry(date.to_string()).or_default();
        let entry = day
            .entry(policy.domain.clone())
            .or_insert_with(|| TlsReportDomain { domain: policy.domain.clone(), ..TlsReportDomain::default() });
        // The policy last applied is the one reported (a new id mid-day replaces it).
        entry.policy_type = policy.policy_type.to_string();
        entry.policy_string.clone_from(&policy.policy_string);
        entry.mx_host.clone_from(&policy.mx_host);
        let Some(f) = failure else {
            entry.successful_session_count += 1;
            return;
        };
        entry.failed_session_count += 1;
        let found = entry.failure_details.iter_mut().find(|d| {
            d.result_type == f.result_type
                && d.receiving_mx_hostname == f.mx_host
                && d.receiving_ip == f.ip
                && d.sending_mta_ip == f.sending_ip
        });
        match found {
            Some(detail) => detail.failed_session_count += 1,
            None => entry.failure_details.push(TlsFailureDetail {
                result_type: f.result_type.to_string(),
                receiving_mx_hostname: f.mx_host,
                receiving_ip: f.ip,
                sending_mta_ip: f.sending_ip,
                failed_session_count: 1,
                failure_reason_code: Some(f.reason),
            }),
        }
    }

    /// (date, domain) of the days before `today` whose report has not been decided.
    pub fn due(&self, today: &str) -> Vec<(String, String)> {
        self.days
            .iter()
            .filter(|(date, _)| date.as_str() < today)
            .flat_map(|(date, domains)| {
                domains.values().filter(|d| d.report.is_none()).map(move |d| (date.clone(), d.domain.clone()))
            })
            .collect()
    }

    /// Records what became of a day's report.
    pub fn decided(&mut self, date: &str, domain: &str, what: String) {
        if let Some(entry) = self.days.get_mut(date).and_then(|d| d.get_mut(domain)) {
            entry.report = Some(what);
        }
    }

    /// Forgets the days older than [`KEEP_DAYS`] before `today` (decided or not).
    pub fn prune(&mut self, today: &str) {
        while self.days.len() > KEEP_DAYS + 1 {
            match self.days.keys().next() {
                Some(oldest) if oldest.as_str() < today => {
                    let oldest = oldest.clone();
                    self.days.remove(&oldest);
                }
                _ => break,
            }
        }
    }

    /// One day as the admin API shows it (empty when nothing was counted).
    pub fn day(&self, date: &str) -> TlsReportDay {
        let domains = self.days.get(date).map(|d| d.values().cloned().collect()).unwrap_or_default();
        TlsReportDay { date: date.to_string(), domains }
    }

    /// Every day kept, newest first.
    pub fn all(&self) -> Vec<TlsReportDay> {
        self.days.keys().rev().map(|date| self.day(date)).collect()
    }
}

/// `YYYY-MM-DD` of a time, UTC.
pub fn date_of(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let date = time::OffsetDateTime::from_unix_timestamp(secs as i64).map_or(time::Date::MIN, |t| t.date());
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn policy(domain: &str) -> PolicySeen {
        PolicySeen {
            domain: domain.into(),
            policy_type: "sts",
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["*.mx.example".into()],
        }
    }

    fn failure(kind: &'static str, mx: &str) -> Option<Failure> {
        Some(Failure {
            result_type: kind,
            mx_host: mx.into(),
            ip: Some("192.0.2.1".into()),
            sending_ip: Some("198.51.100.7".into()),
            reason: "why".into(),
        })
    }

    #[test]
    fn sessions_add_up_per_day_domain_kind_and_host() {
        let mut days = Days::default();
        days.add("2026-12-07", &policy("a.test"), None);
        days.add("2026-12-07", &policy("a.test"), None);
        days.add("2026-12-07", &policy("a.test"), failure("starttls-not-supported", "mx1"));
        days.add("2026-12-07", &policy("a.test"), failure("starttls-not-supported", "mx1"));
        days.add("2026-12-07", &policy("a.test"), failure("certificate-expired", "mx1"));
        days.add("2026-12-07", &policy("b.test"), failure("starttls-not-supported", "mx2"));
        days.add("2026-12-08", &policy("a.test"), None);
        let a = &days.day("2026-12-07").domains[0];
        assert_eq!((a.domain.as_str(), a.successful_session_count, a.failed_session_count), ("a.test", 2, 3));
        let details: Vec<(&str, u64)> =
            a.failure_details.iter().map(|d| (d.result_type.as_str(), d.failed_session_count)).collect();
        assert_eq!(details, [("starttls-not-supported", 2), ("certificate-expired", 1)]);
        assert_eq!(days.day("2026-12-07").domains.len(), 2);
        assert_eq!(
            days.due("2026-12-08"),
            [("2026-12-07".into(), "a.test".into()), ("2026-12-07".into(), "b.test".into())]
        );
        days.decided("2026-12-07", "a.test", "sent".into());
        assert_eq!(days.due("2026-12-09").len(), 2, "b.test of the 7th and a.test of the 8th");
        assert!(days.due("2026-12-07").is_empty());
    }

    #[test]
    fn a_week_is_kept() {
        let mut days = Days::default();
        for d in 1..=12 {
            days.add(&format!("2026-12-{d:02}"), &policy("a.test"), None);
        }
        days.prune("2026-12-12");
        let kept: Vec<String> = days.all().into_iter().map(|d| d.date).collect();
        assert_eq!(kept.len(), KEEP_DAYS + 1);
        assert_eq!((kept[0].as_str(), kept[KEEP_DAYS].as_str()), ("2026-12-12", "2026-12-05"));
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of(UNIX_EPOCH), "1970-01-01");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_601_599); // 2026-12-06T23:59:59Z
        assert_eq!(date_of(t), "2026-12-06");
        assert_eq!(date_of(t + Duration::from_secs(1)), "2026-12-07");
    }
}
