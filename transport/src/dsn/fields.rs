//! Field values of a report: enhanced status codes, xtext, addresses, dates,
//! and the sanitising that keeps untrusted text (remote replies, subjects,
//! envelope parameters) from breaking out of its header line.
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest diagnostic kept in a report. Remote replies are untrusted and a
/// report line must stay within SMTP's 998-octet limit even before folding.
const MAX_DIAGNOSTIC: usize = 900;

/// The enhanced status code (RFC 3463) of an SMTP reply: `550 5.1.1 User
/// unknown` gives `5.1.1`; a reply without one gives `X.0.0` from its basic
/// code's class (`421 Try later` gives `4.0.0`). `None` when the text is not an
/// SMTP reply with a 2xx, 4xx or 5xx code (e.g. a connection error message).
///
/// The class of the enhanced code is kept as the server sent it even when it
/// differs from the basic code's (Exchange's `550 4.4.7 QUEUE.Expired`).
pub fn enhanced_status(reply: &str) -> Option<String> {
    let reply = reply.trim_start();
    // Only the first line matters for a multi-line reply.
    let first = reply.split(['\r', '\n']).next().unwrap_or_default();
    let bytes = first.as_bytes();
    let basic = match bytes {
        [c @ (b'2' | b'4' | b'5'), b'0'..=b'9', b'0'..=b'9', rest @ ..]
            if matches!(rest.first(), None | Some(b' ' | b'-')) =>
        {
            Some(*c as char)
        }
        _ => None,
    };
    let text = match basic {
        Some(_) => first.get(4..).unwrap_or_default(),
        None => first,
    };
    let candidate = text.split_ascii_whitespace().next().unwrap_or_default();
    if is_status_code(candidate) {
        return Some(candidate.to_string());
    }
    basic.map(|class| format!("{class}.0.0"))
}

/// `class.subject.detail` with class 2, 4 or 5 and one to three digits each
/// for subject and detail (RFC 3463 §2).
pub(crate) fn is_status_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}

/// Untrusted text on one line: every control character (CR and LF among
/// them) becomes a space, runs of white space collapse, the ends are trimmed.
/// Non-ASCII text is kept (for the human-readable part and encoded headers).
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        // U+2028/U+2029 are line breaks to some readers although not controls.
        if c.is_control() || c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// A value for the message/delivery-status part, which RFC 3464 defines as
/// US-ASCII: on one line, other characters replaced with `?`, cut to a
/// bounded length.
pub(crate) fn ascii_value(s: &str) -> String {
    let mut out: String = one_line(s).chars().map(|c| if c.is_ascii() { c } else { '?' }).collect();
    if out.len() > MAX_DIAGNOSTIC {
        out.truncate(MAX_DIAGNOSTIC);
        out.push_str("...");
    }
    out
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes). A decoded octet that could
/// not stand in a header field (a control, space or non-ASCII octet) stays
/// in its escaped form, so the result is printable ASCII on one line whatever
/// the input; a `+` not followed by two hex digits is kept as it is.
pub(crate) fn xtext_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                if (0x21..=0x7e).contains(&v) {
                    out.push(v as char);
                } else {
                    out.push_str(&format!("+{v:02X}"));
                }
                i += 3;
                continue;
            }
            out.push('+');
        } else if (0x21..=0x7e).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
        i += 1;
    }
    out
}

/// `Original-Recipient` value from an ORCPT parameter (`addr-type;xtext`):
/// `rfc822;addr` with the address decoded.
pub(crate) fn original_recipient(orcpt: &str) -> String {
    let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
    let kind: String = kind.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let kind = if kind.is_empty() { "rfc822".to_string() } else { kind };
    format!("{kind};{}", xtext_decode(addr.trim()))
}

/// `Final-Recipient` value: `rfc822; addr` for an ASCII address, else the
/// RFC 6533 `utf-8` address type with the address as it is (such a report is
/// a message/global-delivery-status, which may hold UTF-8).
pub(crate) fn final_recipient(addr: &str) -> String {
    let addr = one_line(addr);
    if addr.is_ascii() {
        format!("rfc822; {addr}")
    } else {
        format!("utf-8; {addr}")
    }
}

/// An address for a From:/To: header: no controls (CR and LF among them)
/// or angle brackets, since mail-builder writes it between `<` and `>`
/// verbatim, and short enough for one line, since it cannot be folded
/// inside. A cut address only changes what the reader sees: the report goes
/// to the envelope's reverse path.
pub(crate) fn header_address(addr: &str) -> String {
    let clean: String =
        addr.trim().chars().filter(|c| !c.is_control() && !matches!(c, '<' | '>' | '\u{2028}' | '\u{2029}')).collect();
    fit(&clean, MAX_HEADER_ADDRESS).into_owned()
}

/// Longest From:/To: address written: with `From: "Mail Delivery System" <`
/// and `>` around it the line stays within [`MAX_LINE`].
const MAX_HEADER_ADDRESS: usize = 900;

