//! DNSSEC-validated lookups (hickory's validation) for DANE (RFC 7672 §2.1): each answer
//! is secure, insecure (no chain of trust reaches it: an unsigned zone) or a failure
//! (bogus signatures, a denial that does not validate, no answer at all), which the
//! caller must treat as temporary and never as "no record".
use super::mx::{absolute_name, classify, Answer, MxError, Resolver};
use crate::config::DnsSettings;
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::ProtoErrorKind;
use std::path::Path;
use std::sync::Arc;

/// What one validated lookup found (RFC 7672 §2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secured {
    /// Records of the type asked; `secure` when every one validated to a trust anchor.
    Records { secure: bool, data: Vec<RData> },
    /// NXDOMAIN or NODATA (signed or not): there is no such record.
    Nothing,
    /// Bogus or indeterminate, a timeout, SERVFAIL: nothing can be concluded now.
    Failed(String),
}

impl Secured {
    pub(crate) fn is_secure(&self) -> bool {
        matches!(self, Secured::Records { secure: true, .. })
    }

    /// A and AAAA together: a failure of either fails both (an attacker may have hidden
    /// one); records of either count, secure only if all are.
    pub(crate) fn join(a: Secured, b: Secured) -> Secured {
        match (a, b) {
            (Secured::Failed(r), _) | (_, Secured::Failed(r)) => Secured::Failed(r),
            (Secured::Nothing, other) | (other, Secured::Nothing) => other,
            (Secured::Records { secure: s1, data: mut d1 }, Secured::Records { secure: s2, data: d2 }) => {
                d1.extend(d2);
                Secured::Records { secure: s1 && s2, data: d1 }
            }
        }
    }
}

impl Resolver {
    /// A resolver that validates DNSSEC against `anchors` (a file of DNSKEY records in
    /// zone-file form), else the IANA root keys built into hickory; with the zones whose
    /// keys are the anchors (the root for hickory's).
    pub fn validating(dns: Option<&DnsSettings>, anchors: Option<&Path>) -> Result<(Resolver, Vec<String>), MxError> {
        let mut builder = Resolver::builder(dns)?;
        builder.options_mut().validate = true;
        let mut zones = vec![".".to_string()];
        if let Some(path) = anchors {
            let (keys, named) = read_anchors(path)
                .map_err(|e| MxError(format!("cannot read the DNSSEC trust anchors {}: {e}", path.display())))?;
            if keys.is_empty() {
                return Err(MxError(format!("the DNSSEC trust anchors file {} holds no DNSKEY", path.display())));
            }
            builder = builder.with_trust_anchor(Arc::new(keys));
            zones = named;
        }
        Ok((Resolver { inner: Arc::new(builder.build()) }, zones))
    }

    /// The `kind` records of `name`, with what DNSSEC says of them. Only meaningful on a
    /// resolver made by [`Resolver::validating`] (elsewhere nothing is secure).
    pub async fn secured(&self, name: &str, kind: RecordType) -> Secured {
        let absolute = match absolute_name(name) {
            Ok(n) => n,
            Err(reason) => return Secured::Failed(format!("{name} is not a DNS name: {reason}")),
        };
        match self.inner.lookup(absolute, kind).await {
            Ok(lookup) => {
                let proofs: Vec<(Proof, RData)> = lookup
                    .record_iter()
                    .filter(|r| r.record_type() == kind)
                    .map(|r| (r.proof(), r.data().clone()))
                    .collect();
                judge(name, kind, proofs)
            }
            Err(e) => {
                if let Some(proto) = e.proto() {
                    // A denial from an unsigned zone proves nothing either way: no record.
                    if let ProtoErrorKind::Nsec { proof, .. } = proto.kind() {
                        return match proof {
                            Proof::Insecure => Secured::Nothing,
                            _ => Secured::Failed(format!("the denial of {name} {kind} is {proof} (DNSSEC)")),
                        };
                    }
                }
                match classify(&e) {
                    Answer::Failed(reason) => Secured::Failed(format!("{name} {kind}: {reason}")),
                    // NoData, NoSuchName (an error is never addresses).
                    _ => Secured::Nothing,
                }
            }
        }
    }
}

