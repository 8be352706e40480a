//! A transport server running inside the test process on a [`ManualClock`], so
//! days of queue time take seconds: the test moves the clock, the server's
//! timers fire, and real connections go to real peers on loopback.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use transport::api::{MessageQuery, QueueInfo, ResultSize};
use transport::clock::ManualClock;
use transport::config::TransportFile;
use transport::server::{Server, StartOptions};

/// 2026-01-05T00:00:00Z: a fixed start so log lines and DSN dates are predictable.
pub const T0_SECS: u64 = 1_767_571_200;

/// Get-Message without a result size limit, optionally of one queue.
pub fn all_messages(queue: Option<&str>) -> MessageQuery {
    MessageQuery { queue: queue.map(str::to_string), result_size: Some(ResultSize::Unlimited), ..Default::default() }
}

pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0_SECS)
}

pub struct InProc {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    pub clock: ManualClock,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub smtp: SocketAddr,
}

impl InProc {
    /// Starts a server from `yaml` (a complete config file) with its queue under `dir`.
    pub fn start(yaml: &str, dir: &Path, clock: ManualClock) -> InProc {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let config_path = dir.join("transport.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let mut s = InProc {
            rt,
            server: None,
            clock,
            dir: dir.to_path_buf(),
            config_path,
            smtp: "127.0.0.1:1".parse().unwrap(),
        };
        s.spawn();
        s
    }

    /// [`InProc::start`] on `file`, written as YAML.
    pub fn start_file(file: &TransportFile, dir: &Path, clock: ManualClock) -> InProc {
        InProc::start(&testkit::config_file::config_text(file), dir, clock)
    }

    fn spawn(&mut self) {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        let file = TransportFile::from_yaml_str(&text).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        let options = StartOptions { clock: Arc::new(self.clock.clone()), config_path: None, config_text: text };
        let server = self.rt.block_on(Server::start(file, options)).expect("server starts");
        self.smtp = server.listeners()[0].1;
        self.server = Some(server);
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Clean shutdown, then a new server on the same queue directory and clock.
    pub fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
        self.spawn();
    }

    /// Clean shutdown; the server is gone until [`InProc::restart`].
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
    }

    /// Applies a new config file text (as a reload would).
    pub fn reload(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("write config");
        let file = TransportFile::from_yaml_str(yaml).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        self.rt.block_on(self.server().reload(file, yaml));
    }

    /// [`InProc::reload`] of `file`, written as YAML.
    pub fn reload_file(&self, file: &TransportFile) {
        self.reload(&testkit::config_file::config_text(file));
    }

    pub fn queues(&self) -> Vec<QueueInfo> {
        self.server().queue_manager().queues()
    }

    /// The delivery queue whose next hop contains `hop`.
    pub fn queue(&self, hop: &str) -> Option<QueueInfo> {
        self.queues().into_iter().find(|q| q.next_hop_domain.contains(hop))
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One session that sends `test_message(tag, 1)` from `from` to `to`; the message must
    /// be taken (250).
    pub fn send(&self, from: &str, to: &[&str], tag: &str) {
        let (mut c, _) = super::SmtpClient::connect(self.smtp).expect("connect");
        assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
        let reply = c.send_message(from, to, &super::test_message(tag, 1)).expect("send");
        assert!(reply.starts_with("250"), "{reply}");
        let _ = c.cmd("QUIT");
    }

    /// The first `count` messages at `sink` within `within`; on a time-out, what this
    /// server was doing (its queues and connectivity log).
    pub fn arrived(&self, sink: &super::Sink, count: usize, within: Duration) -> Vec<super::SinkMessage> {
        super::eventually_or(within, || Some(sink.messages()).filter(|m| m.len() >= count)).unwrap_or_else(|| {
            panic!(
                "{count} messages did not arrive; queues: {:#?}\nconnectivity log: {:#?}",
                self.queues(),
                self.connectivity_log()
            )
        })
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set_time(&self, t: SystemTime) {
        self.clock.set(t);
    }

    /// The connectivity log lines written so far (every file, in order).
    pub fn connectivity_log(&self) -> Vec<String> {
        read_logs(&self.dir.join("log").join("Connectivity"))
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
    }
}

/// Every non-header line of every `*.log` file of a directory, files in name order.
pub fn read_logs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Milliseconds since the epoch of an RFC 3339 time from the admin API.
pub fn ms_of(rfc3339: &str) -> u64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

pub fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after epoch").as_millis() as u64
}
