//! The `_smtp._tls.<domain>` TXT record (RFC 8460 §3):
//! `v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/tlsrpt`.
//! Hand-written: the grammar is a dozen lines of ABNF and no maintained crate parses it;
//! strict so that a record a receiver did not mean is not acted on. The framing it shares
//! with the MTA-STS record is read by `delivery::txt_record`.
use crate::delivery::txt_record;
use crate::envelope::Address;
pub use txt_record::RecordError;

/// Where a domain wants its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Every `rua` URI, in the record's order.
    pub rua: Vec<Rua>,
}

/// One report destination (RFC 8460 §3: `mailto:` or `https:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    /// The address of a `mailto:` URI, %-decoded, without `?` fields.
    Mailto(Address),
    /// An `https:` URI: the report is POSTed there.
    Https(HttpsRua),
}

/// Where an `https:` rua points (parsed by the `http` types hyper uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsRua {
    /// The URI as written, for logs and the admin API.
    pub uri: String,
    pub host: String,
    pub port: u16,
    /// Path and query, `/` when the URI has none.
    pub path: String,
}

impl HttpsRua {
    fn parse(uri: &str) -> Result<HttpsRua, String> {
        let bad = |why: &str| format!("rua {uri:?} {why}");
        let parsed: hyper::Uri = uri.parse().map_err(|e| bad(&format!("is not a URI: {e}")))?;
        if parsed.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("https") {
            return Err(bad("is not https:"));
        }
        let authority = parsed.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("has a user name, which a report is never sent with"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        // After an IPv6 literal's `]`, a `:` starts the port.
        let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
        let port = match (authority.port_u16(), after_host.contains(':')) {
            (None, false) => 443,
            (Some(port), true) if port > 0 => port,
            _ => return Err(bad("has a port out of range (1 to 65535)")),
        };
        let path = match (parsed.path(), parsed.query()) {
            ("", None) => "/".to_string(),
            ("", Some(query)) => format!("/?{query}"),
            (path, None) => path.to_string(),
            (path, Some(query)) => format!("{path}?{query}"),
        };
        Ok(HttpsRua { uri: uri.to_string(), host, port, path })
    }
}

const VERSION: &str = "v=TLSRPTv1";

/// §3: TXT records that do not begin with `v=TLSRPTv1` are discarded; exactly one must be
/// left, and valid, or the domain does not take reports.
pub fn discover(texts: &[String]) -> Result<Record, RecordError> {
    txt_record::discover(texts, VERSION, Record::parse)
}

impl Record {
    /// `v=TLSRPTv1` then fields separated by `;` (white space around it allowed), an
    /// optional final `;`; `rua` exactly once with one or more URIs separated by `,`;
    /// other fields must be well formed extensions (`name=value`).
    pub fn parse(text: &str) -> Result<Record, String> {
        let mut fields = text.split(';');
        if fields.next().map(|f| f.trim_end_matches([' ', '\t'])) != Some(VERSION) {
            return Err(format!("it does not start with {VERSION}"));
        }
        let mut rua = None;
        txt_record::each_field(fields, |name, value| {
            if name == "rua" {
                if rua.is_some() {
                    return Err("rua is given twice".to_string());
                }
                rua = Some(parse_rua(value)?);
            } else if !txt_record::extension_value_ok(value) {
                // tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
                return Err(format!("the value of {name} is not valid"));
            }
            Ok(())
        })?;
        rua.map(|rua| Record { rua }).ok_or_else(|| "it has no rua".to_string())
    }

    /// The `mailto:` addresses: the report goes to them in one mail.
    pub fn mailto(&self) -> Vec<&Address> {
        self.rua
            .iter()
            .filter_map(|r| match r {
                Rua::Mailto(a) => Some(a),
                Rua::Https(_) => None,
            })
            .collect()
    }

