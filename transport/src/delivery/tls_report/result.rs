//! The RFC 8460 §4.3 result-type of a failed TLS session, from what the delivery side
//! said about it. The reasons are the connection's own texts (and rustls's certificate
//! errors in them); one function decides so a new text needs one new line here.

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

/// The result type of a session that failed (or under `testing` would have failed) for
/// `reason`: a TLS error of the connection or the session's policy shortfall.
pub fn classify(reason: &str) -> ResultType {
    let r = reason.to_ascii_lowercase();
    if r.contains(&crate::delivery::dane::verify::NO_MATCH.to_ascii_lowercase()) {
        ResultType::TlsaInvalid
    } else if r.contains("dnssec") {
        ResultType::DnssecInvalid
    } else if r.contains("starttls") || r.contains("tls is off") {
        ResultType::StarttlsNotSupported
    } else if r.contains("notvalidforname") || r.contains("not valid for name") || r.contains("not valid for") {
        ResultType::CertificateHostMismatch
    } else if r.contains("expired") {
        ResultType::CertificateExpired
    } else if r.contains("unknownissuer") || r.contains("unknown issuer") || r.contains("not trusted") {
        ResultType::CertificateNotTrusted
    } else {
        ResultType::ValidationFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_side_reasons_map_to_rfc_8460_result_types() {
        let cases = [
            ("TLS is required but the peer does not offer STARTTLS", "starttls-not-supported"),
            ("the peer does not offer STARTTLS", "starttls-not-supported"),
            ("STARTTLS was refused (454 4.7.0 no)", "starttls-not-supported"),
            ("STARTTLS answered 500 what", "starttls-not-supported"),
            ("invalid peer certificate: NotValidForName", "certificate-host-mismatch"),
            (
                "invalid peer certificate: certificate not valid for name \"mx.x.test\"; certificate is only valid for ...",
                "certificate-host-mismatch",
            ),
            ("invalid peer certificate: Expired", "certificate-expired"),
            ("invalid peer certificate: certificate expired: verification time 1 (UNIX), but ...", "certificate-expired"),
            ("invalid peer certificate: UnknownIssuer", "certificate-not-trusted"),
            ("received fatal alert: HandshakeFailure", "validation-failure"),
            ("unexpected error: DANE: the certificate chain matches no TLSA record of _25._tcp.mx", "tlsa-invalid"),
            ("451 4.7.5 DANE: the DNSSEC lookups for mx.x.test failed: the TLSA records are Bogus", "dnssec-invalid"),
        ];
        for (reason, want) in cases {
            assert_eq!(classify(reason).as_str(), want, "{reason}");
        }
    }
}
