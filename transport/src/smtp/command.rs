//! Command lines of the receive side: the verb, and the arguments of MAIL and
//! RCPT (RFC 5321 §4.1.2 paths, RFC 1870 SIZE, RFC 6152 BODY, RFC 3461 RET,
//! ENVID, NOTIFY, ORCPT, RFC 4954 AUTH=).
//!
//! Hand-written rather than taken from `smtp-proto` 0.2: that parser skips bare
//! CR inside command lines, turns `<postmaster>` into the same empty string as
//! the null path `<>`, keeps ORCPT only decoded (we store it as given), and
//! accepts a dozen extensions we do not offer (SMTPUTF8, BY, HOLDFOR, ...) that
//! would then have to be refused after the fact. A strict parser of the few
//! things we offer is shorter than that adaptation, and says exactly what is
//! wrong.
use crate::address::{valid_domain, Address, AddressError};
use crate::envelope::{Notify, Ret};

/// RFC 5321 §4.5.3.1.3 (the local part's and the domain's limits are the address's).
const MAX_PATH: usize = 256;
/// RFC 3461 §4.4 and §5.4.
const MAX_ENVID: usize = 100;
const MAX_ORCPT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// RFC 3030 CHUNKING.
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
    Unknown,
}

/// Splits a command line (without its line end) into the verb and the rest.
/// The rest keeps everything after the single space that follows the verb.
pub fn split_verb(line: &str) -> (Verb, &str) {
    let (word, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = match word.to_ascii_uppercase().as_str() {
        "HELO" => Verb::Helo,
        "EHLO" => Verb::Ehlo,
        "MAIL" => Verb::Mail,
        "RCPT" => Verb::Rcpt,
        "DATA" => Verb::Data,
        "BDAT" => Verb::Bdat,
        "RSET" => Verb::Rset,
        "NOOP" => Verb::Noop,
        "QUIT" => Verb::Quit,
        "VRFY" => Verb::Vrfy,
        "EXPN" => Verb::Expn,
        "HELP" => Verb::Help,
        "STARTTLS" => Verb::StartTls,
        "AUTH" => Verb::Auth,
        _ => Verb::Unknown,
    };
    (verb, rest)
}

/// What is wrong with the arguments of a command; the session turns it into a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// The command's general form (`MAIL FROM:`, `RCPT TO:`): `501 5.5.2`.
    Syntax(&'static str),
    /// The path's form (angle brackets, source route, length) is wrong: `501 5.1.7`
    /// (MAIL) or `501 5.1.3` (RCPT).
    Address,
    /// The mailbox in the path is no address: the same replies as [`ArgError::Address`].
    Mailbox(AddressError),
    /// A parameter we do not implement: `555 5.5.4`.
    Unsupported(String),
    /// A parameter we implement, with a bad value or given twice: `501 5.5.4`.
    Invalid(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
    /// RFC 3030: any octets, sent only with BDAT.
    BinaryMime,
}

/// MAIL FROM and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailArgs {
    /// `None` is the null reverse path `<>`.
    pub from: Option<Address>,
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub ret: Option<Ret>,
    /// ENVID, xtext-decoded.
    pub envid: Option<String>,
    /// RFC 6531: UTF-8 addresses and headers may follow.
    pub smtputf8: bool,
    /// RFC 8689: relay only over verified TLS.
    pub requiretls: bool,
}

/// RCPT TO and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptArgs {
    pub to: Forward,
    pub notify: Option<Notify>,
    /// ORCPT as given (`addr-type;xtext`), checked.
    pub orcpt: Option<String>,
}

/// A forward path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// `local@domain` as given (a source route, if any, already stripped).
    Mailbox(Address),
    /// `<Postmaster>` without a domain (RFC 5321 §4.5.1: must be accepted).
    Postmaster,
}

