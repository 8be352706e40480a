//! Postfix's smtp-sink as the next hop of the tests: [`Sink`] dumps every message it accepts
//! to its own file ([`SinkDump`] reads them), [`CountingSink`] only counts (the bench: no
//! disk I/O at the sink).
use crate::peer::{find_tool, MissingPeer};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a sink could not start or did not receive.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Missing(#[from] MissingPeer),
    #[error("cannot start smtp-sink on {addr}: {source}")]
    Spawn { addr: SocketAddr, source: std::io::Error },
    #[error("smtp-sink on {addr}: {source}")]
    NotListening { addr: SocketAddr, source: crate::listener::NotReady },
    #[error("smtp-sink on {addr} exited ({status})")]
    Exited { addr: SocketAddr, status: std::process::ExitStatus },
    #[error("only {got} of {want} messages reached the sink on {addr} within {within:?}")]
    Short { addr: SocketAddr, got: u64, want: u64, within: Duration },
}

/// Path of smtp-sink and the arguments that make it dump each transaction to a file named
/// `<dump_dir>/m.*`, listening on `listen`.
pub fn dump_command(dump_dir: &Path, listen: SocketAddr) -> Result<(PathBuf, Vec<String>), MissingPeer> {
    let bin = find_tool("smtp-sink", "postfix")?;
    let template = format!("{}/m.", dump_dir.display());
    // 256: the listen backlog.
    Ok((bin, vec!["-u".into(), "root".into(), "-d".into(), template, listen.to_string(), "256".into()]))
}

/// smtp-sink on loopback dumping every transaction to a file of its own.
pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Sink {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Extra smtp-sink options, e.g. `["-r", "RCPT"]` to soft-reject.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(crate::free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], port)), extra)
    }

    /// On another loopback address too (MX hosts sharing a send connector's port).
    pub fn start_at(addr: SocketAddr, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("sink dir");
        let (bin, mut args) = dump_command(dir.path(), addr).unwrap_or_else(|e| panic!("{e}"));
        // The options go before the address.
        let at = args.len() - 2;
        args.splice(at..at, extra.iter().map(|s| s.to_string()));
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start smtp-sink on {addr}: {e}"));
        crate::wait_for_listener(addr, Duration::from_secs(10));
        Sink { child, addr, dir }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What was dumped so far.
    pub fn dump(&self) -> SinkDump<'_> {
        SinkDump::new(self.dir.path())
    }

    /// Every complete message dumped so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.dump().messages()
    }

    /// The first `count` messages, waiting up to `within`; panics when fewer came.
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<SinkMessage> {
        crate::eventually(within, &format!("{count} messages at the sink"), || {
            let m = self.messages();
            (m.len() >= count).then_some(m)
        })
    }

    /// Message-ID → how many times it arrived.
    pub fn message_ids(&self) -> BTreeMap<String, usize> {
        self.dump().message_ids()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The folder smtp-sink dumps into (`-d <dir>/m.`), read as messages.
pub struct SinkDump<'a> {
    dir: &'a Path,
}

impl<'a> SinkDump<'a> {
    pub fn new(dir: &'a Path) -> Self {
        SinkDump { dir }
    }

    /// Every complete message dumped so far (a file still being written is left out).
    pub fn messages(&self) -> Vec<SinkMessage> {
        let Ok(entries) = std::fs::read_dir(self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| parse_dump(&text))
            .collect()
    }

    /// Message-ID → how many times it arrived.
    pub fn message_ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for m in self.messages() {
            if let Some(id) = m.header("Message-ID") {
                *ids.entry(id).or_insert(0) += 1;
            }
        }
        ids
    }
}

/// One message as smtp-sink dumped it.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkMessage {
    pub mail_args: String,
    pub rcpt_args: Vec<String>,
    /// Header and body as received (smtp-sink writes LF line ends).
    pub content: String,
}

impl SinkMessage {
    /// The first header `name` (any case) of the message, unfolded lines not joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.content
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// Parses smtp-sink's dump format; `None` while the file is still being written (a complete
/// dump ends with an empty line after the message).
fn parse_dump(text: &str) -> Option<SinkMessage> {
    if !text.ends_with("\n\n") {
        return None;
    }
    let mut mail_args = String::new();
    let mut rcpt_args = Vec::new();
    let mut lines = text.split_inclusive('\n');
    // smtp-sink's own headers end with its three-line Received header.
    let mut received_lines = 0;
    for line in lines.by_ref() {
        if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
            mail_args = v.trim_end().to_string();
        } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
            rcpt_args.push(v.trim_end().to_string());
        } else if line.starts_with("Received: ") || received_lines > 0 {
            received_lines += 1;
            if received_lines == 3 {
                break;
            }
        }
    }
    let rest: String = lines.collect();
    // Drop the empty line smtp-sink appends.
    let content = rest.strip_suffix('\n').unwrap_or(&rest).to_string();
    Some(SinkMessage { mail_args, rcpt_args, content })
}

