//! The MTA-STS policy file (RFC 8461 §3.2) and MX host matching (§4.1).
//!
//! Written by hand: the grammar is a dozen lines of ABNF, no maintained crate parses
//! it strictly (the ones there are accept what §3.2 refuses or pull in an HTTP stack),
//! and this parser decides what mail may only go over TLS, so it stays small, pure and
//! fuzzed (`fuzz/fuzz_targets/mta_sts_policy.rs`).
//!
//! Strict as the ABNF: lines end in LF or CRLF, one line end after the last field at
//! most, no empty line, field names and the known values case-sensitive, `version`,
//! `mode` and `max_age` exactly once, `mx` at least once unless the mode is `none`.
//! Unknown fields are ignored when they are well formed.
use std::fmt;

/// RFC 8461 §3.2: the longest max_age a policy may ask for (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// A field name is one letter or digit and up to 31 more (§3.2 `sts-policy-ext-name`).
const MAX_FIELD_NAME: usize = 32;

/// What a domain asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the policy's MX hosts, only over TLS with a valid certificate.
    Enforce,
    /// Deliver as without a policy; failures are only reported.
    Testing,
    /// As though the domain had no policy.
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// One `mx:` value: a host name, or `*.` and a domain for any host one label under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxPattern {
    wildcard: bool,
    /// Lower case, without `*.`.
    domain: String,
}

impl MxPattern {
    /// §4.1: `mail.example.com` matches itself only; `*.example.com` matches one label
    /// in front of `example.com` (`mx1.example.com`), neither `example.com` nor
    /// `a.b.example.com`. Without regard to case; a trailing dot on `host` is ignored.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.domain);
        }
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(&self.domain),
            None => false,
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

/// A parsed policy. Extension fields are not kept: nothing acts on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub mx: Vec<MxPattern>,
    /// Seconds the policy may be cached from its fetch (at most [`MAX_AGE_LIMIT`]).
    pub max_age: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is empty")]
    Empty,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("the policy has no {0} field")]
    Missing(&'static str),
    #[error("mode {0} needs at least one mx field")]
    NoMx(&'static str),
}

impl Policy {
    /// Parses a policy body (the HTTPS response, already UTF-8).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        if text.is_empty() {
            return Err(PolicyError::Empty);
        }
        // One line end may follow the last field (`[sts-policy-term]`).
        let body = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
        let (mut version, mut mode, mut max_age) = (false, None, None);
        let mut mx = Vec::new();
        let lines: Vec<&str> = body.split('\n').collect();
        for (index, &line) in lines.iter().enumerate() {
            let bad = |problem: String| PolicyError::Line { line: index + 1, problem };
            // A CR ends a line only before its LF: the last line has none (a bare CR is a
            // control character in its value).
            let line = if index + 1 < lines.len() { line.strip_suffix('\r').unwrap_or(line) } else { line };
            let (name, value) = field(line).map_err(bad)?;
            match name {
                "version" => {
                    once(version, "version").map_err(bad)?;
                    if value != "STSv1" {
                        return Err(bad(format!("version {value:?} is not STSv1")));
                    }
                    version = true;
                }
                "mode" => {
                    once(mode.is_some(), "mode").map_err(bad)?;
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(bad(format!("mode {other:?} is not enforce, testing or none"))),
                    });
                }
                "max_age" => {
                    once(max_age.is_some(), "max_age").map_err(bad)?;
                    max_age = Some(parse_max_age(value).map_err(bad)?);
                }
                "mx" => mx.push(parse_mx(value).map_err(bad)?),
                // §3.2: other fields are extensions this sender does not know.
                _ => {}
            }
        }
        if !version {
            return Err(PolicyError::Missing("version"));
        }
        let mode = mode.ok_or(PolicyError::Missing("mode"))?;
        let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx(mode.as_str()));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// The MX host may be used under this policy (§4.1).
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }

    /// The `mx:` patterns, comma-separated (for reasons and logs).
    pub fn mx_list(&self) -> String {
        self.mx.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    /// The policy as a file [`Policy::parse`] reads back to the same value.
    pub fn render(&self) -> String {
        let mut text = format!("version: STSv1\nmode: {}\n", self.mode.as_str());
        for pattern in &self.mx {
            text.push_str(&format!("mx: {pattern}\n"));
        }
        text.push_str(&format!("max_age: {}\n", self.max_age));
        text
    }
}

