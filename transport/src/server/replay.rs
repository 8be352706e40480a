//! The replay directory (reference/exchange.md §2.7): `.eml` files whose
//! envelope is given by leading `X-Sender:` (exactly one) and `X-Receiver:`
//! (one per recipient) headers are submitted like received mail. A file is
//! renamed `.tmp` while it is processed and deleted once the message is
//! durably queued; a file that cannot be parsed is renamed `.bad`; leftover
//! `.tmp` files become `.eml` again at start (a crash may cause a duplicate,
//! never a loss).
use crate::envelope::{Address, Envelope, Origin, Recipient, Ret, Source};
use crate::queue::body::StagedBody;
use crate::smtp::command;
use crate::smtp::{Incoming, Submit, SubmitError};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Exchange polls its pickup and replay directories every 5 seconds.
const POLL: Duration = Duration::from_secs(5);

/// A replay file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMessage {
    pub mail_from: Option<Address>,
    pub recipients: Vec<Recipient>,
    pub body_8bit: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    pub helo: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// The message after the injected X-headers, with CRLF line ends.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("no X-Sender header (exactly one is required)")]
    NoSender,
    #[error("more than one X-Sender header")]
    TwoSenders,
    #[error("no X-Receiver header (one per recipient is required)")]
    NoRecipient,
    #[error("{header}: {reason}")]
    Header { header: String, reason: String },
    #[error("the file is not text (NUL bytes)")]
    Binary,
}

/// Parses a replay file. Envelope headers are the leading `X-` headers up to
/// `X-EndOfInjectedXHeaders` (or the first header that is not an injected one).
pub fn parse(bytes: &[u8]) -> Result<ReplayMessage, ReplayError> {
    if bytes.contains(&0) {
        return Err(ReplayError::Binary);
    }
    let mut msg = ReplayMessage {
        mail_from: None,
        recipients: Vec::new(),
        body_8bit: false,
        ret: None,
        envid: None,
        helo: None,
        source_ip: None,
        data: Vec::new(),
    };
    let mut senders = 0;
    let mut offset = 0;
    while offset < bytes.len() {
        let end = bytes[offset..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |p| offset + p + 1);
        let line = String::from_utf8_lossy(&bytes[offset..end]);
        let line = line.trim_end_matches(['\r', '\n']);
        let Some((name, value)) = line.split_once(':') else { break };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "x-sender" => {
                senders += 1;
                let args = command::parse_mail(&format!("FROM:{}", bracketed(value)))
                    .map_err(|e| header_error("X-Sender", value, e))?;
                msg.mail_from = args.from;
                msg.body_8bit = matches!(args.body, Some(command::Body::EightBitMime | command::Body::BinaryMime));
                msg.ret = args.ret;
                msg.envid = args.envid;
            }
            "x-receiver" => {
                let args = command::parse_rcpt(&format!("TO:{}", bracketed(value)))
                    .map_err(|e| header_error("X-Receiver", value, e))?;
                let command::Forward::Mailbox(address) = args.to else {
                    return Err(header_error("X-Receiver", value, command::ArgError::Address));
                };
                let mut rcpt = Recipient::new(address);
                rcpt.notify = args.notify;
                rcpt.orcpt = args.orcpt.map(Into::into);
                msg.recipients.push(rcpt);
            }
            "x-helodomain" => msg.helo = Some(value.to_string()),
            "x-sourceipaddress" => msg.source_ip = value.parse().ok(),
            "x-createdby" | "x-source" => {}
            "x-endofinjectedxheaders" => {
                offset = end;
                break;
            }
            _ => break,
        }
        offset = end;
    }
    match senders {
        0 => return Err(ReplayError::NoSender),
        1 => {}
        _ => return Err(ReplayError::TwoSenders),
    }
    if msg.recipients.is_empty() {
        return Err(ReplayError::NoRecipient);
    }
    msg.data = to_crlf(&bytes[offset..]);
    Ok(msg)
}

fn header_error(header: &str, value: &str, e: command::ArgError) -> ReplayError {
    ReplayError::Header { header: header.into(), reason: format!("{value:?} is not a valid envelope line ({e:?})") }
}

/// Exchange writes the address with or without angle brackets; the SMTP
/// parser (shared with the sessions) wants them.
fn bracketed(value: &str) -> String {
    let value = value.trim();
    if value.starts_with('<') {
        return value.to_string();
    }
    match value.split_once(' ') {
        Some((addr, params)) => format!("<{addr}> {params}"),
        None => format!("<{value}>"),
    }
}

/// Line ends as SMTP stores them (files may use LF only).
fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if prev == b'\r' && b != b'\n' {
            out.push(b'\n');
        }
        out.push(b);
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    out
}

/// Polls `dir` until shutdown, submitting every `.eml` file.
pub async fn watch(dir: PathBuf, intake: Arc<dyn Submit>, mut shutdown: watch::Receiver<bool>) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), error = %e, "cannot create the replay directory");
    }
    restore_leftovers(&dir);
    loop {
        scan(&dir, intake.as_ref()).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)))
        .collect();
    files.sort();
    files
}