pub fn parse_mail(args: &str) -> Result<MailArgs, ArgError> {
    let rest = strip_keyword(args, "FROM:").ok_or(ArgError::Syntax("Syntax: MAIL FROM:<address> [parameters]"))?;
    let (path, params) = split_path(rest)?;
    let from = if path.is_empty() { None } else { Some(parse_mailbox(path)?) };
    let mut out = MailArgs { from, ..Default::default() };
    let mut seen_auth = false;
    for (key, value) in parse_params(params)? {
        match key.as_str() {
            "SIZE" => {
                let v = value.filter(|v| (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()));
                let size = v.and_then(|v| v.parse::<u64>().ok()).ok_or(ArgError::Invalid("SIZE"))?;
                set_once(&mut out.size, size, "SIZE")?;
            }
            "BODY" => {
                let body = match value.map(|v| v.to_ascii_uppercase()).as_deref() {
                    Some("7BIT") => Body::SevenBit,
                    Some("8BITMIME") => Body::EightBitMime,
                    Some("BINARYMIME") => Body::BinaryMime,
                    _ => return Err(ArgError::Invalid("BODY")),
                };
                set_once(&mut out.body, body, "BODY")?;
            }
            "RET" => {
                let ret = match value.map(|v| v.to_ascii_uppercase()).as_deref() {
                    Some("FULL") => Ret::Full,
                    Some("HDRS") => Ret::Hdrs,
                    _ => return Err(ArgError::Invalid("RET")),
                };
                set_once(&mut out.ret, ret, "RET")?;
            }
            "ENVID" => {
                let decoded = value.and_then(decode_xtext).ok_or(ArgError::Invalid("ENVID"))?;
                if decoded.is_empty()
                    || decoded.len() > MAX_ENVID
                    || !decoded.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    return Err(ArgError::Invalid("ENVID"));
                }
                set_once(&mut out.envid, decoded, "ENVID")?;
            }
            "SMTPUTF8" => {
                if out.smtputf8 || value.is_some() {
                    return Err(ArgError::Invalid("SMTPUTF8"));
                }
                out.smtputf8 = true;
            }
            "REQUIRETLS" => {
                if out.requiretls || value.is_some() {
                    return Err(ArgError::Invalid("REQUIRETLS"));
                }
                out.requiretls = true;
            }
            // RFC 4954 §5: a server offering AUTH accepts this parameter; we
            // do not trust the claimed identity, so it is checked and dropped.
            "AUTH" => {
                if seen_auth || value.and_then(decode_xtext).is_none() {
                    return Err(ArgError::Invalid("AUTH"));
                }
                seen_auth = true;
            }
            _ => return Err(ArgError::Unsupported(key)),
        }
    }
    Ok(out)
}

pub fn parse_rcpt(args: &str) -> Result<RcptArgs, ArgError> {
    let rest = strip_keyword(args, "TO:").ok_or(ArgError::Syntax("Syntax: RCPT TO:<address> [parameters]"))?;
    let (path, params) = split_path(rest)?;
    let to = if path.eq_ignore_ascii_case("postmaster") {
        Forward::Postmaster
    } else if path.is_empty() {
        return Err(ArgError::Address);
    } else {
        Forward::Mailbox(parse_mailbox(path)?)
    };
    let mut out = RcptArgs { to, notify: None, orcpt: None };
    for (key, value) in parse_params(params)? {
        match key.as_str() {
            "NOTIFY" => {
                let notify = value.and_then(parse_notify).ok_or(ArgError::Invalid("NOTIFY"))?;
                set_once(&mut out.notify, notify, "NOTIFY")?;
            }
            "ORCPT" => {
                let v = value.filter(|v| v.len() <= MAX_ORCPT).ok_or(ArgError::Invalid("ORCPT"))?;
                let (kind, xtext) = v.split_once(';').ok_or(ArgError::Invalid("ORCPT"))?;
                let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !kind_ok || decode_xtext(xtext).is_none_or(|d| d.is_empty()) {
                    return Err(ArgError::Invalid("ORCPT"));
                }
                set_once(&mut out.orcpt, v.to_string(), "ORCPT")?;
            }
            _ => return Err(ArgError::Unsupported(key)),
        }
    }
    Ok(out)
}

