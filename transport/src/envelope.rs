//! The envelope of a message: what MAIL FROM / RCPT TO said, where it came from, plus
//! the per-recipient delivery state and the queue state that survive a restart. The one
//! model receive (smtp), routing, delivery, DSNs, the queue and shadow redundancy share;
//! it depends on none of them. The body is stored separately (queue::store).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

pub use crate::address::{ascii_domain, routed_domain, Address, AddressError};

/// Queue-wide unique message number (Exchange shows it as `server\queue\id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// RFC 3461 RET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    Full,
    Hdrs,
}

/// RFC 3461 NOTIFY. `never` excludes the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientStatus {
    /// Not yet accepted by a next hop.
    Pending,
    /// The next hop answered 250 for it.
    Delivered,
    /// Permanently refused (5xx), expired or removed; an NDR was generated
    /// when the rules asked for one.
    Failed { reply: Box<str> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as given in RCPT TO, without angle brackets (and without the
    /// domain's trailing dot).
    pub address: Address,
    /// NOTIFY as given; `None` means the parameter was absent.
    pub notify: Option<Notify>,
    /// ORCPT as given (`addr-type;xtext`).
    pub orcpt: Option<Box<str>>,
    pub status: RecipientStatus,
    /// The last temporary refusal or connection error for this recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<str>>,
}

impl Recipient {
    pub fn new(address: Address) -> Self {
        Self { address, notify: None, orcpt: None, status: RecipientStatus::Pending, last_error: None }
    }
}

/// How a message entered the server (Get-Message's MessageSourceName).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// Received by a receive connector (`SMTP:<connector>`).
    #[default]
    Smtp,
    /// A delivery status notification this server generated.
    Dsn,
    /// Submitted from the replay directory.
    Replay,
    /// Taken from the Safety Net by a resubmit request, or from a shadow copy
    /// whose primary was lost.
    Resubmit,
}

/// Where and how a message came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub connector: Box<str>,
    pub client_ip: Option<IpAddr>,
    pub helo: Box<str>,
    pub tls: bool,
    #[serde(default)]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    /// Reverse path; `None` is the null sender `<>` (DSNs are never sent for it).
    pub mail_from: Option<Address>,
    pub recipients: Vec<Recipient>,
    /// Size in bytes of the stored data (including the added Received header).
    pub size: u64,
    /// BODY=8BITMIME (or BINARYMIME) was given.
    pub body_8bit: bool,
    /// BODY=BINARYMIME (RFC 3030): relayed only with BDAT to a hop that offers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary_mime: bool,
    /// SMTPUTF8 (RFC 6531): UTF-8 addresses or headers; relayed only to a hop that offers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    /// REQUIRETLS (RFC 8689): relayed only over TLS whose certificate and name were
    /// verified, to a hop that offers REQUIRETLS too; else returned with 5.7.10.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requiretls: bool,
    pub ret: Option<Ret>,
    pub envid: Option<Box<str>>,
    /// Arrival time, milliseconds since the Unix epoch (from the server's clock).
    pub arrival_ms: u64,
    pub origin: Origin,
    /// Subject and Message-ID header values, for Get-Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<Box<str>>,
    /// Queue state that survives a restart (docs/design.md §4).
    #[serde(default)]
    pub state: MessageState,
}

/// The persistent, time-driven state of a queued message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// The one delay DSN was sent (or was not wanted): never send another.
    #[serde(default)]
    pub delay_dsn_done: bool,
    /// Suspended by an administrator (Suspend-Message).
    #[serde(default)]
    pub suspended: bool,
    /// Times processing this message crashed; at poisonThreshold it goes to Poison.
    #[serde(default)]
    pub crash_count: u32,
    #[serde(default)]
    pub poisoned: bool,
    /// Message-level retries (a 4xx for this message on a working connection).
    #[serde(default)]
    pub retry_count: u32,
    /// Earliest next attempt after a message-level retry (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<str>>,
}

impl Envelope {
    /// A message from `mail_from` (`None`: the null sender) to `recipients` as it enters
    /// a queue: no extension (8BITMIME, SMTPUTF8, ...), no DSN parameters, no headers
    /// read, no queue state. Callers set what they know beyond that.
    pub fn new(
        id: MessageId,
        mail_from: Option<Address>,
        recipients: Vec<Recipient>,
        size: u64,
        origin: Origin,
        arrival_ms: u64,
    ) -> Envelope {
        Envelope {
            id,
            mail_from,
            recipients,
            size,
            body_8bit: false,
            binary_mime: false,
            smtputf8: false,
            requiretls: false,
            ret: None,
            envid: None,
            arrival_ms,
            origin,
            subject: None,
            internet_message_id: None,
            state: MessageState::default(),
        }
    }

    pub fn pending_recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.status == RecipientStatus::Pending)
    }

    /// Gives back spare room: recipients are collected one at a time (RCPT TO,
    /// or a JSON list), which leaves room for four. At a million queued
    /// messages the spare room alone is 300 MB.
    pub fn shrink_to_fit(&mut self) {
        self.recipients.shrink_to_fit();
    }

    /// True once no recipient waits for delivery any more.
    pub fn is_finished(&self) -> bool {
        self.pending_recipients().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An envelope as queue files and shadow copies held it when addresses were plain
    /// strings reads back and is written again byte for byte.
    #[test]
    fn an_envelope_stored_before_the_address_type_round_trips() {
        let stored = concat!(
            r#"{"id":7,"mail_from":"jörg@bücher.test","recipients":["#,
            r#"{"address":"bob@example.net","notify":null,"orcpt":null,"status":"Pending"},"#,
            r#"{"address":"\"c d\"@[192.0.2.9]","notify":{"never":false,"success":true,"failure":true,"delay":false},"#,
            r#""orcpt":"rfc822;c+40d","status":{"Failed":{"reply":"550 5.1.1 unknown"}},"last_error":"421 busy"}],"#,
            r#""size":10,"body_8bit":false,"smtputf8":true,"ret":null,"envid":null,"arrival_ms":1,"#,
            r#""origin":{"connector":"Default","client_ip":"192.0.2.1","helo":"client.test","tls":false,"source":"Smtp"},"#,
            r#""state":{"delay_dsn_done":false,"suspended":false,"crash_count":0,"poisoned":false,"retry_count":0}}"#,
        );
        let envelope: Envelope = serde_json::from_str(stored).unwrap();
        assert_eq!(envelope.mail_from.as_ref().map(Address::routed_domain).as_deref(), Some("xn--bcher-kva.test"));
        assert_eq!(envelope.recipients[1].address.local_part(), "\"c d\"");
        assert_eq!(envelope.recipients[1].address.domain(), "[192.0.2.9]");
        assert_eq!(serde_json::to_string(&envelope).unwrap(), stored);
        let null_sender = stored.replace(r#""mail_from":"jörg@bücher.test""#, r#""mail_from":null"#);
        let envelope: Envelope = serde_json::from_str(&null_sender).unwrap();
        assert_eq!((envelope.mail_from.is_none(), serde_json::to_string(&envelope).unwrap()), (true, null_sender));
    }
}