fn restore_leftovers(dir: &Path) {
    for tmp in files_with(dir, "tmp") {
        let _ = std::fs::rename(&tmp, tmp.with_extension("eml"));
    }
}

/// One pass over the directory.
pub async fn scan(dir: &Path, intake: &dyn Submit) {
    for eml in files_with(dir, "eml") {
        let tmp = eml.with_extension("tmp");
        if std::fs::rename(&eml, &tmp).is_err() {
            continue;
        }
        let parsed = std::fs::read(&tmp).map_err(|e| e.to_string()).and_then(|b| parse(&b).map_err(|e| e.to_string()));
        let msg = match parsed {
            Ok(m) => m,
            Err(reason) => {
                warn!(file = %eml.display(), %reason, "replay file cannot be processed; renamed .bad");
                let _ = std::fs::rename(&tmp, eml.with_extension("bad"));
                continue;
            }
        };
        let origin = Origin {
            connector: "Replay".into(),
            client_ip: msg.source_ip,
            helo: msg.helo.unwrap_or_default().into(),
            tls: false,
            source: Source::Replay,
        };
        let data = StagedBody::Inline(msg.data);
        let mut envelope = Envelope::new(intake.next_id(), msg.mail_from, msg.recipients, data.len(), origin, 0);
        envelope.body_8bit = msg.body_8bit;
        envelope.ret = msg.ret;
        envelope.envid = msg.envid.map(Into::into);
        let incoming = Incoming { envelope, data };
        match intake.submit(incoming).await {
            Ok(()) => {
                info!(file = %eml.display(), "replay file submitted");
                let _ = std::fs::remove_file(&tmp);
            }
            Err(SubmitError::Storage(e) | SubmitError::Unavailable(e) | SubmitError::ShadowFailed(e)) => {
                // Kept for the next pass.
                warn!(file = %eml.display(), error = %e, "replay file not submitted now; will retry");
                let _ = std::fs::rename(&tmp, &eml);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Notify;

    #[test]
    fn envelope_comes_from_the_injected_headers() {
        let file = b"X-Sender: <alice@example.org> BODY=8BITMIME RET=HDRS ENVID=abc\r\n\
            X-Receiver: bob@example.net NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net\r\n\
            X-Receiver: <carol@example.net>\r\n\
            X-HeloDomain: client.example\r\n\
            X-SourceIPAddress: 192.0.2.7\r\n\
            X-EndOfInjectedXHeaders: end\r\n\
            Subject: hi\nX-Sender: not-envelope@example.org\n\nbody\n";
        let m = parse(file).unwrap();
        assert_eq!(m.mail_from.as_ref().map(Address::as_str), Some("alice@example.org"));
        assert!(m.body_8bit);
        assert_eq!(m.ret, Some(Ret::Hdrs));
        assert_eq!(m.envid.as_deref(), Some("abc"));
        assert_eq!(m.recipients.len(), 2);
        assert_eq!(m.recipients[0].address, "bob@example.net");
        assert_eq!(m.recipients[0].notify, Some(Notify { success: true, failure: true, ..Default::default() }));
        assert_eq!(m.recipients[0].orcpt.as_deref(), Some("rfc822;bob@example.net"));
        assert_eq!(m.helo.as_deref(), Some("client.example"));
        assert_eq!(m.source_ip, Some("192.0.2.7".parse().unwrap()));
        // The message itself, CRLF, its own X-Sender header untouched.
        assert_eq!(m.data, b"Subject: hi\r\nX-Sender: not-envelope@example.org\r\n\r\nbody\r\n");
    }

    #[test]
    fn null_sender_is_allowed() {
        let m = parse(b"X-Sender: <>\nX-Receiver: <a@b.example>\n\nx\n").unwrap();
        assert_eq!(m.mail_from, None);
    }

    #[test]
    fn bad_files_say_why() {
        assert_eq!(parse(b"Subject: x\n\nbody\n"), Err(ReplayError::NoSender));
        assert_eq!(
            parse(b"X-Sender: a@b.example\nX-Sender: c@d.example\nX-Receiver: e@f.example\n\n"),
            Err(ReplayError::TwoSenders)
        );
        assert_eq!(parse(b"X-Sender: a@b.example\n\nbody"), Err(ReplayError::NoRecipient));
        assert!(matches!(
            parse(b"X-Sender: not-an-address\nX-Receiver: e@f.example\n\n"),
            Err(ReplayError::Header { .. })
        ));
        assert!(matches!(
            parse(b"X-Sender: a@b.example\nX-Receiver: e@f.example NOTIFY=NEVER,SUCCESS\n\n"),
            Err(ReplayError::Header { .. })
        ));
        assert_eq!(parse(b"X-Sender: a@b.example\0"), Err(ReplayError::Binary));
    }

    #[test]
    fn line_ends_become_crlf_once() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }
}
