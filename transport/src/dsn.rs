//! Delivery status notifications (RFC 3464 multipart/report, RFC 3461 rules):
//! non-delivery reports, delay notifications and success (delivered/relayed)
//! notifications. Pure: the queue manager decides when one is due and submits
//! the bytes this module builds, from the postmaster with a null reverse path.
use crate::queue::message::Ret;
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
    pub final_recipient: String,
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
    /// `Reporting-MTA: dns; <fqdn>`; also the Message-ID domain.
    pub reporting_mta: &'a str,
    /// From: address of the report.
    pub postmaster: &'a str,
    /// The original sender (To: of the report).
    pub to: &'a str,
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

/// The complete report (headers and body, CRLF line ends).
pub fn build(_input: &DsnInput<'_>) -> Vec<u8> {
    todo!("dsn helper")
}

/// The enhanced status code of an SMTP reply (`550 5.1.1 ...` → `5.1.1`), or
/// `X.0.0` from the reply's class when it has none.
pub fn enhanced_status(_reply: &str) -> String {
    todo!("dsn helper")
}