/// A host name from configuration or a remote server: printable ASCII, no
/// white space.
pub(crate) fn host(name: &str) -> String {
    ascii_value(name).replace(' ', "")
}

/// RFC 5322 date-time in UTC.
pub(crate) fn rfc5322_date(t: SystemTime) -> String {
    mail_builder::headers::date::Date::new(unix_seconds(t)).to_rfc822()
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// RFC 5322 §2.1.1: no line of a message may exceed 998 octets.
const MAX_LINE: usize = 998;

/// `Name: value` with CRLF, folded at spaces to keep lines near 78 octets
/// (RFC 5322 §2.2.3). The value must already be on one line.
///
/// A word too long for any line (only a corrupt record can hold one: the
/// SMTP receiver limits paths to 256 octets and ENVID to 100) is cut and
/// marked with `...`, since folding inside it would change the value and a
/// longer line would make the report itself invalid.
pub(crate) fn field(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    for (i, word) in value.split(' ').filter(|w| !w.is_empty()).enumerate() {
        // Fold only between words: a fold needs white space to stand on.
        if i > 0 && line + 1 + word.len() > 78 {
            out.push_str("\r\n");
            line = 0;
        }
        let word = fit(word, MAX_LINE.saturating_sub(line + 1));
        out.push(' ');
        out.push_str(&word);
        line += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// `word` if it has at most `room` octets, else its longest prefix (at a
/// character boundary) that leaves room for a `...` marker.
fn fit(word: &str, room: usize) -> std::borrow::Cow<'_, str> {
    if word.len() <= room {
        return word.into();
    }
    let mut end = room.saturating_sub(3);
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &word[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_from_replies() {
        assert_eq!(enhanced_status("550 5.1.1 User unknown").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_status("421-4.7.0 Try again later\r\n421 4.7.0 closing").as_deref(), Some("4.7.0"));
        assert_eq!(enhanced_status("550 4.4.7 QUEUE.Expired; message expired").as_deref(), Some("4.4.7"));
        assert_eq!(enhanced_status("452 Too many recipients").as_deref(), Some("4.0.0"));
        assert_eq!(enhanced_status("554").as_deref(), Some("5.0.0"));
        assert_eq!(enhanced_status("250 2.6.0 Queued").as_deref(), Some("2.6.0"));
        assert_eq!(enhanced_status("550 5.1.1000 too long detail").as_deref(), Some("5.0.0"));
        assert_eq!(enhanced_status("5.1.1 User unknown").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_status("connection refused"), None);
        assert_eq!(enhanced_status("354 go ahead"), None);
        assert_eq!(enhanced_status("5500 nonsense"), None);
    }

    #[test]
    fn xtext_decoding_keeps_unsafe_octets_escaped() {
        assert_eq!(xtext_decode("bob+2Bfoo@example.com"), "bob+foo@example.com");
        assert_eq!(xtext_decode("a+3Db@example.com"), "a=b@example.com");
        assert_eq!(xtext_decode("x+0D+0ABcc:+20y"), "x+0D+0ABcc:+20y");
        assert_eq!(xtext_decode("bad+zz"), "bad+zz");
        assert_eq!(original_recipient("rfc822;a+3Db@example.com"), "rfc822;a=b@example.com");
    }

    #[test]
    fn fields_fold_between_words_only() {
        let long = "word ".repeat(40);
        let f = field("Diagnostic-Code", &format!("smtp; {}", long.trim()));
        assert!(f.ends_with("\r\n"));
        for line in f.trim_end().split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert_eq!(f.replace("\r\n", "").trim_end(), format!("Diagnostic-Code: smtp; {}", long.trim()));
    }

    #[test]
    fn a_word_longer_than_a_line_is_cut_not_folded() {
        let addr = format!("{}@example.com", "a".repeat(2000));
        let f = field("Final-Recipient", &final_recipient(&addr));
        let first = f.split("\r\n").next().unwrap_or_default();
        assert_eq!(f.matches("\r\n").count(), 2, "folded once, before the address: {f:?}");
        assert_eq!(first, "Final-Recipient: rfc822;");
        for line in f.split("\r\n") {
            assert!(line.len() <= MAX_LINE, "line of {} octets", line.len());
        }
        assert!(f.trim_end().ends_with("aaa..."), "cut with a marker");
        // Within the limit nothing is cut, multi-byte text is cut at a character boundary.
        assert_eq!(fit("ok", 2), "ok");
        assert_eq!(fit("éééé", 6), "é...");
        assert_eq!(header_address(&"x y".repeat(600)).len(), MAX_HEADER_ADDRESS);
    }

    #[test]
    fn non_ascii_recipients_use_the_utf8_address_type() {
        assert_eq!(final_recipient("bob@example.com"), "rfc822; bob@example.com");
        assert_eq!(final_recipient("jöe@example.com"), "utf-8; jöe@example.com");
    }
}
