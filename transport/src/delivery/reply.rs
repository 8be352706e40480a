//! SMTP replies as text, EHLO keywords, and xtext (RFC 3461 §4).
use lettre::transport::smtp::response::Response;
use std::fmt::Write as _;

/// One reply on one line: `550 5.1.1 User unknown`. Lines of a multi-line
/// reply are joined with spaces, and an enhanced status code repeated at the
/// start of each line is kept only once.
pub(super) fn one_line(code: u16, lines: &[&str]) -> String {
    let mut text = code.to_string();
    let enhanced = lines.first().and_then(|l| l.split_whitespace().next()).filter(|w| is_enhanced(w, code));
    for (i, line) in lines.iter().enumerate() {
        let line = match enhanced {
            Some(e) if i > 0 => line.strip_prefix(e).map(str::trim_start).unwrap_or(line),
            _ => line,
        };
        let line = line.trim();
        if !line.is_empty() {
            text.push(' ');
            text.push_str(line);
        }
    }
    text
}

/// `class.subject.detail` with the class of the reply code (RFC 3463).
fn is_enhanced(word: &str, code: u16) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0] == (code / 100).to_string()
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn response_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    one_line(u16::from(response.code()), &lines)
}

/// What a next hop announced in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Extensions {
    pub starttls: bool,
    pub dsn: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// RFC 2920: MAIL, RCPT and DATA may be sent together.
    pub pipelining: bool,
    /// SIZE was announced (`Some(0)`: no fixed limit).
    pub size: Option<u64>,
    /// RFC 3030: BDAT may be used instead of DATA.
    pub chunking: bool,
    pub binary_mime: bool,
    /// RFC 8689.
    pub requiretls: bool,
}

impl Extensions {
    /// From the text of the EHLO reply lines (after the code); the first line
    /// is the greeting, each further line starts with a keyword.
    pub(super) fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Extensions {
        let mut ext = Extensions::default();
        for line in lines.into_iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => ext.starttls = true,
                "DSN" => ext.dsn = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "PIPELINING" => ext.pipelining = true,
                "CHUNKING" => ext.chunking = true,
                "BINARYMIME" => ext.binary_mime = true,
                "REQUIRETLS" => ext.requiretls = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        ext
    }
}

/// The text of raw reply lines (`250-PIPELINING` → `PIPELINING`).
pub(super) fn raw_line_text(line: &str) -> &str {
    line.get(4..).unwrap_or("")
}

/// Index after the last line of the first reply among raw lines (a final
/// line has no `-` after the code).
pub(super) fn first_reply_end(lines: &[String]) -> Option<usize> {
    lines.iter().position(|l| l.as_bytes().get(3) != Some(&b'-')).map(|i| i + 1)
}

/// Decodes xtext (`+2B` → `+`). Anything that is not a valid `+XX` stays as
/// it is, so a value that was stored decoded survives too.
pub(super) fn xtext_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes xtext: printable ASCII except `+` and `=` as is, the rest `+XX`.
pub(super) fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// A DSN parameter value as it goes on the wire: the stored value is xtext
/// (as the client gave it); normalise it by decoding and encoding again, so
/// that a value stored decoded is encoded exactly once too.
pub(super) fn xtext(stored: &str) -> String {
    xtext_encode(&xtext_decode(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_multiline_replies_keeping_one_enhanced_code() {
        assert_eq!(one_line(550, &["5.1.1 User unknown", "5.1.1 try later"]), "550 5.1.1 User unknown try later");
        assert_eq!(one_line(250, &["Ok"]), "250 Ok");
        assert_eq!(one_line(354, &["End data with <CR><LF>.<CR><LF>"]), "354 End data with <CR><LF>.<CR><LF>");
    }

    #[test]
    fn ehlo_keywords() {
        let ext = Extensions::parse(["smtp-sink", "PIPELINING", "size 1000", "dsn", "8BITMIME", ""]);
        assert_eq!(
            ext,
            Extensions {
                starttls: false,
                dsn: true,
                eight_bit_mime: true,
                smtputf8: false,
                pipelining: true,
                size: Some(1000),
                chunking: false,
                binary_mime: false,
                requiretls: false,
            }
        );
        let ext = Extensions::parse(["exchange", "CHUNKING", "BINARYMIME"]);
        assert!(ext.chunking && ext.binary_mime);
    }

    #[test]
    fn xtext_round_trip() {
        assert_eq!(xtext("rfc822;bob+40example.net"), "rfc822;bob@example.net");
        assert_eq!(xtext("id+2B1"), "id+2B1");
        assert_eq!(xtext("a=b c"), "a+3Db+20c");
        assert_eq!(xtext_decode("x+zz"), "x+zz");
    }
}
