//! Our trace header (RFC 5321 §4.4, RFC 3848 protocol names) and the look at
//! the client's header section that DATA needs: its size, its Received
//! headers (loop detection), Subject and Message-ID.
use std::net::IpAddr;
use std::time::SystemTime;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

/// What goes into the Received header.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub ip: IpAddr,
    pub fqdn: &'a str,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    pub tls: bool,
    pub authenticated: bool,
    /// The transaction declared SMTPUTF8.
    pub smtputf8: bool,
    pub id: &'a str,
    pub date: SystemTime,
}

/// RFC 3848 `with` keyword (RFC 6531 §3.7.3 `UTF8SMTP...` for SMTPUTF8).
fn protocol(t: &Trace) -> &'static str {
    match (t.esmtp, t.smtputf8, t.tls, t.authenticated) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// An address literal for the TCP-info part: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
pub fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// The header, folded onto three lines, with its CRLF.
pub fn received_header(t: &Trace) -> Vec<u8> {
    let date =
        OffsetDateTime::from(t.date).format(&Rfc2822).unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    format!(
        "Received: from {helo} ({ip})\r\n\tby {fqdn} with {proto} id {id};\r\n\t{date}\r\n",
        helo = t.helo,
        ip = address_literal(t.ip),
        fqdn = t.fqdn,
        proto = protocol(t),
        id = t.id,
    )
    .into_bytes()
}

/// What DATA learns from the client's header section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Bytes of the header section (up to, not including, the empty line).
    pub size: usize,
    pub received: usize,
    pub subject: Option<String>,
    pub message_id: Option<String>,
}

/// The header section ends at the first empty line, or at the first line
/// that is neither a field (`name:`) nor a continuation (starting with SP or
/// HTAB): a message without headers has an empty header section.
pub fn scan_header(data: &[u8]) -> HeaderInfo {
    let mut info = HeaderInfo::default();
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..].windows(2).position(|w| w == b"\r\n").map_or(data.len(), |p| pos + p + 2);
        let line = &data[pos..end];
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation && !is_field(line) {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            info.received += 1;
        }
        pos = end;
    }
    info.size = pos;
    if pos > 0 {
        let parsed = mail_parser::MessageParser::new().parse_headers(&data[..pos]);
        if let Some(msg) = parsed {
            info.subject = msg.subject().map(str::to_string);
            info.message_id = msg.message_id().map(|id| format!("<{id}>"));
        }
    }
    info
}

/// `field-name ":"` with field-name printable ASCII except colon (RFC 5322 §3.6.8).
fn is_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn received_header_is_folded_and_dated() {
        let t = Trace {
            helo: "client.test",
            ip: "127.0.0.1".parse().unwrap(),
            fqdn: "mail.local.test",
            esmtp: true,
            tls: false,
            authenticated: false,
            smtputf8: false,
            id: "42",
            date: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let h = String::from_utf8(received_header(&t)).unwrap();
        assert_eq!(
            h,
            "Received: from client.test ([127.0.0.1])\r\n\tby mail.local.test with ESMTP id 42;\r\n\t\
             Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
        let t = Trace { tls: true, authenticated: true, ip: "::1".parse().unwrap(), ..t };
        let h = String::from_utf8(received_header(&t)).unwrap();
        assert!(h.contains("([IPv6:::1])") && h.contains("with ESMTPSA id"), "{h}");
        let t = Trace { smtputf8: true, ..t };
        let h = String::from_utf8(received_header(&t)).unwrap();
        assert!(h.contains("with UTF8SMTPSA id"), "{h}");
    }

    #[test]
    fn header_scan() {
        let msg = b"Received: a\r\n b\r\nreceived: c\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
                    Message-ID: <x@y>\r\n\r\nReceived: in body\r\n";
        let info = scan_header(msg);
        assert_eq!(info.received, 2);
        assert_eq!(info.size, msg.len() - 21);
        assert_eq!(info.subject.as_deref(), Some("café"));
        assert_eq!(info.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(scan_header(b"no header here\r\n").size, 0);
    }
}
