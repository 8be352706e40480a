//! Delivery status notifications (RFC 3464 multipart/report, RFC 3461 rules):
//! non-delivery reports, delay notifications and success (delivered/relayed)
//! notifications. Pure: the queue manager decides when one is due and submits
//! the bytes this module builds, from the postmaster with a null reverse path.
//!
//! The MIME structure is written by mail-builder; the message/delivery-status
//! body is written here because no crate at hand models RFC 3464 fields.
mod fields;
mod text;

pub use fields::enhanced_status;

use crate::envelope::{self, Ret};
use fields::{ascii_value, field, final_recipient, header_address, host, is_status_code, original_recipient};
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;
use std::time::SystemTime;

/// RFC 3464 Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

/// One per-recipient block of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address as the envelope had it (`Final-Recipient: rfc822; <addr>`).
    pub final_recipient: envelope::Address,
    /// ORCPT as given (`rfc822;xtext`), for `Original-Recipient`.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// Enhanced status code, e.g. `5.1.1` or `4.4.7`.
    pub status: String,
    /// The remote reply or our own reason, e.g. `550 5.1.1 User unknown`
    /// (written as `Diagnostic-Code: smtp; ...`).
    pub diagnostic: Option<String>,
    /// The host that answered (`Remote-MTA: dns; host`).
    pub remote_mta: Option<String>,
    pub last_attempt: Option<SystemTime>,
    /// Delay reports: when the server gives up (`Will-Retry-Until`).
    pub will_retry_until: Option<SystemTime>,
}

/// Everything one report is built from.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// `Reporting-MTA: dns; <fqdn>`.
    pub reporting_mta: &'a str,
    /// The report's Message-ID, without angle brackets ([`new_message_id`]): the queue
    /// records it with the report, so the report can be tracked.
    pub message_id: &'a str,
    /// From: address of the report.
    pub postmaster: &'a envelope::Address,
    /// The original sender (To: of the report).
    pub to: &'a envelope::Address,
    /// ENVID of the original, for `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    pub arrival: SystemTime,
    pub now: SystemTime,
    pub recipients: &'a [DsnRecipient],
    /// The original message as stored.
    pub original: &'a [u8],
    /// RET=HDRS returns headers only; FULL or absent returns the whole
    /// message when it is not larger than `max_attach`.
    pub ret: Option<Ret>,
    pub max_attach: u64,
    /// Custom first paragraph (TransportConfig dsnText), else built-in text.
    pub text: Option<&'a str>,
}

impl Action {
    /// The RFC 3464 `Action` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// Status used when a recipient's own is not a valid enhanced code.
    fn fallback_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed => "2.0.0",
        }
    }
}

/// A fresh Message-ID for a report from `reporting_mta` (without angle brackets).
pub fn new_message_id(reporting_mta: &str) -> String {
    format!("{}@{}", uuid::Uuid::new_v4().hyphenated(), host(reporting_mta))
}

/// The complete report (headers and body, CRLF line ends).
///
/// The report is 7-bit except when the whole original is returned and the
/// original itself has 8-bit content (its part is then labelled `8bit`).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let primary = text::primary_action(input.recipients);
    let full = input.ret != Some(Ret::Hdrs) && input.original.len() as u64 <= input.max_attach;

    let subject = match original_subject(input.original) {
        Some(s) => format!("{}: {s}", text::subject_prefix(primary)),
        None => text::subject_prefix(primary).to_string(),
    };

    // RFC 6533: a report about UTF-8 addresses is the global kind, which may carry
    // them as they are (the original sender, or a recipient, of an SMTPUTF8 message).
    let global = !input.to.is_ascii() || input.recipients.iter().any(|r| !r.final_recipient.is_ascii());
    let (report_type, status_type) = if global {
        ("global-delivery-status", "message/global-delivery-status")
    } else {
        ("delivery-status", "message/delivery-status")
    };
    let status = delivery_status(input);
    let status_cte = if status.is_ascii() { "7bit" } else { "8bit" };
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", report_type),
        vec![
            MimePart::new("text/plain", text::render(input, full)),
            MimePart::new(status_type, BodyPart::Binary(status.into_bytes().into())).transfer_encoding(status_cte),
            original_part(input.original, full, global),
        ],
    );

    MessageBuilder::new()
        .from(Address::new_address(Some("Mail Delivery System"), header_address(input.postmaster.as_str())))
        .to(Address::new_address(None::<&str>, header_address(input.to.as_str())))
        .subject(subject)
        .date(Date::new(fields::unix_seconds(input.now)))
        .message_id(input.message_id)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("MIME-Version", Raw::new("1.0"))
        .body(report)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

