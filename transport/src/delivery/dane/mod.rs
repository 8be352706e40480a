//! DANE for SMTP (RFC 7672) on DNS-routed send connectors: an MX host that publishes
//! TLSA records `_<port>._tcp.<host>` in a DNSSEC-signed zone gets mail only over TLS
//! with a certificate those records match. docs/design.md §5 has the behaviour,
//! RELIABILITY.md what is proven.
//!
//! - [`tlsa`]: the records, which are usable, what matches (pure)
//! - [`verify`]: the certificate check of a connection (pure)
//! - [`decide`]: what the DNS answers mean for one MX host (pure)
//!
//! [`Dane`] owns the validating resolver (crate::routing::dnssec) and makes the [`Plan`]
//! of one delivery attempt; the worker applies it host by host, before MTA-STS (RFC 8461
//! §2: DANE takes precedence where it applies).
pub mod tlsa;
pub mod verify;

pub use tlsa::Tlsa;
pub use verify::DaneCheck;

use crate::config::{DaneMode, DnsSettings, SendConnector};
use crate::delivery::{DeliveryError, ResultType, TlsFailure};
use crate::routing::dnssec::Secured;
use crate::routing::mx::{HostAddress, MxError, Resolver};
use crate::routing::{DeliveryType, NextHop};
use hickory_resolver::proto::rr::{RData, RecordType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, warn, Instrument};

use crate::delivery::POLICY_NOT_MET as STATUS;

/// What DANE asks of the connections to one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// No DANE (an unsigned zone, no TLSA record, DANE off): the connector's level and
    /// MTA-STS apply.
    NotApplicable,
    /// Signed TLSA records, none usable in SMTP (RFC 7672 §3.1.3): TLS is a must, any
    /// certificate will do.
    TlsRequired { tlsa_name: String },
    /// TLS with a certificate the records match.
    Authenticate(Arc<DaneCheck>),
    /// The DNSSEC lookups gave no answer that can be trusted: the host is not used now.
    Failed(String),
}

impl HostPolicy {
    /// DANE decides for this host (MTA-STS does not).
    pub fn applies(&self) -> bool {
        !matches!(self, HostPolicy::NotApplicable)
    }
}

/// What one validated lookup of a host's TLSA records gave, with its address records'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAnswers {
    pub host: String,
    pub tlsa_name: String,
    pub addresses: Secured,
    /// None when the addresses did not allow a TLSA lookup (RFC 7672 §2.2.2).
    pub tlsa: Option<Secured>,
}

/// RFC 7672 §2.1–§2.2: DANE applies to a host whose address and TLSA records are both
/// secure; unsigned answers mean no DANE; anything bogus or unanswered fails the host
/// (never clear text). TLSA records that come unsigned for a host whose addresses are
/// signed fail it too: their signatures were stripped on the way (hickory 0.25 calls
/// such an answer unsigned, not bogus), and an unsigned TLSA zone below a signed host
/// name is a configuration no sender should guess about. `names`: the reference names of
/// DANE-TA.
pub fn decide(answers: &HostAnswers, names: Vec<String>) -> HostPolicy {
    match &answers.addresses {
        Secured::Failed(reason) => return HostPolicy::Failed(reason.clone()),
        Secured::Records { secure: true, .. } => {}
        Secured::Records { secure: false, .. } | Secured::Nothing => return HostPolicy::NotApplicable,
    }
    let records = match &answers.tlsa {
        None | Some(Secured::Nothing) => return HostPolicy::NotApplicable,
        Some(Secured::Records { secure: false, .. }) => {
            return HostPolicy::Failed(format!(
                "the TLSA records {} come without valid signatures while the addresses of {} are signed",
                answers.tlsa_name, answers.host
            ))
        }
        Some(Secured::Failed(reason)) => return HostPolicy::Failed(reason.clone()),
        Some(Secured::Records { secure: true, data }) => data,
    };
    let usable: Vec<Tlsa> = records.iter().filter_map(tlsa_of).filter(Tlsa::usable).collect();
    if usable.is_empty() {
        return HostPolicy::TlsRequired { tlsa_name: answers.tlsa_name.clone() };
    }
    HostPolicy::Authenticate(Arc::new(DaneCheck { tlsa_name: answers.tlsa_name.clone(), records: usable, names }))
}

