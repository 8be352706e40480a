//! The RFC 8460 §4.3 result-type of a failed TLS session, decided where it failed: from
//! the rustls error of a certificate check (typed, never read back from its text), or by
//! the delivery step that knows (no STARTTLS, DNSSEC, a policy not fetched).

/// §4.3.1–§4.3.2 result types this server can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    /// DANE: the certificate matches none of the MX host's TLSA records.
    TlsaInvalid,
    /// DANE: the DNSSEC lookups gave no answer that validates.
    DnssecInvalid,
    /// MTA-STS (§4.3.2.2): the policy could not be fetched (host unreachable, not 200, ...).
    StsPolicyFetchError,
    /// MTA-STS: the policy fetched does not parse.
    StsPolicyInvalid,
    /// MTA-STS: the policy host's certificate does not pass.
    StsWebpkiInvalid,
}

impl ResultType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// Why a TLS session failed, or (under MTA-STS `testing`, or in clear text) fell short:
/// its RFC 8460 result type, decided where the failure happened, and the text for logs.
/// A check of this server's own (DANE's) that fails a handshake is carried through rustls
/// as this error ([`TlsFailure::into_rustls`]), so [`ResultType::of_rustls`] finds its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TlsFailure {
    pub kind: ResultType,
    pub reason: String,
}

impl TlsFailure {
    pub fn new(kind: ResultType, reason: impl Into<String>) -> TlsFailure {
        TlsFailure { kind, reason: reason.into() }
    }

    /// A handshake that failed: typed by the rustls error inside the I/O error when there
    /// is one (a certificate check's), else a plain validation failure.
    pub fn of_handshake(error: &std::io::Error) -> TlsFailure {
        let rustls = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        let kind = rustls.map_or(ResultType::ValidationFailure, ResultType::of_rustls);
        TlsFailure::new(kind, error.to_string())
    }

    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::Other(rustls::OtherError(std::sync::Arc::new(self)))
    }
}

impl ResultType {
    /// The result type of a certificate the verifier refused (RFC 8460 §4.3.2.1).
    pub fn of_rustls(error: &rustls::Error) -> ResultType {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                ResultType::CertificateHostMismatch
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => ResultType::CertificateExpired,
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => ResultType::CertificateNotTrusted,
            rustls::Error::Other(rustls::OtherError(inner)) => {
                inner.downcast_ref::<TlsFailure>().map_or(ResultType::ValidationFailure, |f| f.kind)
            }
            _ => ResultType::ValidationFailure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_rfc_8460_result_types() {
        use rustls::CertificateError as C;
        let cases = [
            (rustls::Error::InvalidCertificate(C::NotValidForName), "certificate-host-mismatch"),
            (rustls::Error::InvalidCertificate(C::Expired), "certificate-expired"),
            (rustls::Error::InvalidCertificate(C::UnknownIssuer), "certificate-not-trusted"),
            (rustls::Error::InvalidCertificate(C::BadSignature), "validation-failure"),
            (rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure), "validation-failure"),
            (TlsFailure::new(ResultType::TlsaInvalid, "no match").into_rustls(), "tlsa-invalid"),
        ];
        for (error, want) in cases {
            assert_eq!(ResultType::of_rustls(&error).as_str(), want, "{error}");
        }
    }

    #[test]
    fn a_handshake_error_is_typed_by_the_rustls_error_inside() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let failure = TlsFailure::of_handshake(&wrapped);
        assert_eq!(failure.kind, ResultType::CertificateExpired);
        assert!(failure.reason.contains("Expired"), "{}", failure.reason);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(TlsFailure::of_handshake(&reset).kind, ResultType::ValidationFailure);
        // A check of ours keeps its own text.
        let dane = TlsFailure::new(ResultType::TlsaInvalid, "DANE: no record").into_rustls();
        assert_eq!(dane.to_string(), "other error: DANE: no record");
    }
}
