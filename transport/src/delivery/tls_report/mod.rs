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

use super::mta_sts::Enforcement;
use super::DeliveryError;
use crate::api::{TlsReportDay, TlsReportDomain};
use crate::clock::SharedClock;
use crate::routing::mx::Target;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// The counts' file in the queue directory (replaced whole, as the MTA-STS cache).
pub const FILE: &str = "tls-reports.json";

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

    /// Counts a TLS session attempt to `target` under `sts` (nothing without a policy):
    /// `Ok(shortfall)` an open session (a success unless `testing` found a shortfall),
    /// `Err` a failed connection (only TLS failures count). Returns the metric's result.
    pub fn session(
        self: &Arc<Self>,
        sts: &Enforcement,
        target: &Target,
        outcome: Result<Option<&str>, &DeliveryError>,
    ) -> Option<&'static str> {
        let (domain, policy) = sts.policy()?;
        let reason = match outcome {
            Ok(None) => None,
            Ok(Some(shortfall)) => Some(shortfall.to_string()),
            Err(DeliveryError::Tls { reason, .. }) => Some(reason.clone()),
            Err(_) => return None,
        };
        let failure = reason.map(|reason| Failure {
            result_type: result::classify(&reason).as_str(),
            mx_host: target.host.clone(),
            ip: Some(target.addr.ip().to_string()),
            reason,
        });
        let result = failure.as_ref().map_or("success", |f| f.result_type);
        let seen = PolicySeen {
            domain: domain.to_string(),
            policy_string: policy.render().lines().map(str::to_string).collect(),
            mx_host: policy.mx.iter().map(ToString::to_string).collect(),
        };
        let today = date_of(self.clock.now());
        self.lock().add(&today, &seen, failure);
        self.changed();
        Some(result)
    }

    /// Counts a TLS session to `target` under DANE (RFC 8460 policy-type `tlsa`, the
    /// host's records as policy-string): `Ok` authenticated, `Err` why it failed (a TLS
    /// failure, or DNSSEC lookups that failed). Returns the metric's result.
    pub fn dane_session(
        self: &Arc<Self>,
        plan: &super::dane::Plan,
        target: &Target,
        outcome: Result<(), &str>,
    ) -> Option<&'static str> {
        use super::dane::HostPolicy;
        let records = match plan.host(&target.host) {
            HostPolicy::NotApplicable => return None,
            HostPolicy::Authenticate(check) => check.records.iter().map(ToString::to_string).collect(),
            HostPolicy::TlsRequired { .. } | HostPolicy::Failed(_) => Vec::new(),
        };
        let failure = outcome.err().map(|reason| Failure {
            result_type: result::classify(reason).as_str(),
            mx_host: target.host.clone(),
            ip: Some(target.addr.ip().to_string()),
            reason: reason.to_string(),
        });
        let result = failure.as_ref().map_or("success", |f| f.result_type);
        let seen = PolicySeen {
            domain: plan.domain().to_string(),
            policy_string: records,
            mx_host: vec![target.host.clone()],
        };
        let today = date_of(self.clock.now());
        {
            let mut days = self.lock();
            days.add(&today, &seen, failure);
            // The policy last applied is the one reported, as for a new MTA-STS id.
            if let Some(entry) = days.days.get_mut(&today).and_then(|d| d.get_mut(plan.domain())) {
                entry.policy_type = "tlsa".into();
            }
        }
        self.changed();
        Some(result)
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
        let written = tokio::task::spawn_blocking(move || super::mta_sts::write_atomically(&path, &bytes)).await;
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
    use crate::config::{AddressSpace, MtaStsMode, OutboundTls, SendConnector};
    use crate::delivery::mta_sts::Policy;
    use std::time::{Duration, UNIX_EPOCH};

    fn sts(mode: &str) -> Enforcement {
        let connector = SendConnector {
            name: "Internet".into(),
            address_spaces: vec![AddressSpace { domain: "*".into(), cost: None }],
            smart_hosts: vec![],
            dns_routing: true,
            port: None,
            tls: OutboundTls::Opportunistic,
            tls_auth_level: None,
            tls_domain: None,
            tls_certificate_authorities: None,
            mta_sts: Some(MtaStsMode::AsPublished),
            dane: None,
            connection_timeout: None,
            connection_inactivity_timeout: None,
            max_message_size: None,
            max_concurrent_connections: None,
            protocol_logging: false,
        };
        let text = format!("version: STSv1\nmode: {mode}\nmx: mx1.example.com\nmax_age: 60\n");
        Enforcement::new("example.com", Arc::new(Policy::parse(&text).unwrap()), &connector)
    }

    fn target() -> Target {
        Target { host: "mx1.example.com".into(), addr: "192.0.2.1:25".parse().unwrap() }
    }

    #[tokio::test]
    async fn sessions_under_a_policy_are_counted_and_kept_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // 2026-12-07T10:00:00Z
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_796_637_600));
        let reports = Arc::new(TlsReports::open(dir.path(), Arc::new(clock.clone())));
        assert_eq!(reports.session(&Enforcement::none(), &target(), Ok(None)), None, "no policy, not counted");
        assert_eq!(reports.session(&sts("enforce"), &target(), Ok(None)), Some("success"));
        let shortfall = Some("the peer does not offer STARTTLS");
        assert_eq!(reports.session(&sts("testing"), &target(), Ok(shortfall)), Some("starttls-not-supported"));
        let refused = DeliveryError::Connect { addr: "x".into(), reason: "refused".into() };
        assert_eq!(reports.session(&sts("enforce"), &target(), Err(&refused)), None, "not a TLS session");
        let tls = DeliveryError::Tls { addr: "x".into(), reason: "invalid peer certificate: UnknownIssuer".into() };
        assert_eq!(reports.session(&sts("enforce"), &target(), Err(&tls)), Some("certificate-not-trusted"));

        let today = reports.day(None);
        assert_eq!(today.date, "2026-12-07");
        let entry = &today.domains[0];
        assert_eq!((entry.successful_session_count, entry.failed_session_count), (1, 2));
        assert_eq!(entry.failure_details[0].receiving_ip.as_deref(), Some("192.0.2.1"));
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
}
