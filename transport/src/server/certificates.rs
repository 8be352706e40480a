//! What each receive connector's certificate is, for `GET /v1/server` (and so the
//! operator's status and Events): the certificate in use, since when and until when,
//! and a renewed pair on disk that could not be used, with the reason. One owner:
//! the server records here whenever it loads (start, a renewal, a configuration
//! reload) or refuses a pair.
use crate::api::CertificateInfo;
use crate::clock::rfc3339;
use crate::smtp::ServerCertificate;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::SystemTime;

#[derive(Default)]
pub struct Certificates {
    by_connector: RwLock<BTreeMap<String, CertificateInfo>>,
}

impl Certificates {
    /// `connector` now serves `certificate` (taken into use at `now`).
    pub fn loaded(&self, connector: &str, certificate: &ServerCertificate, now: SystemTime) {
        let info = CertificateInfo {
            connector: connector.to_string(),
            fingerprint: certificate.fingerprint.clone(),
            not_after: certificate.not_after.map(rfc3339),
            loaded_at: rfc3339(now),
            error: None,
        };
        self.write().insert(connector.to_string(), info);
    }

    /// The pair on disk for `connector` cannot be used: the one in use stays, and says why.
    pub fn refused(&self, connector: &str, error: String) {
        if let Some(info) = self.write().get_mut(connector) {
            info.error = Some(error);
        }
    }

    /// Only these connectors have STARTTLS now (after a configuration reload).
    pub fn keep_only(&self, connectors: &[&str]) {
        self.write().retain(|name, _| connectors.contains(&name.as_str()));
    }

    pub fn list(&self) -> Vec<CertificateInfo> {
        self.by_connector.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, CertificateInfo>> {
        self.by_connector.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn certificate(fingerprint: &str, not_after_secs: u64) -> ServerCertificate {
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocols")
                .with_no_client_auth()
                .with_cert_resolver(std::sync::Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        ServerCertificate {
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
            fingerprint: fingerprint.into(),
            not_after: Some(UNIX_EPOCH + Duration::from_secs(not_after_secs)),
        }
    }

    #[test]
    fn a_refused_renewal_keeps_the_certificate_in_use_and_says_why() {
        let book = Certificates::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        book.loaded("Default", &certificate("aa", 1_900_000_000), t0);
        book.refused("Default", "certificate and key do not fit together".into());
        let list = book.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].fingerprint, "aa");
        assert_eq!(list[0].not_after.as_deref(), Some("2030-03-17T17:46:40Z"));
        assert_eq!(list[0].loaded_at, "2027-01-15T08:00:00Z");
        assert!(list[0].error.as_deref().is_some_and(|e| e.contains("do not fit")));
        // The next good pair clears the error.
        book.loaded("Default", &certificate("bb", 1_950_000_000), t0 + Duration::from_secs(60));
        assert_eq!((book.list()[0].fingerprint.as_str(), book.list()[0].error.as_deref()), ("bb", None));
        // A connector that no longer has STARTTLS is no longer listed.
        book.loaded("Submission", &certificate("cc", 1_950_000_000), t0);
        book.keep_only(&["Submission"]);
        assert_eq!(book.list().iter().map(|c| c.connector.as_str()).collect::<Vec<_>>(), ["Submission"]);
    }
}
