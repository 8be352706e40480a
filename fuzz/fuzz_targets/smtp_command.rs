//! The SMTP command-line parser: never panics, and what it accepts is safe to
//! write into our own outbound MAIL/RCPT commands (no line ends, no NUL, no
//! unquoted `<`, `>` or space; UTF-8 only as RFC 6531 allows it, domains with
//! a valid A-label) and parses again to the same thing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{ascii_domain, decode_xtext, parse_mail, parse_rcpt, split_verb, valid_domain, Forward};

/// RFC 6531's UTF-8: any non-ASCII character but controls and spaces.
fn utf8_text(c: char) -> bool {
    !c.is_ascii() && !c.is_control() && !c.is_whitespace()
}

fn safe_local_part(local: &str) {
    assert!(!local.is_empty() && local.len() <= 64, "{local:?}");
    if local.starts_with('"') {
        // Inside quotes any UTF-8 but controls (RFC 6531 qtextSMTP), spaces included.
        assert!(local.chars().all(|c| (' '..='~').contains(&c) || (!c.is_ascii() && !c.is_control())), "{local:?}");
    } else {
        assert!(!local.contains(['<', '>', ' ', '"', '\\', '@']), "{local:?}");
        assert!(local.chars().all(|c| c.is_ascii_graphic() || utf8_text(c)), "{local:?}");
    }
}

fn safe_domain(domain: &str) {
    let literal = domain.starts_with('[') && domain.ends_with(']');
    let idn = ascii_domain(domain).is_some_and(|a| valid_domain(&a));
    assert!(valid_domain(domain) || literal || idn, "{domain:?}");
    assert!(domain.chars().all(|c| c.is_ascii_graphic() || utf8_text(c)), "{domain:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let (_, rest) = split_verb(line);
    assert!(line.ends_with(rest));
    for args in [line, rest] {
        if let Ok(mail) = parse_mail(args) {
            if let Some(from) = &mail.from {
                safe_local_part(from.local_part());
                safe_domain(from.domain());
                let again = parse_mail(&format!("FROM:<{from}>")).expect("an accepted reverse path parses again");
                assert_eq!(again.from, mail.from);
            }
            if let Some(envid) = &mail.envid {
                assert!(envid.bytes().all(|b| (0x20..0x7f).contains(&b)), "{envid:?}");
            }
        }
        if let Ok(rcpt) = parse_rcpt(args) {
            if let Forward::Mailbox(address) = &rcpt.to {
                safe_local_part(address.local_part());
                safe_domain(address.domain());
                let again = parse_rcpt(&format!("TO:<{address}>")).expect("an accepted recipient parses again");
                assert_eq!(&again.to, &rcpt.to);
            }
            if let Some(orcpt) = &rcpt.orcpt {
                assert!(orcpt.bytes().all(|b| b.is_ascii_graphic()), "{orcpt:?}");
            }
        }
    }
    if let Some(decoded) = decode_xtext(line) {
        assert!(decoded.len() <= line.len());
    }
});