/// The DNSKEY records of a trust anchors file, and the zones they are the keys of (each
/// once, in order), both from one parse by hickory's trust-anchor parser (so `$ORIGIN`,
/// `@` and records across lines in parentheses read as a zone file says).
/// hickory's parser asserts on some malformed input (a lower-case class) in debug builds:
/// a panic there is a parse error here.
fn read_anchors(path: &Path) -> Result<(TrustAnchors, Vec<String>), String> {
    use hickory_proto::dnssec::Verifier;
    use hickory_proto::serialize::txt::trust_anchor::{Entry, Parser};
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let entries = match std::panic::catch_unwind(|| Parser::new(text.as_str()).parse()) {
        Ok(parsed) => parsed.map_err(|e| e.to_string())?,
        Err(_) => return Err("not a file of DNSKEY records (zone-file form)".to_string()),
    };
    let mut keys = TrustAnchors::empty();
    let mut zones: Vec<String> = Vec::new();
    for entry in entries {
        // DNSKEY records are all the parser yields today (the enum is non-exhaustive).
        let Entry::DNSKEY(record) = entry else { continue };
        let key = record.data().key().map_err(|e| format!("a DNSKEY of {} cannot be read: {e}", record.name()))?;
        keys.insert(&*key);
        let zone = record.name().to_ascii().to_ascii_lowercase();
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    Ok((keys, zones))
}

/// Secure when every record is, insecure when none is bogus or indeterminate; else a
/// failure naming the proof (RFC 4033 §5).
fn judge(name: &str, kind: RecordType, records: Vec<(Proof, RData)>) -> Secured {
    if records.is_empty() {
        return Secured::Nothing;
    }
    if let Some((proof, _)) = records.iter().find(|(p, _)| matches!(p, Proof::Bogus | Proof::Indeterminate)) {
        return Secured::Failed(format!("the {kind} records of {name} are {proof} (DNSSEC validation failed)"));
    }
    let secure = records.iter().all(|(p, _)| *p == Proof::Secure);
    Secured::Records { secure, data: records.into_iter().map(|(_, d)| d).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::A;

    /// The IANA root KSK-2017 (key tag 20326), public data.
    const ROOT_KSK: &str = "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=";

    #[test]
    fn the_anchor_zones_are_the_owners_of_the_anchor_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors");
        let text = format!("; the root, twice, and a private zone\n. 172800 IN DNSKEY 257 3 8 {ROOT_KSK}\nCorp. 3600 IN DNSKEY 257 3 8 {ROOT_KSK}\n. IN DNSKEY 257 3 8 {ROOT_KSK}\n");
        std::fs::write(&path, text).unwrap();
        let (keys, zones) = read_anchors(&path).unwrap();
        assert_eq!(zones, [".", "corp."]);
        assert_eq!(keys.len(), 1, "the same key once");
        std::fs::write(&path, "not a zone file\n").unwrap();
        assert!(read_anchors(&path).is_err());
    }

    #[test]
    fn a_record_set_is_as_secure_as_its_weakest_record() {
        let a = |n| RData::A(A::new(192, 0, 2, n));
        let secure = judge("h.test", RecordType::A, vec![(Proof::Secure, a(1)), (Proof::Secure, a(2))]);
        assert_eq!(secure, Secured::Records { secure: true, data: vec![a(1), a(2)] });
        let mixed = judge("h.test", RecordType::A, vec![(Proof::Secure, a(1)), (Proof::Insecure, a(2))]);
        assert_eq!(mixed, Secured::Records { secure: false, data: vec![a(1), a(2)] });
        for bad in [Proof::Bogus, Proof::Indeterminate] {
            let failed = judge("h.test", RecordType::A, vec![(Proof::Secure, a(1)), (bad, a(2))]);
            assert!(matches!(&failed, Secured::Failed(r) if r.contains("DNSSEC validation failed")), "{failed:?}");
        }
        assert_eq!(judge("h.test", RecordType::A, vec![]), Secured::Nothing);
    }
}