/// The original's Subject, decoded (RFC 2047) and on one line; `None` when
/// it has none or it is blank.
fn original_subject(original: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(original)?;
    let subject = fields::one_line(parsed.subject()?);
    (!subject.is_empty()).then_some(subject)
}

/// The message/delivery-status body: the per-message group, then one group
/// per recipient, each ended by a blank line.
fn delivery_status(input: &DsnInput<'_>) -> String {
    let mut out = field("Reporting-MTA", &format!("dns; {}", host(input.reporting_mta)));
    if let Some(envid) = input.envid {
        out.push_str(&field("Original-Envelope-Id", &fields::xtext_decode(envid.trim())));
    }
    out.push_str(&field("Arrival-Date", &fields::rfc5322_date(input.arrival)));
    for r in input.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = &r.original_recipient {
            out.push_str(&field("Original-Recipient", &original_recipient(orcpt)));
        }
        out.push_str(&field("Final-Recipient", &final_recipient(r.final_recipient.as_str())));
        out.push_str(&field("Action", r.action.as_str()));
        out.push_str(&field("Status", &status_of(r)));
        if let Some(mta) = r.remote_mta.as_deref().map(host).filter(|h| !h.is_empty()) {
            out.push_str(&field("Remote-MTA", &format!("dns; {mta}")));
        }
        if let Some(diag) = r.diagnostic.as_deref().map(ascii_value).filter(|d| !d.is_empty()) {
            out.push_str(&field("Diagnostic-Code", &format!("smtp; {diag}")));
        }
        if let Some(t) = r.last_attempt {
            out.push_str(&field("Last-Attempt-Date", &fields::rfc5322_date(t)));
        }
        if let (Action::Delayed, Some(t)) = (r.action, r.will_retry_until) {
            out.push_str(&field("Will-Retry-Until", &fields::rfc5322_date(t)));
        }
    }
    out
}

/// The recipient's status if it is a valid enhanced code, else the code of
/// its diagnostic, else the action's generic code: `Status` is required and
/// must parse.
fn status_of(r: &DsnRecipient) -> String {
    let own = r.status.trim();
    if is_status_code(own) {
        return own.to_string();
    }
    r.diagnostic.as_deref().and_then(enhanced_status).unwrap_or_else(|| r.action.fallback_status().to_string())
}

/// The third part: the whole original (`message/rfc822`) or its header
/// section (`text/rfc822-headers`); in a global report `message/global` and
/// `message/global-headers` (RFC 6533 §6), which may hold UTF-8 headers.
fn original_part(original: &[u8], full: bool, global: bool) -> MimePart<'_> {
    if full {
        // message/rfc822 may not be base64 or quoted-printable encoded (RFC 2046 §5.2.1).
        let cte = if original.is_ascii() { "7bit" } else { "8bit" };
        let kind = if global { "message/global" } else { "message/rfc822" };
        return MimePart::new(kind, BodyPart::Binary(original.into())).transfer_encoding(cte);
    }
    let headers = header_section(original);
    let kind = if global { "message/global-headers" } else { "text/rfc822-headers" };
    let part = MimePart::new(kind, BodyPart::Binary(headers.into()));
    if headers.is_ascii() && headers.split(|b| *b == b'\n').all(|l| l.len() <= 998) {
        part.transfer_encoding("7bit")
    } else {
        // 8-bit or overlong header lines: let mail-builder pick a 7-bit encoding.
        part
    }
}

/// The original's header section including the line end of its last field,
/// without the empty line that separates it from the body.
fn header_section(original: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < original.len() {
        let end = original[start..].iter().position(|b| *b == b'\n').map(|p| start + p + 1).unwrap_or(original.len());
        let line = &original[start..end];
        if line == b"\r\n" || line == b"\n" {
            return &original[..start];
        }
        start = end;
    }
    original
}

#[cfg(test)]
mod tests;