fn once(seen: bool, name: &str) -> Result<(), String> {
    if seen {
        Err(format!("{name} is given twice"))
    } else {
        Ok(())
    }
}

/// `name ":" *WSP value *WSP`: the name checked as §3.2's field names, the value
/// without the white space around it and without control characters.
fn field(line: &str) -> Result<(&str, &str), String> {
    if line.is_empty() {
        return Err("empty line".to_string());
    }
    let Some((name, value)) = line.split_once(':') else {
        return Err(format!("{:?} is not a name: value field", shorten(line)));
    };
    let name_ok = name.len() <= MAX_FIELD_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        return Err(format!("{:?} is not a field name", shorten(name)));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(format!("{name} has no value"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name} holds a control character"));
    }
    Ok((name, value))
}

/// `1*10(DIGIT)`, at most [`MAX_AGE_LIMIT`].
fn parse_max_age(value: &str) -> Result<u64, String> {
    if value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("max_age {:?} is not a number of seconds", shorten(value)));
    }
    let seconds: u64 = value.parse().map_err(|_| format!("max_age {value:?} is not a number of seconds"))?;
    if seconds > MAX_AGE_LIMIT {
        return Err(format!("max_age {seconds} is over the limit of {MAX_AGE_LIMIT} seconds"));
    }
    Ok(seconds)
}

/// `["*."] Domain` with RFC 5321's Domain: LDH labels of 1 to 63 characters that
/// neither start nor end with a hyphen, at most 253 characters, no trailing dot.
fn parse_mx(value: &str) -> Result<MxPattern, String> {
    let (wildcard, domain) = match value.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!("mx {:?} is not a host name or *.domain", shorten(value)));
    }
    Ok(MxPattern { wildcard, domain: domain.to_ascii_lowercase() })
}

