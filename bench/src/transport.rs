//! The transport server (release build) as a process with a config the bench
//! writes: one receive connector, one send connector to the sink, full
//! durability (nothing to configure: a message is answered 250 only after its
//! queue commit is fsynced).
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Transport {
    pub dir: PathBuf,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
}

/// The configuration file the bench writes (printed into the results as is).
pub fn config(dir: &Path, smtp: SocketAddr, admin: SocketAddr, next_hop: SocketAddr) -> String {
    let send = format!(
        "  - name: Outbound
    addressSpaces: [{{domain: \"*\", cost: 1}}]
    smartHosts: [\"{next_hop}\"]
"
    );
    config_with(dir, smtp, admin, &send, "")
}

/// The bench's server with other send connectors (YAML list items) and more
/// top-level settings (`extra`).
pub fn config_with(dir: &Path, smtp: SocketAddr, admin: SocketAddr, send_connectors: &str, extra: &str) -> String {
    config_named("bench-0", dir, smtp, admin, send_connectors, extra)
}

/// [`config_with`] for server `name` (servers that know each other need names of their own).
pub fn config_named(
    name: &str,
    dir: &Path,
    smtp: SocketAddr,
    admin: SocketAddr,
    send_connectors: &str,
    extra: &str,
) -> String {
    format!(
        "serverName: {name}
fqdn: transport.bench.invalid
queueDirectory: {q}
logDirectory: {l}
receiveConnectors:
  - name: Default
    bind: {smtp}
    remoteIPRanges: [\"127.0.0.0/8\"]
    allowRelay: true
    # 100 sessions come from one address (default 20).
    maxInboundConnectionPerSource: 1000
sendConnectors:
{send_connectors}{extra}admin: {{bind: \"{admin}\"}}
",
        q = dir.join("queue").display(),
        l = dir.join("log").display(),
    )
}

impl Transport {
    pub fn create(dir: &Path, smtp: SocketAddr, admin: SocketAddr, next_hop: SocketAddr) -> Result<Transport> {
        Self::with_config(dir, smtp, admin, &config(dir, smtp, admin, next_hop))
    }

    /// A server with a configuration of the caller's (listening on `smtp` and `admin`).
    pub fn with_config(dir: &Path, smtp: SocketAddr, admin: SocketAddr, text: &str) -> Result<Transport> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("transport.yaml");
        std::fs::write(&config_path, text)?;
        Ok(Transport { dir: dir.to_path_buf(), smtp, admin, config: config_path, child: None })
    }

    /// The `transport` binary next to this one (both built by `cargo build --release`),
    /// or the one named by `BENCH_TRANSPORT_BIN` (to measure an older build).
    pub fn binary() -> Result<PathBuf> {
        if let Some(bin) = std::env::var_os("BENCH_TRANSPORT_BIN") {
            return Ok(PathBuf::from(bin));
        }
        let exe = std::env::current_exe()?;
        let bin = exe.with_file_name("transport");
        if !bin.is_file() {
            bail!("{} not found: build it with `cargo build --release -p transport`", bin.display());
        }
        Ok(bin)
    }

    /// Starts the server and waits until its SMTP port answers; returns its pid
    /// and how long that took (the queue is recovered before the listeners open).
    pub fn start(&mut self) -> Result<(u32, Duration)> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("transport.log"))?;
        let started = Instant::now();
        let child = Command::new(Self::binary()?)
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start transport")?;
        let pid = child.id();
        self.child = Some(child);
        testkit::listener::try_wait_for_smtp_ready(self.smtp, Duration::from_secs(300))?;
        Ok((pid, started.elapsed()))
    }

    /// SIGTERM, then wait (SIGKILL after 60 s).
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("transport did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("transport.log")).unwrap_or_default()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