/// The host names of MX records, in the targets' form (lower case, no trailing dot).
fn exchanges(data: &[RData]) -> Vec<String> {
    data.iter()
        .filter_map(|d| match d {
            RData::MX(mx) => Some(mx.exchange().to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn tlsa_of(data: &RData) -> Option<Tlsa> {
    let RData::TLSA(t) = data else { return None };
    Some(Tlsa {
        usage: u8::from(t.cert_usage()),
        selector: u8::from(t.selector()),
        matching: u8::from(t.matching()),
        data: t.cert_data().to_vec(),
    })
}

/// DANE's part of one delivery attempt: a policy per MX host.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The recipient domain (the TLS report's policy-domain).
    domain: String,
    hosts: HashMap<String, HostPolicy>,
    /// The MX hosts of a signed MX record set: the only ones that may be used (RFC 7672
    /// §2.2.1), whatever the resolver that listed the targets answered.
    signed_mx: Option<Vec<String>>,
    /// Why DANE could not be applied at all, for the connectivity log.
    note: Option<String>,
}

impl Plan {
    /// DANE does not apply to this hop.
    pub fn none() -> Plan {
        Plan::default()
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The targets that may be used: with a signed MX record set only its hosts (an
    /// attacker who answered the plain lookup cannot add a host of his own); `Err` when
    /// none is left.
    pub fn select(&self, targets: Vec<HostAddress>) -> Result<Vec<HostAddress>, String> {
        let Some(signed) = &self.signed_mx else { return Ok(targets) };
        let (kept, dropped): (Vec<HostAddress>, Vec<HostAddress>) =
            targets.into_iter().partition(|t| signed.contains(&t.host));
        if kept.is_empty() {
            let dropped: Vec<&str> = dropped.iter().map(|t| t.host.as_str()).collect();
            return Err(format!(
                "{STATUS} DANE: the signed MX records of {} name none of {} ({})",
                self.domain,
                dropped.join(", "),
                signed.join(", ")
            ));
        }
        Ok(kept)
    }

    /// Why DANE was off for this attempt although the connector has it on.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The policy of an MX host (none for hosts not looked up).
    pub fn host(&self, host: &str) -> &HostPolicy {
        self.hosts.get(host).unwrap_or(&HostPolicy::NotApplicable)
    }

    /// The reason a connection to `host` failed under DANE: `4.7.5 DANE: ...`, so
    /// LastError, the connectivity log and a later NDR name it.
    pub fn explain(&self, host: &str, error: &DeliveryError) -> String {
        match (self.host(host), error) {
            (HostPolicy::Authenticate(check), DeliveryError::Tls { .. }) => format!(
                "{STATUS} DANE: {host} publishes TLSA records ({}), so mail goes to it only over TLS with a \
                 certificate they match: {error}",
                check.tlsa_name
            ),
            (HostPolicy::TlsRequired { tlsa_name }, DeliveryError::Tls { .. }) => {
                format!("{STATUS} DANE: {host} publishes TLSA records ({tlsa_name}), so TLS is required: {error}")
            }
            _ => error.to_string(),
        }
    }

    /// The reason a host whose lookups failed is not used.
    pub fn refusal(&self, host: &str) -> Option<TlsFailure> {
        match self.host(host) {
            HostPolicy::Failed(reason) => Some(TlsFailure::new(
                ResultType::DnssecInvalid,
                format!("{STATUS} DANE: the DNSSEC lookups for {host} failed, so it is not used now: {reason}"),
            )),
            _ => None,
        }
    }
}

/// DANE's lookups: a DNSSEC-validating resolver (the configured nameservers, the
/// configured trust anchors or the IANA root's).
#[derive(Clone)]
pub struct Dane {
    resolver: Resolver,
    /// The zones whose keys are the trust anchors (`.` for the IANA root's).
    anchors: Vec<String>,
    /// DANE being off was told (a warning once).
    warned: Arc<AtomicBool>,
    /// An anchor zone validated once: from then on a failure to validate it is an attack
    /// or an outage to wait out, not a resolver without DNSSEC.
    validated: Arc<AtomicBool>,
}

/// What the anchor zones' DNSKEY lookups say about DNSSEC here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validation {
    Works,
    /// The nameservers give nothing to validate (never validated here): DANE is off.
    Off(String),
    /// It worked before and fails now: attempts wait.
    Failing(String),
}

/// `answers`: each anchor zone's DNSKEY lookup; `before`: validation worked earlier.
fn validation(answers: Vec<(String, Secured)>, before: bool) -> Validation {
    let mut reasons = Vec::new();
    let mut failed = false;
    for (zone, answer) in answers {
        match answer {
            Secured::Records { secure: true, .. } => return Validation::Works,
            Secured::Failed(reason) => {
                failed = true;
                reasons.push(reason)
            }
            _ => reasons.push(format!("the DNSKEY records of {zone} do not validate")),
        }
    }
    let reasons = reasons.join("; ");
    if before && failed {
        Validation::Failing(format!("{STATUS} DANE: DNSSEC validation worked before and fails now ({reasons})"))
    } else {
        Validation::Off(format!(
            "DANE is off: DNSSEC cannot be validated with the configured nameservers and trust anchors ({reasons})"
        ))
    }
}

impl Dane {
    pub fn new(dns: Option<&DnsSettings>, anchors: Option<&Path>) -> Result<Dane, MxError> {
        let (resolver, anchors) = Resolver::validating(dns, anchors)?;
        Ok(Dane { resolver, anchors, warned: Arc::default(), validated: Arc::default() })
    }

    /// Whether DNSSEC can be validated at all with these nameservers and anchors: an
    /// anchor zone's DNSKEY records validate. A resolver that does not pass DNSSEC records
    /// (or a private DNS without the anchors' zone) can prove nothing secure and nothing
    /// insecure: DANE is then off, with the reason, as it is in Postfix behind a resolver
    /// that does not validate, rather than every domain failing (its answer is cached for
    /// its TTL, so this costs no query per attempt).
    async fn validation(&self) -> Validation {
        let mut answers = Vec::new();
        for zone in &self.anchors {
            answers.push((zone.clone(), self.resolver.secured(zone, RecordType::DNSKEY).await));
        }
        let found = validation(answers, self.validated.load(Ordering::Relaxed));
        if found == Validation::Works {
            self.validated.store(true, Ordering::Relaxed);
        }
        found
    }

    /// The plan of an attempt to deliver to `targets` of `hop`: nothing unless the
    /// connector routes by MX with `dane` on. A bogus MX record set is the attempt's
    /// failure (`Err`, with its reason); the hosts' lookups fail hosts, not the attempt.
    pub async fn plan(
        &self,
        hop: &NextHop,
        connector: Option<&SendConnector>,
        targets: &[HostAddress],
    ) -> Result<Plan, String> {
        let Some(connector) = connector else { return Ok(Plan::none()) };
        if hop.delivery_type != DeliveryType::DnsConnectorDelivery
            || connector.dane_or_default() != DaneMode::AsPublished
        {
            return Ok(Plan::none());
        }
        let domain = hop.next_hop_domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.starts_with('[') {
            return Ok(Plan::none());
        }
        let span = tracing::info_span!("dane", %domain);
        self.lookups(domain, targets).instrument(span).await
    }

    async fn lookups(&self, domain: String, targets: &[HostAddress]) -> Result<Plan, String> {
        match self.validation().await {
            Validation::Works => {}
            Validation::Off(reason) => {
                // Once per configuration: the connectivity log has it for every attempt.
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(event = "DaneUnavailable", "{reason}");
                }
                return Ok(Plan { note: Some(reason), ..Plan::none() });
            }
            Validation::Failing(reason) => return Err(reason),
        }
        // §2.2.1: with a signed MX record set the recipient domain is a reference name too.
        let (mx_secure, signed_mx) = match self.resolver.secured(&domain, RecordType::MX).await {
            Secured::Failed(reason) => {
                return Err(format!("{STATUS} DANE: the MX records of {domain} cannot be trusted: {reason}"))
            }
            Secured::Records { secure: true, data } => (true, Some(exchanges(&data))),
            Secured::Records { secure: false, .. } => (false, None),
            Secured::Nothing => (self.resolver.secured(&domain, RecordType::A).await.is_secure(), None),
        };
        // Each MX host once (a host has several addresses), looked up in parallel.
        let mut hosts: Vec<(&str, u16)> = Vec::new();
        for target in targets {
            let unsigned = signed_mx.as_ref().is_some_and(|signed| !signed.contains(&target.host));
            if !unsigned && !hosts.iter().any(|(h, _)| *h == target.host) {
                hosts.push((&target.host, target.addr.port()));
            }
        }
        let answers = futures::future::join_all(hosts.iter().map(|(host, port)| self.host_answers(host, *port))).await;
        let mut plan = Plan { domain: domain.clone(), signed_mx, ..Plan::none() };
        for answers in answers {
            let mut names = vec![answers.host.clone()];
            if mx_secure && answers.host != domain {
                names.push(domain.clone());
            }
            let policy = decide(&answers, names);
            debug!(host = %answers.host, ?policy, "DANE");
            plan.hosts.insert(answers.host.clone(), policy);
        }
        Ok(plan)
    }

    async fn host_answers(&self, host: &str, port: u16) -> HostAnswers {
        let tlsa_name = format!("_{port}._tcp.{host}");
        let (v4, v6) =
            tokio::join!(self.resolver.secured(host, RecordType::A), self.resolver.secured(host, RecordType::AAAA));
        let addresses = Secured::join(v4, v6);
        let tlsa = match &addresses {
            Secured::Records { secure: true, .. } => Some(self.resolver.secured(&tlsa_name, RecordType::TLSA).await),
            _ => None,
        };
        HostAnswers { host: host.to_string(), tlsa_name, addresses, tlsa }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::tlsa::TLSA;
    use hickory_resolver::proto::rr::rdata::A;

    fn addresses(secure: bool) -> Secured {
        Secured::Records { secure, data: vec![RData::A(A::new(192, 0, 2, 1))] }
    }

    fn tlsa(usage: u8, secure: bool) -> Secured {
        let record = TLSA::new(usage.into(), 1.into(), 1.into(), vec![9; 32]);
        Secured::Records { secure, data: vec![RData::TLSA(record)] }
    }

    fn answers(addresses: Secured, tlsa: Option<Secured>) -> HostAnswers {
        HostAnswers { host: "mx.example.test".into(), tlsa_name: "_25._tcp.mx.example.test".into(), addresses, tlsa }
    }

    fn decided(addresses: Secured, tlsa: Option<Secured>) -> HostPolicy {
        decide(&answers(addresses, tlsa), vec!["mx.example.test".into()])
    }

    #[test]
    fn secure_usable_records_authenticate_and_unusable_ones_still_require_tls() {
        let HostPolicy::Authenticate(check) = decided(addresses(true), Some(tlsa(3, true))) else {
            panic!("DANE-EE in a signed zone applies")
        };
        assert_eq!(check.records.len(), 1);
        assert_eq!(check.tlsa_name, "_25._tcp.mx.example.test");
        for pkix in [0, 1] {
            assert_eq!(
                decided(addresses(true), Some(tlsa(pkix, true))),
                HostPolicy::TlsRequired { tlsa_name: "_25._tcp.mx.example.test".into() },
                "usage {pkix} is unusable in SMTP: TLS without authentication, never clear text"
            );
        }
    }

    #[test]
    fn unsigned_answers_mean_no_dane_and_failures_fail_the_host() {
        assert_eq!(decided(addresses(false), None), HostPolicy::NotApplicable, "unsigned addresses");
        assert!(
            matches!(decided(addresses(true), Some(tlsa(3, false))), HostPolicy::Failed(r) if r.contains("without valid signatures")),
            "unsigned TLSA records below signed addresses: stripped, the host waits"
        );
        assert_eq!(decided(addresses(true), Some(Secured::Nothing)), HostPolicy::NotApplicable, "no TLSA");
        let bogus = Secured::Failed("bogus".into());
        assert_eq!(decided(bogus.clone(), None), HostPolicy::Failed("bogus".into()));
        assert_eq!(decided(addresses(true), Some(bogus)), HostPolicy::Failed("bogus".into()));
    }

    #[test]
    fn a_and_aaaa_are_secure_together_or_not_at_all() {
        let failed = Secured::Failed("timeout".into());
        assert_eq!(Secured::join(addresses(true), failed.clone()), failed);
        assert!(Secured::join(addresses(true), Secured::Nothing).is_secure());
        assert!(!Secured::join(addresses(true), addresses(false)).is_secure());
        assert_eq!(Secured::join(Secured::Nothing, Secured::Nothing), Secured::Nothing);
    }

    #[test]
    fn failures_are_explained_with_4_7_5_and_dane() {
        let mut plan = Plan::none();
        let check = DaneCheck { tlsa_name: "_25._tcp.mx.x.test".into(), records: vec![], names: vec![] };
        plan.hosts.insert("mx.x.test".into(), HostPolicy::Authenticate(Arc::new(check)));
        plan.hosts.insert("bad.x.test".into(), HostPolicy::Failed("the TLSA records are Bogus".into()));
        let tls = DeliveryError::Tls {
            addr: "mx.x.test [127.0.0.1:25]".into(),
            failure: TlsFailure::new(ResultType::StarttlsNotSupported, "no STARTTLS"),
            local: None,
        };
        let told = plan.explain("mx.x.test", &tls);
        assert!(told.starts_with("451 4.7.5 DANE: mx.x.test publishes TLSA records"), "{told}");
        assert!(told.ends_with("no STARTTLS"), "{told}");
        assert_eq!(plan.explain("other.x.test", &tls), tls.to_string(), "no DANE, the error as it is");
        let refused = plan.refusal("bad.x.test").unwrap();
        assert!(refused.reason.starts_with("451 4.7.5 DANE: the DNSSEC lookups for bad.x.test failed"), "{refused:?}");
        assert_eq!(refused.kind, ResultType::DnssecInvalid);
        assert_eq!(plan.refusal("mx.x.test"), None);
    }

    fn target(host: &str) -> HostAddress {
        HostAddress { host: host.into(), addr: "192.0.2.1:25".parse().unwrap() }
    }

    #[test]
    fn a_signed_mx_set_keeps_only_its_hosts() {
        let plan = Plan { domain: "x.test".into(), signed_mx: Some(vec!["mx1.x.test".into()]), ..Plan::none() };
        let kept = plan.select(vec![target("evil.example"), target("mx1.x.test")]).unwrap();
        assert_eq!(kept.iter().map(|t| t.host.as_str()).collect::<Vec<_>>(), ["mx1.x.test"]);
        let err = plan.select(vec![target("evil.example")]).unwrap_err();
        assert!(err.starts_with("451 4.7.5 DANE: the signed MX records of x.test name none of evil.example"), "{err}");
        let unsigned = Plan { domain: "x.test".into(), ..Plan::none() };
        assert_eq!(unsigned.select(vec![target("any.example")]).unwrap().len(), 1, "no signed set, no filter");
    }

    #[test]
    fn a_validation_failure_waits_once_dnssec_has_worked_here() {
        let secure = Secured::Records { secure: true, data: vec![] };
        let failed = Secured::Failed("timeout".into());
        assert_eq!(validation(vec![(".".into(), secure)], false), Validation::Works);
        assert!(
            matches!(validation(vec![(".".into(), failed.clone())], false), Validation::Off(_)),
            "never worked: off"
        );
        assert!(
            matches!(validation(vec![(".".into(), Secured::Nothing)], true), Validation::Off(_)),
            "no DNSSEC at all"
        );
        let Validation::Failing(reason) = validation(vec![(".".into(), failed)], true) else {
            panic!("worked before, fails now: wait")
        };
        assert!(reason.starts_with("451 4.7.5 DANE:") && reason.contains("timeout"), "{reason}");
    }
}
