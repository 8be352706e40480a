//! TLSA records (RFC 6698 §2) as SMTP uses them (RFC 7672 §3.1): which are usable, and
//! whether a certificate matches one. Pure.
use sha2::{Digest, Sha256, Sha512};

/// DANE-TA: the record names a trust anchor (CA) the chain must lead to.
pub const DANE_TA: u8 = 2;
/// DANE-EE: the record names the server's own certificate or key.
pub const DANE_EE: u8 = 3;

/// One TLSA record: certificate usage, selector, matching type and association data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable in SMTP, as are unknown
    /// selectors and matching types and digests of the wrong length.
    pub fn usable(&self) -> bool {
        let usage = matches!(self.usage, DANE_TA | DANE_EE);
        let data = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        usage && self.selector <= 1 && data
    }

    /// The certificate (DER) matches: its full encoding (selector 0) or its
    /// SubjectPublicKeyInfo (selector 1), compared whole (matching 0) or as SHA-256 (1)
    /// or SHA-512 (2). A certificate that cannot be parsed matches no selector-1 record.
    pub fn matches(&self, certificate: &[u8]) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => certificate.to_vec(),
            1 => match spki(certificate) {
                Some(spki) => spki,
                None => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(&selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Presentation form (`3 1 1 0a1b…`), for logs and the TLS report's policy-string.
impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        self.data.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The DER SubjectPublicKeyInfo of a certificate.
fn spki(certificate: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    Some(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate() -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.example.test".into()]).unwrap().self_signed(&key).unwrap();
        (cert.der().to_vec(), key.public_key_der())
    }

    #[test]
    fn each_selector_and_matching_type_matches_its_certificate_only() {
        let (der, spki_der) = certificate();
        let (other, _) = certificate();
        let records = [
            Tlsa { usage: 3, selector: 0, matching: 0, data: der.clone() },
            Tlsa { usage: 3, selector: 0, matching: 1, data: Sha256::digest(&der).to_vec() },
            Tlsa { usage: 3, selector: 0, matching: 2, data: Sha512::digest(&der).to_vec() },
            Tlsa { usage: 3, selector: 1, matching: 0, data: spki_der.clone() },
            Tlsa { usage: 3, selector: 1, matching: 1, data: Sha256::digest(&spki_der).to_vec() },
            Tlsa { usage: 2, selector: 1, matching: 2, data: Sha512::digest(&spki_der).to_vec() },
        ];
        for record in &records {
            assert!(record.usable(), "{record}");
            assert!(record.matches(&der), "{record} matches its certificate");
            assert!(!record.matches(&other), "{record} does not match another one");
        }
        assert!(!records[4].matches(b"not a certificate"));
    }

    #[test]
    fn pkix_usages_unknown_types_and_bad_digest_lengths_are_unusable() {
        let digest = vec![7u8; 32];
        let record = |usage, selector, matching, data: &[u8]| Tlsa { usage, selector, matching, data: data.to_vec() };
        assert!(record(3, 1, 1, &digest).usable());
        assert!(!record(0, 1, 1, &digest).usable(), "PKIX-TA");
        assert!(!record(1, 1, 1, &digest).usable(), "PKIX-EE");
        assert!(!record(4, 1, 1, &digest).usable(), "unknown usage");
        assert!(!record(3, 2, 1, &digest).usable(), "unknown selector");
        assert!(!record(3, 1, 3, &digest).usable(), "unknown matching type");
        assert!(!record(3, 1, 1, &digest[..31]).usable(), "short SHA-256");
        assert!(!record(3, 1, 2, &digest).usable(), "SHA-512 of 32 bytes");
        assert!(!record(3, 0, 0, &[]).usable(), "empty full match");
        assert_eq!(record(3, 1, 1, &[0x0a, 0xff]).to_string(), "3 1 1 0aff");
    }
}
