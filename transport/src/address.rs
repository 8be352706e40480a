//! A mail address (`local-part@domain`), parsed once where text from outside becomes
//! one (an SMTP path, a replay file, a TLSRPT `mailto:` rua, the configuration) and
//! passed around as [`Address`] after that: the local part, the domain and the domain's
//! routed form are read from it, never split out of a string again.
//!
//! Two ways in: [`Address::parse`], the RFC 5321 §4.1.2 Mailbox grammar with RFC
//! 6531's UTF-8 (what the SMTP sessions accept), and [`Address::parse_configured`], the
//! plain `local@domain` form configured addresses (the postmaster) must have.
//!
//! Compiled with the `config` feature: the configuration's validation uses it too.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 §4.5.3.1.1 (domains: the host-name rule, 253).
const MAX_LOCAL_PART: usize = 64;

/// An address as it was given (the form stored, logged and relayed); `Recipient`s
/// from the SMTP sessions have the domain's trailing dot removed
/// ([`Address::without_trailing_dot`]).
///
/// Serialized as the bare string: queue files, shadow copies, tracking logs and the
/// admin API's JSON hold the same text as before the type existed. Deserializing does
/// not parse again: what is read back was parsed when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(Box<str>);

/// Why a text is not an address under the SMTP grammar ([`Address::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} has no @ between a local part and a domain")]
    NoDomain(String),
    #[error("{0:?}: the local part must be a dot-atom or a quoted string of 1 to 64 octets")]
    LocalPart(String),
    #[error("{0:?}: the domain must be a host name, an internationalized domain name or an address literal")]
    Domain(String),
}

/// Why a configured address is refused ([`Address::parse_configured`]); the text names
/// the value and the form wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an address: write local@domain (e.g. postmaster@example.com)")]
pub struct ConfiguredAddressError(String);

impl Address {
    /// `Local-part "@" ( Domain / address-literal )` (RFC 5321 §4.1.2), a domain
    /// also as U-labels (RFC 6531). Whether UTF-8 may be used at all (SMTPUTF8 was
    /// declared) is the caller's question ([`Address::is_ascii`]).
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let (local, domain) = text.rsplit_once('@').ok_or_else(|| AddressError::NoDomain(text.into()))?;
        if local.is_empty() || local.len() > MAX_LOCAL_PART || !(valid_dot_string(local) || valid_quoted_string(local))
        {
            return Err(AddressError::LocalPart(text.into()));
        }
        if !(valid_domain(domain) || valid_address_literal(domain) || valid_idn(domain)) {
            return Err(AddressError::Domain(text.into()));
        }
        Ok(Address(text.into()))
    }

    /// The stricter form a configured address must have: `local@domain`, a local part
    /// of at most 64 printable ASCII characters without specials (no quoting), and a
    /// host-name domain (ASCII, no trailing dot, no address literal).
    pub fn parse_configured(text: &str) -> Result<Address, ConfiguredAddressError> {
        let ok = text.rsplit_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= MAX_LOCAL_PART
                && local.bytes().all(|b| {
                    b.is_ascii_graphic()
                        && !matches!(
                            b,
                            b'@' | b'<' | b'>' | b'"' | b'(' | b')' | b',' | b';' | b':' | b'[' | b']' | b'\\'
                        )
                })
                && crate::config::validate::is_host_name(domain)
        });
        if ok {
            Ok(Address(text.into()))
        } else {
            Err(ConfiguredAddressError(text.into()))
        }
    }

    /// `postmaster@<domain>`: whom `RCPT TO:<Postmaster>` (RFC 5321 §4.5.1) and the
    /// server's own mail stand for. `domain` is a configured host name or accepted domain.
    pub fn postmaster_at(domain: &str) -> Result<Address, AddressError> {
        Address::parse(&format!("postmaster@{domain}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Everything before the last `@`, as written (quotes included).
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }

    /// Everything after the last `@`, as written (case, U-labels and a trailing dot
    /// kept); `""` for an address read back from a store without one.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// The domain in the form it is routed and compared in ([`routed_domain`]): lower
    /// case, no trailing dot, an internationalized domain as its A-label
    /// (`bücher.test` → `xn--bcher-kva.test`).
    pub fn routed_domain(&self) -> String {
        routed_domain(self.domain())
    }

    /// No UTF-8 anywhere: relayable without SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }

    /// The same address without the domain's trailing dot (`a@b.test.` is `a@b.test`):
    /// the form recipients are kept in.
    pub fn without_trailing_dot(self) -> Address {
        match self.0.strip_suffix('.') {
            Some(trimmed) if !self.domain().is_empty() => Address(trimmed.into()),
            _ => self,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl PartialEq<str> for Address {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A domain in the form it is routed and compared in; one that is no valid
/// internationalized name stays as written, in lower case, and matches nothing but
/// itself.
pub fn routed_domain(domain: &str) -> String {
    ascii_domain(domain).unwrap_or_else(|| domain.to_lowercase())
}

/// A domain's A-label form (UTS 46 processing with the STD3 and hyphen rules:
/// host names as IDNA2008 allows them), lower case, no trailing dot; `None`
/// when it is not a valid internationalized domain name. The one conversion every comparison
/// of domains goes through (accepted domains, address spaces, MX lookups).
pub fn ascii_domain(domain: &str) -> Option<String> {
    let domain = domain.trim_end_matches('.');
    if domain.is_ascii() {
        return Some(domain.to_ascii_lowercase());
    }
    idna::domain_to_ascii_strict(domain).ok().filter(|d| !d.is_empty())
}

/// `sub-domain *("." sub-domain)`, letters, digits and inner hyphens (the
/// config's host-name rule); one trailing dot is tolerated (it means the same domain).
pub fn valid_domain(s: &str) -> bool {
    crate::config::validate::is_host_name(s.strip_suffix('.').unwrap_or(s))
}

/// RFC 5322 atext, with RFC 6531's UTF-8 (any non-ASCII character that is
/// not a control or a space).
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        !c.is_control() && !c.is_whitespace()
    }
}

fn valid_dot_string(s: &str) -> bool {
    s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// An internationalized domain (U-labels, RFC 6531) whose A-label form is a
/// valid host name.
fn valid_idn(s: &str) -> bool {
    !s.is_ascii()
        && s.chars().all(|c| !c.is_control() && !c.is_whitespace())
        && ascii_domain(s).is_some_and(|a| valid_domain(&a))
}

/// `DQUOTE *( qtextSMTP / quoted-pairSMTP ) DQUOTE`.
fn valid_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else { return false };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if !chars.next().is_some_and(|e| (' '..='~').contains(&e)) {
                    return false;
                }
            }
            '"' => return false,
            ' '..='~' => {}
            // RFC 6531 §3.3: qtextSMTP =/ UTF8-non-ascii.
            c if !c.is_ascii() && !c.is_control() => {}
            _ => return false,
        }
    }
    true
}

