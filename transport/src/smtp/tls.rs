//! The STARTTLS acceptor of a receive connector: PEM certificate chain and
//! key, rustls with the ring provider.
use super::TlsError;
use crate::config::TlsFiles;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

fn pem_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), message: message.to_string() }
}

/// A receive connector's certificate, loaded: the acceptor new sessions use, and what an
/// administrator is shown of it (which certificate, until when).
pub struct ServerCertificate {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate (DER), lower-case hex: what `openssl x509
    /// -fingerprint -sha256` prints, without the colons.
    pub fingerprint: String,
    /// The leaf's notAfter (`None` if it cannot be read: rustls took it regardless).
    pub not_after: Option<std::time::SystemTime>,
}

pub fn load_server_certificate(files: &TlsFiles) -> Result<ServerCertificate, TlsError> {
    let (cert_path, key_path) = (files.certificate_file.as_path(), files.key_file.as_path());
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE section found"));
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(key_path, format!("no usable private key: {e}")))?;
    let leaf = chain[0].clone();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let fingerprint = Sha256::digest(leaf.as_ref()).iter().map(|b| format!("{b:02x}")).collect();
    let not_after = x509_parser::parse_x509_certificate(leaf.as_ref()).ok().and_then(|(_, cert)| {
        let secs = cert.validity().not_after.timestamp();
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(u64::try_from(secs).ok()?))
    });
    Ok(ServerCertificate { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), fingerprint, not_after })
}

pub fn load_tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    load_server_certificate(files).map(|c| c.acceptor)
}
