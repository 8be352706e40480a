//! What a domain's policy means for one delivery attempt (RFC 8461 §4, §5): which MX
//! hosts may be used, what the connection must prove, and how a failure is told.
//! `enforce`: MX hosts the policy does not name are not used, and TLS with a certificate
//! that chains to a trusted CA and names the MX host is required; a failure is a
//! connection failure of the hop (Retry, `451 4.7.5 MTA-STS: ...` its reason), never
//! clear text.
//! `testing`: everything goes as without a policy, and what would have failed is logged
//! (tracing and the connectivity log).
use super::policy::{Mode, Policy};
use super::FetchFailure;
use crate::config::{MtaStsMode, SendConnector};
use crate::delivery::{CertificateCheck, ConnectOptions, DeliveryError, OutboundSession};
use crate::logs::ConnectivitySession;
use crate::routing::mx::HostAddress;
use std::sync::Arc;
use tracing::warn;

/// §5.1: never a permanent failure before the policy is looked up again.
use crate::delivery::POLICY_NOT_MET as STATUS;

/// The policy applied to one attempt; nothing at all without one.
#[derive(Debug, Clone, Default)]
pub struct Enforcement {
    applied: Option<Applied>,
    /// The domain publishes a policy that could not be had: nothing is enforced, and TLS
    /// reports count the failure (RFC 8460 §4.3.2.2).
    unavailable: Option<(String, FetchFailure)>,
}

#[derive(Debug, Clone)]
struct Applied {
    domain: String,
    policy: Arc<Policy>,
    /// `enforce` as published and honoured; else tested only.
    enforce: bool,
    /// What the MX host's certificate must pass.
    check: CertificateCheck,
}

impl Enforcement {
    /// No policy applies.
    pub fn none() -> Enforcement {
        Enforcement::default()
    }

    /// `policy` of `domain` as the connector's `mtaSts` setting applies it.
    pub fn new(domain: &str, policy: Arc<Policy>, connector: &SendConnector) -> Enforcement {
        let enforce = match (policy.mode, connector.mta_sts_or_default()) {
            (Mode::None, _) | (_, MtaStsMode::Disabled) => return Enforcement::none(),
            (Mode::Enforce, MtaStsMode::AsPublished) => true,
            _ => false,
        };
        let check = CertificateCheck::for_mta_sts(connector);
        Enforcement { applied: Some(Applied { domain: domain.to_string(), policy, enforce, check }), unavailable: None }
    }

    /// `domain` publishes a policy this server could not fetch (and has none cached).
    pub fn unavailable(domain: &str, failure: FetchFailure) -> Enforcement {
        Enforcement { applied: None, unavailable: Some((domain.to_string(), failure)) }
    }

    /// The domain whose published policy could not be had, and why (TLS reporting).
    pub fn fetch_failure(&self) -> Option<(&str, &FetchFailure)> {
        self.unavailable.as_ref().map(|(domain, failure)| (domain.as_str(), failure))
    }

    /// The domain and the policy that apply (`enforce` or `testing`), for TLS reporting.
    pub fn policy(&self) -> Option<(&str, &Policy)> {
        self.applied.as_ref().map(|a| (a.domain.as_str(), &*a.policy))
    }

    /// A policy applies and its failures fail the connection.
    pub fn enforced(&self) -> bool {
        self.applied.as_ref().is_some_and(|a| a.enforce)
    }

