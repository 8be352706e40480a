//! The replay directory (reference/exchange.md §2.7): `.eml` files whose
//! envelope is given by leading `X-Sender:` (exactly one) and `X-Receiver:`
//! (one per recipient) headers are submitted like received mail. A file is
//! renamed `.tmp` while it is processed and deleted once the message is
//! durably queued; a file that cannot be parsed is renamed `.bad`; leftover
//! `.tmp` files become `.eml` again at start (a crash may cause a duplicate,
//! never a loss).
use crate::queue::message::{Notify, Origin, Recipient, Ret, Source};
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
    pub mail_from: Option<String>,
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
                let (addr, params) = split_address(value, "X-Sender")?;
                msg.mail_from = addr;
                for (k, v) in params {
                    match k.as_str() {
                        "body" => msg.body_8bit = v.eq_ignore_ascii_case("8bitmime"),
                        "ret" => {
                            msg.ret = Some(match v.to_ascii_uppercase().as_str() {
                                "FULL" => Ret::Full,
                                "HDRS" => Ret::Hdrs,
                                _ => return Err(header_error("X-Sender", format!("RET={v} is not FULL or HDRS"))),
                            })
                        }
                        "envid" => msg.envid = Some(v),
                        _ => {} // auth= and others carry nothing we keep
                    }
                }
            }
            "x-receiver" => {
                let (addr, params) = split_address(value, "X-Receiver")?;
                let addr =
                    addr.ok_or_else(|| header_error("X-Receiver", "the null address is not a recipient".into()))?;
                let mut rcpt = Recipient::new(addr);
                for (k, v) in params {
                    match k.as_str() {
                        "notify" => rcpt.notify = Some(parse_notify(&v)?),
                        "orcpt" => rcpt.orcpt = Some(v),
                        _ => {}
                    }
                }
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

fn header_error(header: &str, reason: String) -> ReplayError {
    ReplayError::Header { header: header.into(), reason }
}

/// `<addr> K=V ...` or `addr K=V ...`; `<>` is the null address.
fn split_address(value: &str, header: &str) -> Result<(Option<String>, Vec<(String, String)>), ReplayError> {
    let mut parts = value.split_whitespace();
    let first = parts.next().ok_or_else(|| header_error(header, "no address".into()))?;
    let addr = first.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(first);
    let addr = if addr.is_empty() {
        None
    } else if addr.contains('@') && !addr.contains(['<', '>', '"', ',']) && addr.is_ascii() {
        Some(addr.to_string())
    } else {
        return Err(header_error(header, format!("{first} is not an address")));
    };
    let params = parts
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect();
    Ok((addr, params))
}

fn parse_notify(v: &str) -> Result<Notify, ReplayError> {
    let mut n = Notify::default();
    for word in v.split(',') {
        match word.trim().to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            other => return Err(header_error("X-Receiver", format!("NOTIFY value {other} is unknown"))),
        }
    }
    if n.never && (n.success || n.failure || n.delay) {
        return Err(header_error("X-Receiver", "NOTIFY=NEVER excludes the other values".into()));
    }
    Ok(n)
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
        let incoming = Incoming {
            id: intake.next_id(),
            mail_from: msg.mail_from,
            recipients: msg.recipients,
            data: msg.data,
            body_8bit: msg.body_8bit,
            ret: msg.ret,
            envid: msg.envid,
            origin: Origin {
                connector: "Replay".into(),
                client_ip: msg.source_ip,
                helo: msg.helo.unwrap_or_default(),
                tls: false,
                source: Source::Replay,
            },
            subject: None,
            internet_message_id: None,
        };
        match intake.submit(incoming).await {
            Ok(()) => {
                info!(file = %eml.display(), "replay file submitted");
                let _ = std::fs::remove_file(&tmp);
            }
            Err(SubmitError::Storage(e)) | Err(SubmitError::Unavailable(e)) => {
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
        assert_eq!(m.mail_from.as_deref(), Some("alice@example.org"));
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
