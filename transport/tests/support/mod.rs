//! Real peers for the integration tests: Postfix's smtp-sink and smtp-source,
//! swaks, and the `transport` binary itself, all on loopback.
//!
//! A missing peer fails the test with the package to install; it never skips
//! (under CI=true or not), because a skipped test proves nothing.
#![allow(dead_code)]

pub mod dns;
pub mod inproc;
pub mod sts;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a required external tool; panics naming the package when missing.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required test peer `{name}` not found (install the Debian package `{package}`; CI={})",
        std::env::var("CI").unwrap_or_default()
    );
}

/// A loopback port nobody listens on right now.
///
/// Taken below the kernel's ephemeral range (32768 and up), where outgoing
/// connections pick their source ports: a port handed out there could be
/// taken by some connection before the server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    // Each test process starts elsewhere in the range, so parallel runs rarely meet.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {FIRST} and {}", FIRST + COUNT);
}

/// Waits until something listens on `addr` (a peer such as smtp-sink, which may
/// be told to greet late or with `421`).
pub fn wait_for_port(addr: SocketAddr, within: Duration) {
    // A connection to a port nobody listens on can "succeed" by connecting to
    // itself (TCP simultaneous open, when the kernel picks that very port as the
    // source): only a different peer proves a listener.
    wait_until_connected(addr, within, "a listener", |stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

/// Waits until the transport server on `addr` is past Starting: while it
/// recovers its queue it listens already but greets with `421 4.3.2`, and a test
/// must not begin yet. A `220`, or a final `5xx` refusal (`554`, this client's
/// address not allowed), means it is serving.
pub fn wait_for_server(addr: SocketAddr, within: Duration) {
    wait_until_connected(addr, within, "a transport server past Starting", |stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut first = [0u8; 4];
        stream.read_exact(&mut first).is_ok()
            && first[..3].iter().all(u8::is_ascii_digit)
            && matches!(first[0], b'2' | b'5')
    })
}

/// Connects to `addr` until `accept` likes the connection; panics after `within`.
fn wait_until_connected(addr: SocketAddr, within: Duration, what: &str, accept: impl Fn(&mut TcpStream) -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            if accept(&mut stream) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what} on {addr} after {within:?}");
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
pub fn eventually<T>(within: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(within, check).unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// A `retry:` section with every retry interval at `secs` seconds, so a hop that
/// comes back is used soon.
pub fn retry_every(secs: u32) -> String {
    let t = format!("\"00:00:{secs:02}\"");
    format!(
        "retry: {{queueGlitchRetryInterval: {t}, transientFailureRetryInterval: {t}, \
         outboundConnectionFailureRetryInterval: {t}, messageRetryInterval: {t}}}\n"
    )
}

/// Polls `check` until it holds; `None` after `within` (the caller says what it saw).
pub fn eventually_or<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Postfix's smtp-sink writing every transaction to its own file.
pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// One message as smtp-sink dumped it.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub mail_args: String,
    pub rcpt_args: Vec<String>,
    /// Header and body as received (smtp-sink writes LF line ends).
    pub content: String,
}

impl SinkMessage {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.content
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

impl Sink {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Extra smtp-sink options, e.g. `["-r", "RCPT"]` to soft-reject.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        Self::start_on(port, extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        Self::start_at(format!("127.0.0.1:{port}").parse().expect("addr"), extra)
    }

    /// On another loopback address too (MX hosts sharing a send connector's port).
    pub fn start_at(addr: SocketAddr, extra: &[&str]) -> Self {
        let bin = tool("smtp-sink", "postfix");
        let dir = tempfile::tempdir().expect("sink dir");
        let template = format!("{}/m.", dir.path().display());
        let child = Command::new(bin)
            .args(["-u", "root", "-d", &template])
            .args(extra)
            .arg(addr.to_string())
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        wait_for_port(addr, Duration::from_secs(10));
        Sink { child, addr, dir }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every complete message dumped so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else { return out };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if let Some(m) = parse_dump(&text) {
                out.push(m);
            }
        }
        out
    }

    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<SinkMessage> {
        eventually(within, &format!("{count} messages at the sink"), || {
            let m = self.messages();
            (m.len() >= count).then_some(m)
        })
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

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses smtp-sink's dump format; `None` while the file is still being written
/// (a complete dump ends with an empty line after the message).
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

/// A `transport` server process with its own config and queue directory.
pub struct Transport {
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub smtp: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub admin: Option<SocketAddr>,
    pub token: Option<String>,
}

/// Knobs for the config file a test server gets.
#[derive(Default)]
pub struct TransportSetup {
    pub smart_host: Option<SocketAddr>,
    pub dns_routing: bool,
    /// The send connector's port (for MX hosts and smart hosts without one).
    pub connector_port: Option<u16>,
    pub nameserver: Option<SocketAddr>,
    pub mailbox: Option<SocketAddr>,
    /// The Default receive connector's `remoteIPRanges` (a YAML list); all of
    /// 127.0.0.0/8 when `None`.
    pub remote_ip_ranges: Option<String>,
    pub extra_receive: String,
    /// More lines for the Outbound send connector (each indented by four spaces).
    pub extra_send: String,
    /// The queue directory, instead of `queue` in the server's folder.
    pub queue_directory: Option<PathBuf>,
    pub extra: String,
    /// Serve the admin API on a free loopback port, with this token if given.
    pub admin: bool,
    pub token: Option<String>,
    /// `serverName` (default `test-0`).
    pub server_name: Option<String>,
}

impl Transport {
    pub fn start(setup: &TransportSetup) -> Self {
        let tmp = tempfile::tempdir().expect("transport dir");
        let dir = tmp.path().to_path_buf();
        let mut t = Self::configure(&dir, setup);
        t._tmp = Some(tmp);
        t.spawn();
        t
    }

    fn configure(dir: &Path, setup: &TransportSetup) -> Self {
        let port = free_port();
        let smtp: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut yaml = format!(
            "serverName: {name}\nfqdn: relay.test.invalid\nqueueDirectory: {q}\nlogDirectory: {l}\n\
             receiveConnectors:\n  - name: Default\n    bind: {smtp}\n    remoteIPRanges: {ranges}\n    allowRelay: true\n{extra_receive}",
            name = setup.server_name.as_deref().unwrap_or("test-0"),
            q = setup.queue_directory.clone().unwrap_or_else(|| dir.join("queue")).display(),
            ranges = setup.remote_ip_ranges.as_deref().unwrap_or("[\"127.0.0.0/8\"]"),
            l = dir.join("log").display(),
            extra_receive = setup.extra_receive,
        );
        yaml.push_str("sendConnectors:\n  - name: Outbound\n    addressSpaces: [{domain: \"*\", cost: 1}]\n");
        if let Some(h) = setup.smart_host {
            yaml.push_str(&format!("    smartHosts: [\"{h}\"]\n"));
        }
        if setup.dns_routing {
            yaml.push_str("    dnsRouting: true\n");
        }
        if let Some(port) = setup.connector_port {
            yaml.push_str(&format!("    port: {port}\n"));
        }
        yaml.push_str(&setup.extra_send);
        if let Some(ns) = setup.nameserver {
            yaml.push_str(&format!("dns: {{nameservers: [\"{ns}\"]}}\n"));
        }
        if let Some(m) = setup.mailbox {
            yaml.push_str(&format!(
                "mailboxDelivery: {{host: \"{m}\"}}\ntransportConfig:\n  acceptedDomains: [{{domain: local.test, type: Authoritative}}]\n  postmaster: postmaster@local.test\n"
            ));
        }
        let admin: Option<SocketAddr> =
            setup.admin.then(|| format!("127.0.0.1:{}", free_port()).parse().expect("admin addr"));
        if let Some(a) = admin {
            yaml.push_str(&format!("admin:\n  bind: \"{a}\"\n"));
            if let Some(token) = &setup.token {
                let path = dir.join("token");
                std::fs::write(&path, token).expect("token file");
                yaml.push_str(&format!("  tokenFile: {}\n", path.display()));
            }
        }
        yaml.push_str(&setup.extra);
        let config_path = dir.join("transport.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Transport {
            child: None,
            dir: dir.to_path_buf(),
            _tmp: None,
            smtp,
            config_path,
            log_path: dir.join("transport.log"),
            admin,
            token: setup.token.clone(),
        }
    }

    /// Runs `f` with a client of this server's admin API (on a fresh runtime:
    /// the tests are synchronous).
    pub fn admin<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(transport::client::AdminClient) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let addr = self.admin.expect("this server has no admin API");
        let client = transport::client::AdminClient::new(&format!("http://{addr}"), self.token.clone());
        block_on(async move { f(client.expect("client")).await })
    }

    /// The value of an unlabelled metric from the admin API's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.admin.expect("this server has no admin API");
        let text =
            block_on(async move { reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok() })?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until the store holds no message (every removal committed), per
    /// the admin API's `transport_queue_stored_messages`.
    pub fn wait_store_empty(&self, within: Duration) {
        eventually(within, "an empty queue store", || {
            (self.metric("transport_queue_stored_messages") == Some(0.0)).then_some(())
        });
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_transport"))
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start transport");
        self.child = Some(child);
        wait_for_server(self.smtp, Duration::from_secs(30));
    }

    /// SIGKILL: no shutdown code runs, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal blocking SMTP client that reports the reply to each step; the
/// tests need the raw replies (codes and enhanced codes), which a full client hides.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<(Self, String)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut c = RawClient { reader: BufReader::new(stream), writer };
        let banner = c.read_reply()?;
        Ok((c, banner))
    }

    /// A whole (possibly multi-line) reply, lines joined with `\n`.
    pub fn read_reply(&mut self) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {all:?}")));
            }
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            all.push_str(line.trim_end());
            if last {
                return Ok(all);
            }
            all.push('\n');
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// MAIL, RCPTs, DATA and the message; returns the final reply after the dot.
    pub fn send_message(&mut self, from: &str, to: &[&str], message: &str) -> std::io::Result<String> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if !r.starts_with('2') {
            return Ok(r);
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            if !r.starts_with('2') {
                return Ok(r);
            }
        }
        let r = self.cmd("DATA")?;
        if !r.starts_with('3') {
            return Ok(r);
        }
        let mut body = String::new();
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        self.writer.write_all(body.as_bytes())?;
        self.read_reply()
    }

    pub fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

/// An envelope as the receive side would queue it from `client.test` on the
/// Default connector (`from` None: a null reverse path).
pub fn envelope(from: Option<&str>, recipients: &[&str]) -> transport::queue::message::Envelope {
    use transport::queue::message::{Envelope, MessageId, Origin, Recipient, Source};
    let origin = Origin {
        connector: "Default".into(),
        client_ip: None,
        helo: "client.test".into(),
        tls: false,
        source: Source::Smtp,
    };
    let recipients = recipients.iter().map(|r| Recipient::new(*r)).collect();
    Envelope::new(MessageId(1), from, recipients, 0, origin, 0)
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// A small RFC 5322 message with a unique Message-ID.
pub fn test_message(id: &str, body_lines: usize) -> String {
    let mut m = format!(
        "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: test {id}\r\nMessage-ID: <{id}@test.invalid>\r\n\r\n"
    );
    for i in 0..body_lines {
        m.push_str(&format!("line {i} of message {id}\r\n"));
    }
    m.push_str(".leading dot survives dot-stuffing\r\nlast line");
    m
}