    /// §4.1: under `enforce` only the MX hosts the policy names are kept (none left is
    /// the attempt's failure, with its reason); under `testing` all are, and those it does
    /// not name are logged.
    pub fn select(&self, targets: Vec<HostAddress>, log: &ConnectivitySession) -> Result<Vec<HostAddress>, String> {
        let Some(applied) = &self.applied else { return Ok(targets) };
        let mode = if applied.enforce { "enforce" } else { "testing" };
        log.send(&format!("MTA-STS policy of {} ({mode}): mx {}", applied.domain, applied.policy.mx_list()));
        let mut outside: Vec<String> =
            targets.iter().filter(|t| !applied.policy.allows(&t.host)).map(|t| t.host.clone()).collect();
        outside.dedup();
        if outside.is_empty() {
            return Ok(targets);
        }
        if !applied.enforce {
            report(
                log,
                &format!(
                    "MTA-STS testing: {} not named by the policy of {} (mx {})",
                    outside.join(", "),
                    applied.domain,
                    applied.policy.mx_list()
                ),
            );
            return Ok(targets);
        }
        let kept: Vec<HostAddress> = targets.into_iter().filter(|t| applied.policy.allows(&t.host)).collect();
        if kept.is_empty() {
            return Err(format!(
                "{STATUS} MTA-STS: no MX host of {} is named by its policy (enforce; mx {}): {} not used",
                applied.domain,
                applied.policy.mx_list(),
                outside.join(", ")
            ));
        }
        log.send(&format!("MTA-STS: {} not used (not named by the policy)", outside.join(", ")));
        Ok(kept)
    }

    /// The options a connection needs: `enforce` requires TLS and the policy's check;
    /// `testing` keeps them and audits the session against the check.
    pub fn connect_options(&self, mut opts: ConnectOptions) -> ConnectOptions {
        match &self.applied {
            Some(applied) if applied.enforce => {
                opts.tls = crate::config::OutboundTls::Required;
                opts.certificate_check = applied.check.clone();
            }
            Some(applied) => opts.policy_audit = Some(applied.check.clone()),
            None => {}
        }
        opts
    }

    /// The reason a failed connection is given: a TLS failure under `enforce` says it is
    /// the policy's (`4.7.5 MTA-STS: ...`), so LastError, the connectivity log and a
    /// later NDR name it.
    pub fn explain(&self, error: &DeliveryError) -> String {
        match (&self.applied, error) {
            (Some(applied), DeliveryError::Tls { .. }) if applied.enforce => format!(
                "{STATUS} MTA-STS: {} requires TLS with a valid certificate for its MX hosts (policy mode enforce): \
                 {error}",
                applied.domain
            ),
            _ => error.to_string(),
        }
    }

    /// Under `testing`: logs what an open session would have failed (no STARTTLS, a
    /// certificate that does not pass); the session goes on.
    pub fn audit(&self, session: &OutboundSession, log: &ConnectivitySession) {
        let Some(applied) = &self.applied else { return };
        if let Some(shortfall) = session.policy_shortfall() {
            report(
                log,
                &format!(
                    "MTA-STS testing: {} fails the policy of {}: {}; delivering anyway",
                    session.remote(),
                    applied.domain,
                    shortfall.reason
                ),
            );
        }
    }
}

