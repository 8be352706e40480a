//! SMTP TLS Reporting (RFC 8460): what became of each outbound TLS session to a domain
//! with an MTA-STS policy, counted per UTC day and policy domain, and once the day is
//! over a report mailed to the domain's `rua` addresses. docs/design.md §5 has the
//! behaviour, RELIABILITY.md what is proven.
//!
//! - [`record`]: the `_smtp._tls` TXT record, parsed strictly (pure)
//! - [`result`]: the §4.3 result-type of a failure (pure)
//! - [`aggregate`]: the counts per day and domain (pure)
//! - [`report`]: the §4 JSON and the §5.3 mail (pure)
//! - [`post`]: the report POSTed to an `https:` rua
//!
//! [`TlsReports`] owns the counts and their file; the server creates one and the queue
//! side reaches it through its `RuntimeConfig`, as `MtaSts`.
pub mod aggregate;
pub mod post;
pub mod record;
pub mod report;
pub mod result;

pub use aggregate::{date_of, Days, Failure, PolicySeen};
pub use record::{HttpsRua, Record, RecordError, Rua};

use super::dane::{HostPolicy, Plan};
use super::mta_sts::{Enforcement, FetchFailureKind};
use crate::api::{TlsReportDay, TlsReportDomain};
use crate::clock::SharedClock;
use crate::routing::mx::HostAddress;
use result::{ResultType, TlsFailure};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// The counts' file in the queue directory (replaced whole, as the MTA-STS cache).
pub const FILE: &str = "tls-reports.json";

/// The policy a session is reported under (RFC 8460 §4.4), and a failure of the policy
/// itself (an MTA-STS policy published and not fetched: §4.3.2.2) that fails every
/// session under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    seen: PolicySeen,
    policy_failure: Option<TlsFailure>,
}

impl Reported {
    /// Under the MTA-STS policy applied (`enforce` or `testing`), or under the one the
    /// domain publishes and this server could not fetch; None without either.
    pub fn sts(sts: &Enforcement) -> Option<Reported> {
        if let Some((domain, policy)) = sts.policy() {
            let seen = PolicySeen {
                domain: domain.to_string(),
                policy_type: "sts",
                policy_string: policy.render().lines().map(str::to_string).collect(),
                mx_host: policy.mx.iter().map(ToString::to_string).collect(),
            };
            return Some(Reported { seen, policy_failure: None });
        }
        let (domain, failure) = sts.fetch_failure()?;
        let kind = match failure.kind {
            FetchFailureKind::Fetch => ResultType::StsPolicyFetchError,
            FetchFailureKind::Invalid => ResultType::StsPolicyInvalid,
            FetchFailureKind::WebPki => ResultType::StsWebpkiInvalid,
        };
        let seen =
            PolicySeen { domain: domain.to_string(), policy_type: "sts", policy_string: vec![], mx_host: vec![] };
        Some(Reported { seen, policy_failure: Some(TlsFailure::new(kind, failure.reason.clone())) })
    }

    /// Under DANE for `host` (policy-type `tlsa`, its usable records as policy-string);
    /// None where DANE does not apply to it.
    pub fn dane(plan: &Plan, host: &str) -> Option<Reported> {
        let records = match plan.host(host) {
            HostPolicy::NotApplicable => return None,
            HostPolicy::Authenticate(check) => check.records.iter().map(ToString::to_string).collect(),
            HostPolicy::TlsRequired { .. } | HostPolicy::Failed(_) => Vec::new(),
        };
        let seen = PolicySeen {
            domain: plan.domain().to_string(),
            policy_type: "tlsa",
            policy_string: records,
            mx_host: vec![host.to_string()],
        };
        Some(Reported { seen, policy_failure: None })
    }

    /// No policy applies to `domain`, which asks for reports (`_smtp._tls`) all the same.
    pub fn no_policy(domain: &str) -> Reported {
        let seen = PolicySeen {
            domain: domain.to_string(),
            policy_type: "no-policy-found",
            policy_string: vec![],
            mx_host: vec![],
        };
        Reported { seen, policy_failure: None }
    }
}

/// The TLS session counts of this server.
pub struct TlsReports {
    clock: SharedClock,
    path: PathBuf,
    days: Mutex<Days>,
    /// Counts changed since the file was last written.
    dirty: AtomicBool,
    /// Writes of the file, one at a time and in order.
    writing: tokio::sync::Mutex<()>,
}