    /// The `https:` URIs: the report is POSTed to each.
    pub fn https(&self) -> Vec<&HttpsRua> {
        self.rua
            .iter()
            .filter_map(|r| match r {
                Rua::Https(h) => Some(h),
                Rua::Mailto(_) => None,
            })
            .collect()
    }
}

/// `tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)`; commas inside a URI are %-encoded.
fn parse_rua(value: &str) -> Result<Vec<Rua>, String> {
    value.split(',').map(|uri| parse_uri(uri.trim_matches([' ', '\t']))).collect()
}

fn parse_uri(uri: &str) -> Result<Rua, String> {
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("rua {uri:?} is not a URI"));
    }
    let (scheme, rest) = uri.split_once(':').ok_or_else(|| format!("rua {uri:?} has no scheme"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "mailto" => {
            // RFC 6068: `mailto:addr[?hfields]`; only the address is used.
            let address = percent_decode(rest.split('?').next().unwrap_or(""))
                .ok_or_else(|| format!("rua {uri:?} has a bad %-escape"))?;
            // The report is queued to it: the SMTP grammar, as for any recipient.
            match Address::parse(&address) {
                Ok(address) if !address.as_str().contains(',') => Ok(Rua::Mailto(address)),
                _ => Err(format!("rua {uri:?} is not one mail address")),
            }
        }
        "https" => HttpsRua::parse(uri).map(Rua::Https),
        _ => Err(format!("rua {uri:?} is neither mailto: nor https:")),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_rfc_examples_parse() {
        let r = Record::parse("v=TLSRPTv1;rua=mailto:reports@example.com").unwrap();
        assert_eq!(r.rua, [Rua::Mailto(Address::parse("reports@example.com").unwrap())]);
        let r = Record::parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt").unwrap();
        let https = HttpsRua {
            uri: "https://reporting.example.com/v1/tlsrpt".into(),
            host: "reporting.example.com".into(),
            port: 443,
            path: "/v1/tlsrpt".into(),
        };
        assert_eq!(r.rua, [Rua::Https(https)]);
        assert!(r.mailto().is_empty());
        let r = Record::parse("v=TLSRPTv1; rua=mailto:a@x.test,HTTPS://Reports.X.test:8443?k=v").unwrap();
        assert_eq!(r.mailto(), ["a@x.test"]);
        let https = r.https();
        assert_eq!((https[0].host.as_str(), https[0].port, https[0].path.as_str()), ("reports.x.test", 8443, "/?k=v"));
        let r = Record::parse("v=TLSRPTv1; rua=mailto:a@x.test , mailto:b%2Bc@y.test?subject=x ; ext=1;").unwrap();
        assert_eq!(r.mailto(), ["a@x.test", "b+c@y.test"]);
        assert!(Record::parse("v=TLSRPTv1; rua=mailto:a@x.test, mailto:b%2c@y.test").is_err(), "a decoded comma");
        let r = Record::parse("v=TLSRPTv1; rua=mailto:a@x.test, MAILTO:b@y.test").unwrap();
        assert_eq!(r.mailto(), ["a@x.test", "b@y.test"]);
    }

    #[test]
    fn anything_malformed_is_refused() {
        for bad in [
            "v=TLSRPTv1",
            "v=TLSRPTv1;",
            "v=TLSRPTv2; rua=mailto:a@x.test",
            "v=tlsrptv1; rua=mailto:a@x.test",
            "v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test",
            "v=TLSRPTv1; rua=",
            "v=TLSRPTv1; rua=mailto:a@x.test,",
            "v=TLSRPTv1; rua=mailto:nobody",
            "v=TLSRPTv1; rua=ftp://x.test/",
            "v=TLSRPTv1; rua=https:",
            "v=TLSRPTv1; rua=https://",
            "v=TLSRPTv1; rua=https:///path",
            "v=TLSRPTv1; rua=https://user@reports.x.test/",
            "v=TLSRPTv1; rua=https://reports.x.test:99999/",
            "v=TLSRPTv1; rua=https://reports.x.test:0/",
            "v=TLSRPTv1; rua=mailto:a%zz@x.test",
            "v=TLSRPTv1; ext=1",
            "v=TLSRPTv1; rua=mailto:a@x.test;; ",
            "v=TLSRPTv1; -x=1; rua=mailto:a@x.test",
            "v=TLSRPTv1; rua=mailto:a@x.test; x",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}: {:?}", Record::parse(bad));
        }
    }

    #[test]
    fn discovery_wants_exactly_one_record() {
        assert_eq!(discover(&strings(&["v=spf1 -all"])), Err(RecordError::None(VERSION)));
        let two = strings(&["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"]);
        assert_eq!(discover(&two), Err(RecordError::Several(VERSION, 2)));
        let one = strings(&["other", "v=TLSRPTv1; rua=mailto:a@x.test"]);
        assert_eq!(discover(&one).unwrap().mailto(), ["a@x.test"]);
        assert!(matches!(discover(&strings(&["v=TLSRPTv1; rua=x"])), Err(RecordError::Invalid(_))));
    }
}
