//! Outbound TLS. By default (a send connector's tlsAuthLevel absent or
//! EncryptionOnly) encrypt, but accept whatever certificate the peer shows:
//! what MTAs do for STARTTLS to MX hosts (RFC 7435), where a certificate check
//! would only send the mail in clear instead. The handshake signatures are
//! still verified, so the peer must hold the key of the certificate it
//! presents. CertificateValidation and DomainValidation check the chain (and
//! the name) with rustls's WebPKI verifier against the system's CAs or a
//! configured bundle.
use super::{ResultType, TlsFailure};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;
use tokio_rustls::TlsConnector;

/// How a next hop's certificate is checked (from a send connector's tlsAuthLevel).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum CertificateCheck {
    /// Any certificate (EncryptionOnly, the default).
    #[default]
    None,
    /// It chains to a trusted CA (`roots`, else the system's); any name.
    Chain { roots: Option<PathBuf> },
    /// It chains and names `domain` (else the host connected to).
    Domain { roots: Option<PathBuf>, domain: Option<String> },
    /// It matches the MX host's DANE TLSA records (RFC 7672; delivery/dane).
    Dane(Arc<super::dane::DaneCheck>),
}

impl CertificateCheck {
    pub fn from_connector(sc: &crate::config::SendConnector) -> CertificateCheck {
        use crate::config::TlsAuthLevel;
        let roots = sc.tls_certificate_authorities.clone();
        match sc.tls_auth_level {
            None | Some(TlsAuthLevel::EncryptionOnly) => CertificateCheck::None,
            Some(TlsAuthLevel::CertificateValidation) => CertificateCheck::Chain { roots },
            Some(TlsAuthLevel::DomainValidation) => CertificateCheck::Domain { roots, domain: sc.tls_domain.clone() },
        }
    }

    /// The check an MTA-STS policy asks for (RFC 8461 §4.2): a chain to a CA the connector
    /// trusts and the name of the MX host. A connector that checks names itself
    /// (DomainValidation) keeps its own check.
    pub fn for_mta_sts(sc: &crate::config::SendConnector) -> CertificateCheck {
        match CertificateCheck::from_connector(sc) {
            own @ CertificateCheck::Domain { .. } => own,
            _ => CertificateCheck::Domain { roots: sc.tls_certificate_authorities.clone(), domain: None },
        }
    }

    /// TLS is a must: a peer without STARTTLS is a failure, never a clear-text fallback.
    pub fn required(&self) -> bool {
        *self != CertificateCheck::None
    }

    /// The name the certificate must carry, when one is set.
    pub fn domain(&self) -> Option<&str> {
        match self {
            CertificateCheck::Domain { domain, .. } => domain.as_deref(),
            _ => None,
        }
    }

    fn roots(&self) -> Option<Option<&Path>> {
        match self {
            CertificateCheck::None | CertificateCheck::Dane(_) => None,
            CertificateCheck::Chain { roots } | CertificateCheck::Domain { roots, .. } => Some(roots.as_deref()),
        }
    }
}

/// The CertificateValidation level: the chain must be valid, the name is not
/// looked at (WebPKI checks the chain before the name, so a name error means
/// the chain was good).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a verifier checks of the certificates a peer shows (nothing, for EncryptionOnly;
/// its DANE records); the handshake signatures are verified alike for every check.
pub(super) trait PeerCheck: std::fmt::Debug + Send + Sync {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), rustls::Error>;
}

/// EncryptionOnly: any certificate.
#[derive(Debug)]
struct AnyCertificate;

impl PeerCheck for AnyCertificate {
    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
        _provider: &Arc<CryptoProvider>,
    ) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// A [`PeerCheck`] as a rustls verifier, with the provider's signature algorithms.
#[derive(Debug)]
struct CheckingVerifier {
    check: Arc<dyn PeerCheck>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CheckingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check.check(end_entity, intermediates, now, &self.provider).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration whose verifier runs `check`.
fn checking_config(check: Arc<dyn PeerCheck>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(CheckingVerifier { check, provider: provider.clone() });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What a checking level is built into: the client configuration, and its verifier on
/// its own for [`verify`].
#[derive(Clone)]
struct Built {
    config: Arc<ClientConfig>,
    verifier: Arc<dyn ServerCertVerifier>,
}

/// The connector for `check`: built once per check and CA file version (a
/// bundle replaced on disk is read again), so sessions do not read files.
pub(super) fn connector(check: &CertificateCheck) -> Result<TlsConnector, String> {
    if let CertificateCheck::Dane(dane) = check {
        return dane_connector(dane);
    }
    match check.roots() {
        None => opportunistic(),
        Some(_) => Ok(TlsConnector::from(built(check)?.config)),
    }
}

/// Whether certificates a peer showed pass `check` for `name`, without failing the
/// session: MTA-STS `testing` reports what `enforce` would have refused (RFC 8461 §5).
pub(super) fn verify(
    check: &CertificateCheck,
    certificates: &[CertificateDer<'static>],
    name: &ServerName<'_>,
) -> Result<(), TlsFailure> {
    let failure = |reason: String| TlsFailure::new(ResultType::ValidationFailure, reason);
    if check.roots().is_none() {
        return Ok(());
    }
    let Some((end_entity, intermediates)) = certificates.split_first() else {
        return Err(failure("the peer showed no certificate".to_string()));
    };
    let verifier = built(check).map_err(failure)?.verifier;
    verifier
        .verify_server_cert(end_entity, intermediates, name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| TlsFailure::new(ResultType::of_rustls(&e), e.to_string()))
}

/// A client configuration that checks the chain against `roots` (a PEM bundle, else the
/// system's CAs) and the name connected to: the HTTPS fetch of MTA-STS policies.
pub(crate) fn verifying_config(roots: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let check = CertificateCheck::Domain { roots: roots.map(Path::to_path_buf), domain: None };
    Ok(built(&check)?.config)
}

fn built(check: &CertificateCheck) -> Result<Built, String> {
    type Key = (CertificateCheck, Option<SystemTime>);
    static BUILT: OnceLock<Mutex<HashMap<Key, Built>>> = OnceLock::new();
    let roots = check.roots().flatten();
    let version = roots.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let key = (check.clone(), version);
    let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = built.get(&key) {
        return Ok(found.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(trusted(roots)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
        .build()
        .map_err(|e| format!("TLS certificate check: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        CertificateCheck::Chain { .. } => Arc::new(AnyName(webpki)),
        _ => webpki,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let made = Built { config: Arc::new(config), verifier };
    built.insert(key, made.clone());
    Ok(made)
}

/// The CAs of a PEM bundle, or the system's.
fn trusted(bundle: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match bundle {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read the CA bundle {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        let from = bundle.map_or("the system's store".to_string(), |p| p.display().to_string());
        return Err(format!("no CA certificate could be read from {from}"));
    }
    Ok(store)
}

/// The connector of EncryptionOnly (built once).
fn opportunistic() -> Result<TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| checking_config(Arc::new(AnyCertificate))).clone().map(TlsConnector::from)
}

/// A connector checking the peer against its DANE records: built per connection, as the
/// records are the MX host's (and each lookup's).
fn dane_connector(check: &Arc<super::dane::DaneCheck>) -> Result<TlsConnector, String> {
    checking_config(check.clone()).map(TlsConnector::from)
}
