//! The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1): `v=STSv1; id=20160831085700Z;`.
//! Hand-written for the same reasons as the policy parser (see `policy.rs`); the framing
//! it shares with the TLS reporting record is read by `delivery::txt_record`.
use crate::delivery::txt_record;
pub use txt_record::RecordError;

/// What the record says: the version of the policy to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1 to 32 letters and digits; a new id means a new policy.
    pub id: String,
}

const VERSION: &str = "v=STSv1";

/// §3.1: of the TXT records at `_mta-sts.<domain>`, those that do not begin with
/// `v=STSv1;` are discarded; exactly one must be left, and valid. Anything else means
/// the domain has no policy to discover now (a cached one may still apply, §5.1).
pub fn discover(texts: &[String]) -> Result<Record, RecordError> {
    txt_record::discover(texts, "v=STSv1;", Record::parse)
}

impl Record {
    /// `v=STSv1` then fields separated by `;` with optional white space around it, an
    /// optional `;` at the end; `id` exactly once; unknown fields must be well formed
    /// (`name=value`, the value printable ASCII without `=`, `;` or space).
    pub fn parse(text: &str) -> Result<Record, String> {
        let mut fields = text.split(';');
        if fields.next() != Some(VERSION) {
            return Err(format!("it does not start with {VERSION};"));
        }
        let mut id = None;
        txt_record::each_field(fields, |name, value| {
            if name == "id" {
                if id.is_some() {
                    return Err("id is given twice".to_string());
                }
                if !(1..=32).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!("id {value:?} is not 1 to 32 letters and digits"));
                }
                id = Some(value.to_string());
            } else if !txt_record::extension_value_ok(value) {
                return Err(format!("the value of {name} is not valid"));
            }
            Ok(())
        })?;
        id.map(|id| Record { id }).ok_or_else(|| "it has no id".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn records_as_published() {
        for (text, id) in [
            ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
            ("v=STSv1;id=abc", "abc"),
            ("v=STSv1;\tid=abc\t;  ", "abc"),
            ("v=STSv1; ext_1.x-y=a!b:c; id=A1", "A1"),
            ("v=STSv1; id=abc ;", "abc"),
        ] {
            assert_eq!(Record::parse(text), Ok(Record { id: id.to_string() }), "{text}");
        }
    }

    #[test]
    fn invalid_records() {
        for text in [
            "v=STSv1",
            "v=STSv1;",
            "v=STSv1; ;",
            "v=STSv1;; id=abc",
            "v=STSv1; id=abc;;",
            "v=STSv1; id=",
            "v=STSv1; id=a-b",
            "v=STSv1; id=abc; id=abd",
            "v=STSv1; id = abc",
            "v=STSv1; ID=abc",
            "v=STSv1 ; id=abc",
            " v=STSv1; id=abc",
            "v=STSv2; id=abc",
            "v=STSv1; id=abc; x=",
            "v=STSv1; id=abc; x=a b",
            "v=STSv1; id=abc; =x",
            "v=STSv1; id=abc; x",
        ] {
            assert!(Record::parse(text).is_err(), "{text}");
        }
        assert!(Record::parse(&format!("v=STSv1; id={}", "1".repeat(33))).is_err());
        assert!(Record::parse(&format!("v=STSv1; id={}", "1".repeat(32))).is_ok());
    }

    #[test]
    fn exactly_one_record_starting_with_the_version_counts() {
        let found = discover(&strings(&["v=spf1 -all", "v=STSv1; id=1;"]));
        assert_eq!(found, Ok(Record { id: "1".into() }));
        assert_eq!(discover(&strings(&["v=spf1 -all"])), Err(RecordError::None("v=STSv1;")));
        assert_eq!(discover(&[]), Err(RecordError::None("v=STSv1;")));
        assert_eq!(discover(&strings(&["v=STSv1; id=1;", "v=STSv1; id=2;"])), Err(RecordError::Several("v=STSv1;", 2)));
        assert!(matches!(discover(&strings(&["v=STSv1; id=1-2;"])), Err(RecordError::Invalid(_))));
        // `v=STSv1 ;` does not begin with `v=STSv1;`: discarded.
        assert_eq!(discover(&strings(&["v=STSv1 ; id=1;"])), Err(RecordError::None("v=STSv1;")));
    }
}
