//! The certificate check of a DANE-authenticated connection (RFC 7672 §3), run by
//! delivery/tls.rs's verifier. DANE-EE(3): the server's certificate (or key) matches a record; its names
//! and dates are not looked at (§3.1.1). DANE-TA(2): a certificate the server sent
//! matches a record, and the chain leads from it to the server's certificate, valid now
//! and naming one of the reference names (§3.1.2, §3.2.2). Handshake signatures are
//! verified as always: the peer holds the key it shows.
use super::tlsa::{Tlsa, DANE_EE, DANE_TA};
use crate::delivery::tls::PeerCheck;
use crate::delivery::{ResultType, TlsFailure};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use std::sync::Arc;

/// What a DANE connection to one MX host must show.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DaneCheck {
    /// `_25._tcp.<host>`, for the reasons given.
    pub tlsa_name: String,
    /// The usable records (at least one).
    pub records: Vec<Tlsa>,
    /// Names a DANE-TA chain's certificate may carry: the MX host, and the recipient
    /// domain when its MX records are signed.
    pub names: Vec<String>,
}

/// The reason a certificate matches no record: the TLS report's `tlsa-invalid`.
const NO_MATCH: &str = "matches no TLSA record";

impl DaneCheck {
    /// Whether the chain a server sent (its certificate first) passes, at `now`.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), TlsFailure> {
        let records = |usage| self.records.iter().filter(move |r| r.usage == usage);
        if records(DANE_EE).any(|r| r.matches(end_entity)) {
            return Ok(());
        }
        let mut chain_error = None;
        for anchor in intermediates.iter().filter(|c| records(DANE_TA).any(|r| r.matches(c))) {
            match self.chain_to(anchor, end_entity, intermediates, now, provider) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    chain_error.get_or_insert(e);
                }
            }
        }
        Err(chain_error.unwrap_or_else(|| {
            let shown: Vec<String> = self.records.iter().map(ToString::to_string).collect();
            TlsFailure::new(
                ResultType::TlsaInvalid,
                format!("DANE: the certificate chain {NO_MATCH} of {} ({})", self.tlsa_name, shown.join(", ")),
            )
        }))
    }

    /// WebPKI's chain and name checks with `anchor` as the only trusted CA.
    fn chain_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), TlsFailure> {
        let invalid = |reason: String| TlsFailure::new(ResultType::ValidationFailure, reason);
        let mut store = RootCertStore::empty();
        store
            .add(anchor.clone().into_owned())
            .map_err(|e| invalid(format!("DANE-TA: the trust anchor cannot be used: {e}")))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| invalid(format!("DANE-TA: {e}")))?;
        let mut first_error = None;
        for name in &self.names {
            let Ok(server_name) = ServerName::try_from(name.clone()) else { continue };
            match webpki.verify_server_cert(end_entity, intermediates, &server_name, &[], now) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    first_error.get_or_insert(TlsFailure::new(
                        ResultType::of_rustls(&e),
                        format!("DANE-TA ({}): {e}", self.tlsa_name),
                    ));
                }
            }
        }
        Err(first_error.unwrap_or_else(|| invalid("DANE-TA: no reference name to check".to_string())))
    }
}

/// The rustls side: a certificate no record accepts fails the handshake with the reason.
impl PeerCheck for DaneCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), rustls::Error> {
        self.verify(end_entity, intermediates, now, provider).map_err(TlsFailure::into_rustls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use sha2::{Digest, Sha256};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    /// A certificate for `names`, valid or expired, self-signed or issued by `ca`.
    fn leaf(names: &[&str], expired: bool, ca: Option<(&rcgen::Certificate, &KeyPair)>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = match ca {
            Some((ca, ca_key)) => params.signed_by(&key, ca, ca_key).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        cert.der().clone()
    }

    fn ca() -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "DANE test CA");
        (params.self_signed(&key).unwrap(), key)
    }

    fn check(records: Vec<Tlsa>) -> DaneCheck {
        DaneCheck {
            tlsa_name: "_25._tcp.mx.example.test".into(),
            records,
            names: vec!["mx.example.test".into(), "example.test".into()],
        }
    }

    fn sha256_of(cert: &CertificateDer<'_>) -> Tlsa {
        Tlsa { usage: 3, selector: 0, matching: 1, data: Sha256::digest(cert.as_ref()).to_vec() }
    }

    #[test]
    fn dane_ee_ignores_names_dates_and_issuer() {
        let p = provider();
        for cert in [
            leaf(&["mx.example.test"], false, None),
            leaf(&["mx.example.test"], true, None),
            leaf(&["other.invalid"], false, None),
        ] {
            assert_eq!(check(vec![sha256_of(&cert)]).verify(&cert, &[], now(), &p), Ok(()));
        }
        let shown = leaf(&["mx.example.test"], false, None);
        let published = leaf(&["mx.example.test"], false, None);
        let err = check(vec![sha256_of(&published)]).verify(&shown, &[], now(), &p).unwrap_err();
        assert!(err.reason.contains(NO_MATCH) && err.reason.contains("_25._tcp.mx.example.test"), "{err}");
        assert_eq!(err.kind, ResultType::TlsaInvalid);
    }

    #[test]
    fn dane_ta_needs_a_chain_to_the_anchor_and_a_reference_name_valid_now() {
        let p = provider();
        let (ca_cert, ca_key) = ca();
        let anchor = Tlsa { usage: 2, selector: 0, matching: 1, data: Sha256::digest(ca_cert.der().as_ref()).to_vec() };
        let chain = [ca_cert.der().clone()];
        let by_ca = |names: &[&str], expired| leaf(names, expired, Some((&ca_cert, &ca_key)));

        let good = by_ca(&["mx.example.test"], false);
        assert_eq!(check(vec![anchor.clone()]).verify(&good, &chain, now(), &p), Ok(()));
        let domain_name = by_ca(&["example.test"], false);
        assert_eq!(check(vec![anchor.clone()]).verify(&domain_name, &chain, now(), &p), Ok(()), "the domain too");

        let wrong_name = by_ca(&["elsewhere.test"], false);
        let err = check(vec![anchor.clone()]).verify(&wrong_name, &chain, now(), &p).unwrap_err();
        assert!(err.reason.starts_with("DANE-TA") && err.reason.contains("not valid for name"), "{err}");
        assert_eq!(err.kind, ResultType::CertificateHostMismatch);

        let expired = by_ca(&["mx.example.test"], true);
        let err = check(vec![anchor.clone()]).verify(&expired, &chain, now(), &p).unwrap_err();
        assert!(err.reason.contains("expired"), "{err}");
        assert_eq!(err.kind, ResultType::CertificateExpired);

        // Not sent by the server: the anchor cannot be found in the chain.
        let err = check(vec![anchor.clone()]).verify(&good, &[], now(), &p).unwrap_err();
        assert!(err.reason.contains(NO_MATCH), "{err}");
        assert_eq!(err.kind, ResultType::TlsaInvalid);

        // A chain from another CA, whose certificate is sent, does not match the record.
        let (other_ca, other_key) = ca();
        let foreign = leaf(&["mx.example.test"], false, Some((&other_ca, &other_key)));
        let err = check(vec![anchor]).verify(&foreign, &[other_ca.der().clone()], now(), &p).unwrap_err();
        assert!(err.reason.contains(NO_MATCH), "{err}");
        assert_eq!(err.kind, ResultType::TlsaInvalid);
    }
}