/// `[1.2.3.4]` or `[IPv6:...]` (general address literals are not supported).
fn valid_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else { return false };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(text: &str) -> bool {
        Address::parse(text).is_ok()
    }

    #[test]
    fn local_parts_as_rfc_5321_allows() {
        for ok in ["user%other@local.test", "a!b@local.test", "\"john doe\"@local.test", "\"a>b\"@local.test"] {
            assert!(parses(ok), "{ok}");
        }
        assert!(matches!(Address::parse("a..b@local.test"), Err(AddressError::LocalPart(_))));
        assert!(matches!(Address::parse("@local.test"), Err(AddressError::LocalPart(_))));
        assert!(matches!(Address::parse(&format!("{}@b.test", "x".repeat(65))), Err(AddressError::LocalPart(_))));
        assert!(parses(&format!("{}@b.test", "x".repeat(64))));
        assert!(matches!(Address::parse("not an address"), Err(AddressError::NoDomain(_))));
    }

    #[test]
    fn domains_names_literals_and_idns() {
        for ok in ["user@[127.0.0.1]", "user@[IPv6:::1]", "user@local.test.", "用户@例子.广告", "jörg@bücher.test"]
        {
            assert!(parses(ok), "{ok}");
        }
        for bad in ["a@", "a@-x.test", "a@[999.1.1.1]", "a@bü cher.test", "a@xn--a.bücher.test", "a@-ü.test"] {
            assert!(matches!(Address::parse(bad), Err(AddressError::Domain(_))), "{bad}");
        }
        assert!(!parses("a\u{85}b@example.org"), "a control in the local part");
        assert!(!parses(&format!("{}@example.org", "ü".repeat(33))), "64 octets");
        assert!(parses("\"jörg m\"@example.org"));
    }

    #[test]
    fn accessors_split_at_the_last_at_sign() {
        let a = Address::parse("\"a@b\"@Bücher.Test.").unwrap();
        assert_eq!((a.local_part(), a.domain()), ("\"a@b\"", "Bücher.Test."));
        assert_eq!(a.routed_domain(), "xn--bcher-kva.test");
        assert!(!a.is_ascii());
        let literal = Address::parse("user@[IPv6:::1]").unwrap();
        assert_eq!((literal.domain(), literal.routed_domain().as_str()), ("[IPv6:::1]", "[ipv6:::1]"));
        let plain = Address::parse("Alice@Example.ORG").unwrap();
        assert_eq!((plain.as_str(), plain.routed_domain().as_str()), ("Alice@Example.ORG", "example.org"));
        assert_eq!(plain.to_string(), "Alice@Example.ORG");
    }

    #[test]
    fn a_trailing_dot_is_dropped_from_the_domain_only() {
        assert_eq!(Address::parse("a@b.test.").unwrap().without_trailing_dot(), "a@b.test");
        assert_eq!(Address::parse("a@b.test").unwrap().without_trailing_dot(), "a@b.test");
    }

    #[test]
    fn configured_addresses_are_plain() {
        assert_eq!(Address::parse_configured("pm@b.test").unwrap(), "pm@b.test");
        for bad in ["postmaster", "@example.test", "post master@example.test", "pm@exa mple", "pm@", "\"q\"@b.test"] {
            let e = Address::parse_configured(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("\"{bad}\" is not an address: write local@domain (e.g. postmaster@example.com)")
            );
        }
    }

    #[test]
    fn stored_as_the_bare_string() {
        // An envelope address as queue files, shadow copies and the admin API wrote it
        // before the type existed reads back the same, also one no parser would take.
        for stored in ["\"jörg@bücher.test\"", "\"postmaster\""] {
            let a: Address = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&a).unwrap(), stored);
        }
        assert_eq!(Address::postmaster_at("local.test").unwrap(), "postmaster@local.test");
    }
}