/// Untrusted text in an error: at most 64 characters of it.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        Policy::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn a_policy_with_crlf_or_lf_line_ends() {
        let lf = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";
        let policy = Policy::parse(lf).expect("valid");
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age, 86400);
        assert_eq!(policy.mx_list(), "mail.example.com, *.example.net");
        assert_eq!(Policy::parse(&lf.replace('\n', "\r\n")), Ok(policy.clone()));
        // No line end after the last field, white space around values, fields in any order,
        // a mix of CRLF and LF.
        let loose = "max_age:86400\r\nmx:   MAIL.example.com \nmode: enforce\t\r\nversion: STSv1\nmx: *.example.net";
        assert_eq!(Policy::parse(loose), Ok(policy.clone()));
        assert_eq!(Policy::parse(&policy.render()), Ok(policy));
    }

    #[test]
    fn unknown_fields_are_ignored_when_well_formed() {
        let text = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 0\nx-future_1.b: anything, ünïcode\n";
        let policy = Policy::parse(text).expect("valid");
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.max_age, 0);
        assert!(problem("version: STSv1\nmode: none\nmax_age: 1\n-bad: x\n").contains("not a field name"));
        assert!(problem("version: STSv1\nmode: none\nmax_age: 1\nx: \n").contains("x has no value"));
        let long_name = format!("version: STSv1\nmode: none\nmax_age: 1\n{}: x\n", "a".repeat(33));
        assert!(problem(&long_name).contains("not a field name"));
    }

    #[test]
    fn mode_none_needs_no_mx() {
        let policy = Policy::parse("version: STSv1\nmode: none\nmax_age: 31557600\n").expect("valid");
        assert_eq!((policy.mode, policy.mx.len()), (Mode::None, 0));
        assert!(!policy.allows("mx.example.com"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_line_at_fault() {
        let cases = [
            ("", "empty"),
            ("version: STSv1\nmode: enforce\nmax_age: 60\n", "mode enforce needs at least one mx"),
            ("mode: enforce\nmx: a.test\nmax_age: 60\n", "no version field"),
            ("version: STSv1\nmx: a.test\nmax_age: 60\n", "no mode field"),
            ("version: STSv1\nmode: enforce\nmx: a.test\n", "no max_age field"),
            ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n", "line 1: version \"STSv2\""),
            ("version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 60\n", "line 2: mode \"Enforce\""),
            ("Version: STSv1\nmode: none\nmax_age: 60\n", "no version"),
            ("version: STSv1\nmode: none\nmax_age: 60\r", "line 3: max_age holds a control character"),
            ("version: STSv1\nmode: none\nmode: none\nmax_age: 60\n", "line 3: mode is given twice"),
            ("version: STSv1\nversion: STSv1\nmode: none\nmax_age: 60\n", "version is given twice"),
            ("version: STSv1\nmode: none\nmax_age: 60\nmax_age: 60\n", "max_age is given twice"),
            ("version: STSv1\nmode: none\nmax_age: 31557601\n", "over the limit"),
            ("version: STSv1\nmode: none\nmax_age: 12345678901\n", "not a number"),
            ("version: STSv1\nmode: none\nmax_age: -1\n", "not a number"),
            ("version: STSv1\nmode: none\nmax_age: 1d\n", "not a number"),
            ("version: STSv1\nmode: none\nmax_age: +5\n", "not a number"),
            ("version: STSv1\n\nmode: none\nmax_age: 60\n", "line 2: empty line"),
            ("version: STSv1\nmode: none\nmax_age: 60\n\n", "line 4: empty line"),
            ("version: STSv1\nmode: none\r\rmax_age: 60\n", "line 2: "),
            ("version: STSv1\nmode none\nmax_age: 60\n", "not a name: value field"),
            (" version: STSv1\nmode: none\nmax_age: 60\n", "not a field name"),
            ("version: STSv1\nmode: none\u{0}\nmax_age: 60\n", "control character"),
        ];
        for (text, expected) in cases {
            let got = problem(text);
            assert!(got.contains(expected), "{text:?}: {got}");
        }
    }

    #[test]
    fn mx_patterns_are_host_names_or_one_wildcard_label() {
        let policy = |mx: &str| Policy::parse(&format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 60\n"));
        for good in ["mx.example.com", "*.example.com", "localhost", "a-b.c0.example", "xn--bcher-kva.example"] {
            assert!(policy(good).is_ok(), "{good}");
        }
        for bad in [
            "*",
            "*.",
            "**.example.com",
            "a.*.example.com",
            "mx.example.com.",
            ".example.com",
            "-mx.example.com",
            "mx-.example.com",
            "mx..example.com",
            "mx_1.example.com",
            "mx example.com",
            "bücher.example",
            "[192.0.2.1]",
        ] {
            assert!(policy(bad).is_err(), "{bad}");
        }
        assert!(policy(&format!("{}.example", "a".repeat(64))).is_err());
        assert!(policy(&vec!["a".repeat(60); 5].join(".")).is_err(), "over 253 characters");
    }

    #[test]
    fn mx_matching_follows_section_4_1() {
        let p = Policy::parse("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.Example.NET\nmax_age: 60\n")
            .expect("valid");
        for allowed in ["mail.example.com", "MAIL.Example.Com", "mail.example.com.", "mx1.example.net", "A.example.net"]
        {
            assert!(p.allows(allowed), "{allowed}");
        }
        for refused in [
            "example.com",
            "mx.mail.example.com",
            "other.example.com",
            "example.net",
            "a.b.example.net",
            ".example.net",
            "mx1.example.net.evil",
            "mailexample.com",
            "",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
    }
}
