//! The daily SMTP TLS reports (RFC 8460 §5): once a UTC day is over on the server's
//! clock, each policy domain counted that day gets its report by mail, through this
//! server's own queue as a DSN does, to the `mailto:` rua of its `_smtp._tls` record, and
//! is POSTed to its `https:` rua; without a record the report is kept for the admin API
//! only.
use super::QueueManager;
use crate::api::{TlsReportDomain, TrackingEvent};
use crate::clock::to_millis;
use crate::delivery::tls_report::{post, record, report, RecordError};
use crate::envelope::{Address, Envelope, Notify, Origin, Recipient, Source};
use crate::logs::TrackingSource;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn, Instrument};

/// Reports go this long after midnight (late sessions of the day are counted by then).
const AFTER_MIDNIGHT: Duration = Duration::from_secs(60);
/// A report that could not be decided (a DNS failure, a full disk) is tried again after this.
const RETRY: Duration = Duration::from_secs(3600);

impl QueueManager {
    /// Sends the reports that are due, then sleeps until the next day ends (or an hour
    /// when one could not be decided).
    pub async fn send_tls_reports_forever(self) {
        loop {
            let pending = self.send_tls_reports().instrument(tracing::info_span!("tls_report")).await;
            let now = self.inner.clock.now();
            let wake = if pending { now + RETRY } else { next_midnight(now) + AFTER_MIDNIGHT };
            self.inner.clock.sleep_until(wake).await;
        }
    }

    /// Sends (or decides not to send) each finished day's report; true when one is left
    /// for later.
    pub async fn send_tls_reports(&self) -> bool {
        let config = self.config();
        let reports = config.tls_reports.clone();
        let mut pending = false;
        for (date, entry) in reports.due() {
            let outcome = if config.org.tls_reporting() {
                self.send_tls_report(&date, &entry).await
            } else {
                Ok("not sent: tlsReportingEnabled is false".to_string())
            };
            match outcome {
                Ok(what) => {
                    info!(%date, domain = %entry.domain, "TLS report: {what}");
                    reports.decided(&date, &entry.domain, what);
                }
                Err(e) => {
                    warn!(%date, domain = %entry.domain, error = %e, "TLS report: not sent now; trying again later");
                    pending = true;
                }
            }
        }
        pending
    }

    /// One report: `Ok` says what became of it, `Err` why it must be tried again (nothing
    /// received: a DNS failure, the mail not stored, every POST failed).
    async fn send_tls_report(&self, date: &str, entry: &TlsReportDomain) -> Result<String, String> {
        let config = self.config();
        let texts = config.resolver.txt(&format!("_smtp._tls.{}", entry.domain)).await.map_err(|e| e.to_string())?;
        let record = match record::discover(&texts) {
            Ok(record) => record,
            Err(RecordError::None(_)) => return Ok("not sent: no TLSRPT record".to_string()),
            Err(e) => return Ok(format!("not sent: {e}")),
        };
        let organization = config.org.tls_report_organization_name.clone().unwrap_or_else(|| config.fqdn.clone());
        let input =
            report::ReportInput { organization: &organization, contact: config.postmaster.as_str(), date, entry };
        let mut received = Vec::new();
        let to = record.mailto();
        if !to.is_empty() {
            let message_id = crate::dsn::new_message_id(&config.fqdn);
            let now = self.inner.clock.now();
            let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let bytes = report::mail(&input, &to, &message_id, unix);
            self.submit_tls_report(&to, bytes, &message_id).await.map_err(|e| e.to_string())?;
            received.push(format!("sent to {}", to.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")));
        }
        let mut failed = Vec::new();
        let https = record.https();
        if !https.is_empty() {
            let body = report::gzipped_json(&input);
            // Trusted as the policy of the domain is: with the CAs of the connector that routes to it.
            let roots = self.connector_roots(&entry.domain);
            for rua in https {
                match post::post(&config.resolver, rua, roots.as_deref(), body.clone()).await {
                    Ok(()) => received.push(format!("posted to {}", rua.uri)),
                    Err(e) => failed.push(format!("posting to {} failed: {e}", rua.uri)),
                }
            }
        }
        if received.is_empty() {
            return Err(failed.join("; "));
        }
        // Once one destination has it, the others are not tried again (no second mail).
        Ok(received.into_iter().chain(failed).collect::<Vec<_>>().join("; "))
    }

    /// Stores a report as a new message from `<>` (no bounce of a report comes back) to
    /// `to`, tracks it as the server's own message and queues it.
    async fn submit_tls_report(
        &self,
        to: &[&Address],
        bytes: Vec<u8>,
        message_id: &str,
    ) -> Result<(), crate::queue::StoreError> {
        let config = self.config();
        let id = self.inner.store.next_id();
        let recipients = to
            .iter()
            .map(|a| {
                let mut r = Recipient::new((*a).clone());
                r.notify = Some(Notify { never: true, ..Notify::default() });
                r
            })
            .collect();
        let envelope = Envelope {
            id,
            mail_from: None,
            recipients,
            size: bytes.len() as u64,
            body_8bit: false,
            binary_mime: false,
            smtputf8: to.iter().any(|a| !a.is_ascii()),
            requiretls: false,
            ret: None,
            envid: None,
            arrival_ms: to_millis(self.inner.clock.now()),
            // A message the server generates itself, as its DSNs.
            origin: Origin {
                connector: "TLSRPT".into(),
                client_ip: None,
                helo: config.fqdn.as_str().into(),
                tls: false,
                source: Source::Dsn,
            },
            subject: None,
            internet_message_id: Some(format!("<{message_id}>").into()),
            state: Default::default(),
        };
        self.inner.store.insert(&envelope, &bytes).await?;
        self.tracking()
            .record(TrackingEvent::Dsn, TrackingSource::Dsn, &envelope)
            .all_recipients()
            .message_info("tlsrpt")
            .write();
        self.enqueue(envelope);
        Ok(())
    }
}

/// The next 00:00:00 UTC after `now`.
fn next_midnight(now: SystemTime) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs((secs / 86_400 + 1) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_day_starts_at_utc_midnight() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_601_599);
        assert_eq!(next_midnight(t), UNIX_EPOCH + Duration::from_secs(1_796_601_600));
        assert_eq!(next_midnight(t + Duration::from_secs(1)), UNIX_EPOCH + Duration::from_secs(1_796_688_000));
    }
}