/// `BDAT <chunk-size> [LAST]` (RFC 3030 §2): the chunk's size in octets and
/// whether it is the last. `None` when the size cannot be read: the chunk's
/// end is then unknown, and the session cannot go on.
pub fn parse_bdat(args: &str) -> Option<(u64, bool)> {
    let mut words = args.split(' ');
    let size = words.next().filter(|w| (1..=20).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit()))?;
    let size = size.parse::<u64>().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// `FROM:` / `TO:`, case-insensitive, then optional spaces (many clients send
/// `MAIL FROM: <a@b>`; RFC 5321 has none, but refusing them helps nobody).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| args[keyword.len()..].trim_start_matches(' '))
}

/// `<path>` and what follows it. The closing `>` is the first one outside a
/// quoted string.
fn split_path(s: &str) -> Result<(&str, &str), ArgError> {
    let inner = s.strip_prefix('<').ok_or(ArgError::Address)?;
    let bytes = inner.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let rest = &inner[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(ArgError::Address);
                }
                if i > MAX_PATH {
                    return Err(ArgError::Address);
                }
                return Ok((&inner[..i], rest));
            }
            _ => {}
        }
        i += 1;
    }
    Err(ArgError::Address)
}

/// RFC 5321 §4.1.1.3 and appendix C: a source route `@a,@b:user@c` is
/// accepted and ignored; the mailbox after the colon is the destination.
fn strip_source_route(path: &str) -> Result<&str, ArgError> {
    if !path.starts_with('@') {
        return Ok(path);
    }
    let (route, mailbox) = path.split_once(':').ok_or(ArgError::Address)?;
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(ArgError::Address)?;
        if !valid_domain(domain) {
            return Err(ArgError::Address);
        }
    }
    Ok(mailbox)
}

/// The mailbox of a path, after its source route.
fn parse_mailbox(path: &str) -> Result<Address, ArgError> {
    Address::parse(strip_source_route(path)?).map_err(ArgError::Mailbox)
}

/// `keyword[=value]` separated by spaces; keywords are returned upper-cased.
fn parse_params(s: &str) -> Result<Vec<(String, Option<&str>)>, ArgError> {
    let mut out = Vec::new();
    for param in s.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ArgError::Syntax("Syntax error in parameters"));
        }
        out.push((key.to_ascii_uppercase(), value));
    }
    Ok(out)
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ArgError> {
    if slot.is_some() {
        return Err(ArgError::Invalid(name));
    }
    *slot = Some(value);
    Ok(())
}

/// `NEVER` or a list of `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461 §4.1).
fn parse_notify(v: &str) -> Option<Notify> {
    let mut n = Notify::default();
    for word in v.split(',') {
        match word.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => return None,
        }
    }
    let others = n.success || n.failure || n.delay;
    (n.never != others).then_some(n)
}