/// A policy failure that did not stop the delivery: a warning and a connectivity log line.
fn report(log: &ConnectivitySession, what: &str) {
    warn!(event = "MtaStsTestingFailure", "{what}");
    log.send(what);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AddressSpace, OutboundTls};
    use crate::delivery::{ResultType, TlsFailure};
    use crate::logs::ConnectivityLog;

    fn connector(mta_sts: Option<MtaStsMode>) -> SendConnector {
        SendConnector {
            name: "Internet".into(),
            address_spaces: vec![AddressSpace { domain: "*".into(), cost: None }],
            dns_routing: true,
            tls_certificate_authorities: Some("/etc/ca.pem".into()),
            mta_sts,
            ..SendConnector::default()
        }
    }

    fn policy(mode: &str) -> Arc<Policy> {
        let text = format!("version: STSv1\nmode: {mode}\nmx: mx1.example.com\nmx: *.mail.example.com\nmax_age: 60\n");
        Arc::new(Policy::parse(&text).unwrap())
    }

    fn targets(hosts: &[&str]) -> Vec<HostAddress> {
        hosts.iter().map(|h| HostAddress { host: h.to_string(), addr: "127.0.0.1:25".parse().unwrap() }).collect()
    }

    fn hosts(targets: &[HostAddress]) -> Vec<&str> {
        targets.iter().map(|t| t.host.as_str()).collect()
    }

    fn options() -> ConnectOptions {
        ConnectOptions {
            helo_name: "me.test".into(),
            tls: OutboundTls::Opportunistic,
            certificate_check: CertificateCheck::None,
            policy_audit: None,
            connect_timeout: std::time::Duration::from_secs(1),
            command_timeout: std::time::Duration::from_secs(1),
            tap: None,
        }
    }

    #[test]
    fn the_setting_decides_how_a_published_mode_applies() {
        let as_published = connector(None);
        assert!(Enforcement::new("example.com", policy("enforce"), &as_published).enforced());
        let testing = Enforcement::new("example.com", policy("testing"), &as_published);
        assert!(testing.applied.is_some() && !testing.enforced());
        assert!(Enforcement::new("example.com", policy("none"), &as_published).applied.is_none());
        let testing_only = connector(Some(MtaStsMode::TestingOnly));
        let downgraded = Enforcement::new("example.com", policy("enforce"), &testing_only);
        assert!(downgraded.applied.is_some() && !downgraded.enforced());
        assert!(Enforcement::new("example.com", policy("enforce"), &connector(Some(MtaStsMode::Disabled)))
            .applied
            .is_none());
    }

    #[test]
    fn enforce_keeps_the_named_mx_hosts_and_requires_a_verified_name() {
        let log = ConnectivityLog::disabled().session("SMTP", "example.com");
        let sts = Enforcement::new("example.com", policy("enforce"), &connector(None));
        let kept = sts.select(targets(&["mx0.example.com", "mx1.example.com", "a.mail.example.com"]), &log).unwrap();
        assert_eq!(hosts(&kept), ["mx1.example.com", "a.mail.example.com"]);
        let refused = sts.select(targets(&["mx0.example.com", "b.a.mail.example.com"]), &log).unwrap_err();
        assert!(refused.starts_with("451 4.7.5 MTA-STS: no MX host of example.com"), "{refused}");
        assert!(refused.contains("mx0.example.com, b.a.mail.example.com not used"), "{refused}");

        let opts = sts.connect_options(options());
        assert_eq!(opts.tls, OutboundTls::Required);
        assert_eq!(
            opts.certificate_check,
            CertificateCheck::Domain { roots: Some("/etc/ca.pem".into()), domain: None }
        );
        let tls = DeliveryError::Tls {
            addr: "mx1.example.com [127.0.0.1:25]".into(),
            failure: TlsFailure::new(ResultType::CertificateHostMismatch, "bad name"),
            local: None,
        };
        let reason = sts.explain(&tls);
        assert!(reason.starts_with("451 4.7.5 MTA-STS: example.com requires TLS"), "{reason}");
        assert!(reason.ends_with("TLS with mx1.example.com [127.0.0.1:25] failed: bad name"), "{reason}");
        let refused = DeliveryError::Connect { addr: "x".into(), reason: "refused".into() };
        assert_eq!(sts.explain(&refused), refused.to_string());
    }

    #[test]
    fn testing_changes_nothing_but_audits() {
        let log = ConnectivityLog::disabled().session("SMTP", "example.com");
        let sts = Enforcement::new("example.com", policy("testing"), &connector(None));
        let all = sts.select(targets(&["mx0.example.com", "mx1.example.com"]), &log).unwrap();
        assert_eq!(hosts(&all), ["mx0.example.com", "mx1.example.com"]);
        let opts = sts.connect_options(options());
        assert_eq!((opts.tls, opts.certificate_check.clone()), (OutboundTls::Opportunistic, CertificateCheck::None));
        assert!(matches!(opts.policy_audit, Some(CertificateCheck::Domain { .. })));
        let tls = DeliveryError::Tls {
            addr: "x".into(),
            failure: TlsFailure::new(ResultType::CertificateHostMismatch, "bad name"),
            local: None,
        };
        assert_eq!(sts.explain(&tls), tls.to_string());
    }

    #[test]
    fn a_connector_that_checks_names_keeps_its_check() {
        let mut own = connector(None);
        own.tls = OutboundTls::Required;
        own.tls_auth_level = Some(crate::config::TlsAuthLevel::DomainValidation);
        own.tls_domain = Some("mx.hosting.test".into());
        let opts = Enforcement::new("example.com", policy("enforce"), &own).connect_options(options());
        assert_eq!(opts.certificate_check, CertificateCheck::from_connector(&own));
    }
}