impl TlsReports {
    /// The counts kept in `queue_dir` (none when there are none; a file that cannot be
    /// read costs its counts, not the start).
    pub fn open(queue_dir: &Path, clock: SharedClock) -> TlsReports {
        let path = queue_dir.join(FILE);
        let days = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "TLS reporting: the counts file cannot be read; starting empty");
                Days::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Days::default(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "TLS reporting: the counts file cannot be read; starting empty");
                Days::default()
            }
        };
        TlsReports { clock, path, days: Mutex::new(days), dirty: AtomicBool::new(false), writing: Default::default() }
    }

    /// Counts one TLS session attempt to `target` under `under`: `failure` says why it
    /// failed (or, open, fell short of the policy); None is a success. A failure of the
    /// policy itself (one published and not fetched) fails every session under it.
    /// Returns (policy-type, result) for the metric.
    pub fn session(
        self: &Arc<Self>,
        under: &Reported,
        target: &HostAddress,
        local_ip: Option<IpAddr>,
        failure: Option<&TlsFailure>,
    ) -> (&'static str, &'static str) {
        let failure = under.policy_failure.as_ref().or(failure).map(|f| Failure {
            result_type: f.kind.as_str(),
            mx_host: target.host.clone(),
            ip: Some(target.addr.ip().to_string()),
            sending_ip: local_ip.map(|ip| ip.to_string()),
            reason: f.reason.clone(),
        });
        let result = failure.as_ref().map_or("success", |f| f.result_type);
        let today = date_of(self.clock.now());
        self.lock().add(&today, &under.seen, failure);
        self.changed();
        (under.seen.policy_type, result)
    }

    /// One day (`YYYY-MM-DD`), today when None.
    pub fn day(&self, date: Option<&str>) -> TlsReportDay {
        let today = date_of(self.clock.now());
        self.lock().day(date.unwrap_or(&today))
    }

    /// Every day kept, newest first.
    pub fn all(&self) -> Vec<TlsReportDay> {
        self.lock().all()
    }

    /// (date, entry) of the finished days whose report is not decided yet.
    pub fn due(&self) -> Vec<(String, TlsReportDomain)> {
        let today = date_of(self.clock.now());
        let days = self.lock();
        days.due(&today)
            .into_iter()
            .filter_map(|(date, domain)| {
                let entry = days.days.get(&date)?.get(&domain)?.clone();
                Some((date, entry))
            })
            .collect()
    }

    /// Records what became of a day's report, and forgets days past the week kept.
    pub fn decided(self: &Arc<Self>, date: &str, domain: &str, what: String) {
        let today = date_of(self.clock.now());
        {
            let mut days = self.lock();
            days.decided(date, domain, what);
            days.prune(&today);
        }
        self.changed();
    }

    /// Writes the file soon (off the async threads); changes made while a write runs
    /// are written by the next one.
    fn changed(self: &Arc<Self>) {
        self.dirty.store(true, Ordering::SeqCst);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            runtime.spawn(async move { me.save().await });
        }
    }

    /// Writes the counts if they changed; a failure is logged and costs only their
    /// survival of a restart.
    pub async fn save(&self) {
        let _turn = self.writing.lock().await;
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let bytes = match serde_json::to_vec(&*self.lock()) {
            Ok(bytes) => bytes,
            Err(e) => return warn!(error = %e, "TLS reporting: cannot encode the counts"),
        };
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || crate::durable_file::replace(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(path = %self.path.display(), error = %e, "TLS reporting: cannot write the counts"),
            Err(e) => warn!(error = %e, "TLS reporting: writing the counts failed"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Days> {
        self.days.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{AddressSpace, MtaStsMode, SendConnector};
    use crate::delivery::mta_sts::Policy;
    use std::time::{Duration, UNIX_EPOCH};

    fn sts(mode: &str) -> Enforcement {
        let connector = SendConnector {
            name: "Internet".into(),
            address_spaces: vec![AddressSpace { domain: "*".into(), cost: None }],
            dns_routing: true,
            mta_sts: Some(MtaStsMode::AsPublished),
            ..SendConnector::default()
        };
        let text = format!("version: STSv1\nmode: {mode}\nmx: mx1.example.com\nmax_age: 60\n");
        Enforcement::new("example.com", Arc::new(Policy::parse(&text).unwrap()), &connector)
    }

    fn target() -> HostAddress {
        HostAddress { host: "mx1.example.com".into(), addr: "192.0.2.1:25".parse().unwrap() }
    }

    #[tokio::test]
    async fn sessions_under_a_policy_are_counted_and_kept_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // 2026-12-07T10:00:00Z
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_796_637_600));
        let reports = Arc::new(TlsReports::open(dir.path(), Arc::new(clock.clone())));
        assert_eq!(Reported::sts(&Enforcement::none()), None, "no policy, not counted");
        let local = Some("198.51.100.7".parse().unwrap());
        let enforce = Reported::sts(&sts("enforce")).unwrap();
        assert_eq!(reports.session(&enforce, &target(), local, None), ("sts", "success"));
        let testing = Reported::sts(&sts("testing")).unwrap();
        let shortfall = TlsFailure::new(ResultType::StarttlsNotSupported, "the peer does not offer STARTTLS");
        assert_eq!(reports.session(&testing, &target(), local, Some(&shortfall)), ("sts", "starttls-not-supported"));
        let untrusted = TlsFailure::new(ResultType::CertificateNotTrusted, "invalid peer certificate: UnknownIssuer");
        assert_eq!(reports.session(&enforce, &target(), local, Some(&untrusted)), ("sts", "certificate-not-trusted"));

        let today = reports.day(None);
        assert_eq!(today.date, "2026-12-07");
        let entry = &today.domains[0];
        assert_eq!((entry.successful_session_count, entry.failed_session_count), (1, 2));
        assert_eq!(entry.failure_details[0].receiving_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(entry.failure_details[0].sending_mta_ip.as_deref(), Some("198.51.100.7"));
        assert!(reports.due().is_empty(), "the day is not over");

        reports.dirty.store(true, Ordering::SeqCst);
        reports.save().await;
        let reopened = Arc::new(TlsReports::open(dir.path(), Arc::new(clock.clone())));
        assert_eq!(reopened.day(None), today, "a restart keeps the day's counts");
        clock.advance(Duration::from_secs(86_400));
        let due = reopened.due();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0.as_str(), due[0].1.domain.as_str()), ("2026-12-07", "example.com"));
        reopened.decided("2026-12-07", "example.com", "sent to a@example.com".into());
        assert!(reopened.due().is_empty());

        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let damaged = TlsReports::open(dir.path(), Arc::new(clock));
        assert!(damaged.all().is_empty(), "a damaged file costs its counts, not the start");
    }

    #[test]
    fn a_policy_not_fetched_fails_its_sessions_and_no_policy_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_796_637_600));
        let reports = Arc::new(TlsReports::open(dir.path(), Arc::new(clock)));
        let kinds = [
            (FetchFailureKind::Fetch, "sts-policy-fetch-error"),
            (FetchFailureKind::Invalid, "sts-policy-invalid"),
            (FetchFailureKind::WebPki, "sts-webpki-invalid"),
        ];
        for (kind, want) in kinds {
            let failure = crate::delivery::mta_sts::FetchFailure { kind, reason: format!("{want} here") };
            let under = Reported::sts(&Enforcement::unavailable("broken.example", failure)).unwrap();
            // Even a session that went well is a failure of the policy.
            assert_eq!(reports.session(&under, &target(), None, None), ("sts", want));
        }
        let under = Reported::no_policy("plain.example");
        assert_eq!(reports.session(&under, &target(), None, None), ("no-policy-found", "success"));
        let clear = TlsFailure::new(ResultType::StarttlsNotSupported, "the peer does not offer STARTTLS");
        assert_eq!(
            reports.session(&under, &target(), None, Some(&clear)),
            ("no-policy-found", "starttls-not-supported")
        );

        let day = reports.day(None);
        let broken = day.domains.iter().find(|d| d.domain == "broken.example").unwrap();
        assert_eq!((broken.policy_type.as_str(), broken.failed_session_count), ("sts", 3));
        assert!(broken.policy_string.is_empty());
        assert_eq!(broken.failure_details[2].failure_reason_code.as_deref(), Some("sts-webpki-invalid here"));
        let plain = day.domains.iter().find(|d| d.domain == "plain.example").unwrap();
        assert_eq!(plain.policy_type, "no-policy-found");
        assert_eq!((plain.successful_session_count, plain.failed_session_count), (1, 1));
    }
}