/// smtp-sink counting what it receives through its `-c` counters (no dump files).
pub struct CountingSink {
    child: Child,
    pub addr: SocketAddr,
    messages: Arc<AtomicU64>,
}

impl CountingSink {
    pub fn start(addr: SocketAddr) -> Result<CountingSink, SinkError> {
        let mut child = Command::new(find_tool("smtp-sink", "postfix")?)
            // -c: running counters on stdout; -m: concurrent sessions it serves.
            .args(["-c", "-u", "root", "-m", "1024"])
            .arg(addr.to_string())
            .arg("1024")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SinkError::Spawn { addr, source })?;
        let mut out = child.stdout.take().expect("smtp-sink's stdout is piped");
        let messages = Arc::new(AtomicU64::new(0));
        let counter = messages.clone();
        // The counters come as `sess=N quit=N mesg=N` records ended by CR.
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut record = Vec::new();
            while let Ok(n @ 1..) = out.read(&mut buf) {
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        if let Some(m) = parse_mesg(&record) {
                            counter.store(m, Ordering::Relaxed);
                        }
                        record.clear();
                    } else {
                        record.push(b);
                    }
                }
            }
        });
        let sink = CountingSink { child, addr, messages };
        crate::listener::try_wait_for_listener(addr, Duration::from_secs(10))
            .map_err(|source| SinkError::NotListening { addr, source })?;
        Ok(sink)
    }

    /// Messages received so far.
    pub fn count(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Waits until `count` messages have arrived; the moment it saw them (looked at every
    /// 2 ms: the bench times deliveries by it).
    pub fn wait_for(&mut self, count: u64, within: Duration) -> Result<Instant, SinkError> {
        let deadline = Instant::now() + within;
        loop {
            if self.count() >= count {
                return Ok(Instant::now());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SinkError::Exited { addr: self.addr, status });
            }
            if Instant::now() > deadline {
                return Err(SinkError::Short { addr: self.addr, got: self.count(), want: count, within });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `mesg=` counter of one `-c` record.
fn parse_mesg(record: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(record).ok()?;
    text.split_whitespace().find_map(|f| f.strip_prefix("mesg="))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: relay.test\n\
        X-Mail-Args: a@example.org SIZE=42\nX-Rcpt-Args: b@example.net NOTIFY=NEVER\nX-Rcpt-Args: c@example.net\n\
        Received: from relay.test ([127.0.0.1])\n\tby sink (smtp-sink)\n\twith ESMTP id 1;\n\
        Subject: hi\nMessage-Id: <1@test.invalid>\n\nbody line\n\n";

    #[test]
    fn a_dump_gives_the_envelope_and_the_message_without_the_sinks_headers() {
        let m = parse_dump(DUMP).expect("complete");
        assert_eq!(m.mail_args, "a@example.org SIZE=42");
        assert_eq!(m.rcpt_args, ["b@example.net NOTIFY=NEVER", "c@example.net"]);
        assert_eq!(m.content, "Subject: hi\nMessage-Id: <1@test.invalid>\n\nbody line\n");
        assert_eq!(m.header("message-id").as_deref(), Some("<1@test.invalid>"));
        assert_eq!(m.header("X-Mail-Args"), None, "the sink's own headers are not the message's");
    }

    #[test]
    fn a_dump_still_being_written_is_not_a_message() {
        assert_eq!(parse_dump(&DUMP[..DUMP.len() - 1]), None);
    }

    #[test]
    fn message_ids_count_repeats() {
        let dir = tempfile::tempdir().unwrap();
        for (i, text) in [DUMP, DUMP, &DUMP[..40]].iter().enumerate() {
            std::fs::write(dir.path().join(format!("m.{i}")), text).unwrap();
        }
        let ids = SinkDump::new(dir.path()).message_ids();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), [("<1@test.invalid>".to_string(), 2)]);
    }

    #[test]
    fn the_counter_record_gives_the_messages() {
        assert_eq!(parse_mesg(b"sess=3 quit=2 mesg=17"), Some(17));
        assert_eq!(parse_mesg(b"sess=3"), None);
    }
}