/// RFC 3461 §4 xtext: `+XX` hex escapes, every other character printable
/// ASCII except `+` and `=`. Lower-case hex digits are accepted too.
pub fn decode_xtext(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b'=' => return None,
            33..=126 => out.push(b),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt_address(args: &str) -> String {
        match parse_rcpt(args).expect("valid").to {
            Forward::Mailbox(address) => address.to_string(),
            Forward::Postmaster => "postmaster".into(),
        }
    }

    /// Refused with the "invalid address" reply: the path's form, or its mailbox.
    fn bad_address<T: std::fmt::Debug>(r: Result<T, ArgError>) -> bool {
        matches!(r, Err(ArgError::Address | ArgError::Mailbox(_)))
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(split_verb("mail FROM:<a@b>"), (Verb::Mail, "FROM:<a@b>"));
        assert_eq!(split_verb("StartTLS"), (Verb::StartTls, ""));
        assert_eq!(split_verb("FROB x"), (Verb::Unknown, "x"));
    }

    #[test]
    fn mail_paths_and_parameters() {
        let m = parse_mail("FROM:<a@example.org> SIZE=100 BODY=8bitmime RET=HDRS ENVID=abc+2Bdef").unwrap();
        assert_eq!(m.from.unwrap(), "a@example.org");
        assert_eq!((m.size, m.body, m.ret), (Some(100), Some(Body::EightBitMime), Some(Ret::Hdrs)));
        assert_eq!(m.envid.as_deref(), Some("abc+def"));
        assert_eq!(parse_mail("from: <>").unwrap().from, None);
        assert_eq!(parse_mail("FROM:<@relay.test:a@example.org>").unwrap().from.unwrap(), "a@example.org");
        assert!(parse_mail("FROM:<a@example.org> AUTH=<>").is_ok());
    }

    #[test]
    fn mail_errors_name_what_is_wrong() {
        assert!(bad_address(parse_mail("FROM:not-an-address")));
        assert!(bad_address(parse_mail("FROM:<a@>")));
        assert!(bad_address(parse_mail("FROM:<a@b")));
        assert!(bad_address(parse_mail("FROM:<a@b>x")));
        assert!(matches!(parse_mail("TO:<a@b>"), Err(ArgError::Syntax(_))));
        assert_eq!(parse_mail("FROM:<a@b> FOO=BAR"), Err(ArgError::Unsupported("FOO".into())));
        assert_eq!(parse_mail("FROM:<a@b> SMTPUTF8=yes"), Err(ArgError::Invalid("SMTPUTF8")));
        assert_eq!(parse_mail("FROM:<a@b> SMTPUTF8 SMTPUTF8"), Err(ArgError::Invalid("SMTPUTF8")));
        assert_eq!(parse_mail("FROM:<a@b> SIZE=x"), Err(ArgError::Invalid("SIZE")));
        assert_eq!(parse_mail("FROM:<a@b> SIZE=1 SIZE=2"), Err(ArgError::Invalid("SIZE")));
        assert_eq!(parse_mail("FROM:<a@b> BODY=BINARYMIME").unwrap().body, Some(Body::BinaryMime));
        assert_eq!(parse_mail("FROM:<a@b> BODY=UTF8"), Err(ArgError::Invalid("BODY")));
        assert_eq!(parse_mail("FROM:<a@b> RET=ALL"), Err(ArgError::Invalid("RET")));
        assert_eq!(parse_mail("FROM:<a@b> ENVID=a=b"), Err(ArgError::Invalid("ENVID")));
        assert!(bad_address(parse_mail(&format!("FROM:<{}@b.test>", "x".repeat(65)))));
    }

    #[test]
    fn rcpt_local_parts_routes_and_literals() {
        assert_eq!(rcpt_address("TO:<user%other@local.test>"), "user%other@local.test");
        assert_eq!(rcpt_address("TO:<a!b@local.test>"), "a!b@local.test");
        assert_eq!(rcpt_address("TO:<\"john doe\"@local.test>"), "\"john doe\"@local.test");
        assert_eq!(rcpt_address("TO:<\"a>b\"@local.test>"), "\"a>b\"@local.test");
        assert_eq!(rcpt_address("TO:<@a.test,@b.test:user@c.test>"), "user@c.test");
        assert_eq!(rcpt_address("TO:<user@[127.0.0.1]>"), "user@[127.0.0.1]");
        assert_eq!(rcpt_address("TO:<user@[IPv6:::1]>"), "user@[IPv6:::1]");
        assert_eq!(rcpt_address("TO:<Postmaster>"), "postmaster");
        assert_eq!(rcpt_address("TO:<user@local.test.>"), "user@local.test.");
        assert!(bad_address(parse_rcpt("TO:<not an address>")));
        assert!(bad_address(parse_rcpt("TO:<>")));
        assert!(bad_address(parse_rcpt("TO:<a..b@local.test>")));
        assert!(bad_address(parse_rcpt("TO:<a@-x.test>")));
        assert!(bad_address(parse_rcpt("TO:<a@[999.1.1.1]>")));
        assert!(bad_address(parse_rcpt("TO:<@a.test:>")));
    }

    #[test]
    fn rcpt_dsn_parameters() {
        let r = parse_rcpt("TO:<a@b.test> NOTIFY=success,DELAY ORCPT=rfc822;a+40b.test").unwrap();
        assert_eq!(r.notify, Some(Notify { never: false, success: true, failure: false, delay: true }));
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;a+40b.test"));
        assert_eq!(parse_rcpt("TO:<a@b.test> NOTIFY=NEVER").unwrap().notify.map(|n| n.never), Some(true));
        assert_eq!(parse_rcpt("TO:<a@b.test> NOTIFY=NEVER,FAILURE"), Err(ArgError::Invalid("NOTIFY")));
        assert_eq!(parse_rcpt("TO:<a@b.test> NOTIFY=SOMETIMES"), Err(ArgError::Invalid("NOTIFY")));
        assert_eq!(parse_rcpt("TO:<a@b.test> ORCPT=rfc822"), Err(ArgError::Invalid("ORCPT")));
        assert_eq!(parse_rcpt("TO:<a@b.test> ORCPT=rfc822;a+4"), Err(ArgError::Invalid("ORCPT")));
        assert_eq!(parse_rcpt("TO:<a@b.test> SIZE=1"), Err(ArgError::Unsupported("SIZE".into())));
    }

    #[test]
    fn utf8_addresses_parse_and_their_domains_have_an_a_label() {
        let m = parse_mail("FROM:<jörg@bücher.test> SMTPUTF8").unwrap();
        assert_eq!((m.from.as_ref().map(Address::as_str), m.smtputf8), (Some("jörg@bücher.test"), true));
        // The parser takes UTF-8 without SMTPUTF8 too: whether it was declared is the session's check.
        assert!(!parse_mail("FROM:<jörg@example.org>").unwrap().smtputf8);
        assert_eq!(rcpt_address("TO:<用户@例子.广告>"), "用户@例子.广告");
        assert_eq!(rcpt_address("TO:<\"jörg m\"@example.org>"), "\"jörg m\"@example.org");
        assert_eq!(Address::parse("jörg@Bücher.Test.").unwrap().routed_domain(), "xn--bcher-kva.test");
        // Controls, spaces and invalid IDNs are refused.
        for bad in ["TO:<a\u{85}b@example.org>", "TO:<a@bü cher.test>", "TO:<a@xn--a.bücher.test>", "TO:<a@-ü.test>"]
        {
            assert!(bad_address(parse_rcpt(bad)), "{bad}");
        }
        assert!(bad_address(parse_rcpt(&format!("TO:<{}@example.org>", "ü".repeat(33)))), "64 octets");
    }

    #[test]
    fn bdat_chunk_sizes() {
        assert_eq!(parse_bdat("0 LAST"), Some((0, true)));
        assert_eq!(parse_bdat("65536"), Some((65536, false)));
        assert_eq!(parse_bdat("12 last"), Some((12, true)));
        for bad in ["", "LAST", "-1", "1.5", "12 LAST x", "12  LAST", "12 FIRST", "99999999999999999999999"] {
            assert_eq!(parse_bdat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xtext() {
        assert_eq!(decode_xtext("a+2Bb+3Dc").as_deref(), Some("a+b=c"));
        assert_eq!(decode_xtext("a+2bc").as_deref(), Some("a+c"));
        assert_eq!(decode_xtext("a+2"), None);
        assert_eq!(decode_xtext("a b"), None);
    }
}
