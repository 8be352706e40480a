//! The transport server (release build) as a process with a config the bench
//! builds (the test kit's [`TransportSetup`], never YAML joined from strings): one
//! receive connector, one send connector to the sink, full durability (nothing to
//! configure: a message is answered 250 only after its queue commit is fsynced).
use ::transport::config::TransportFile;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::config_file::{edit, write_config_file, Placement, TransportSetup};

pub struct Transport {
    pub dir: PathBuf,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
}

/// The configuration the bench gives its server (printed into the results).
pub fn config(dir: &Path, smtp: SocketAddr, admin: SocketAddr, next_hop: SocketAddr) -> TransportFile {
    config_named("bench-0", dir, smtp, admin, Some(next_hop))
}

/// Server `name` (servers that know each other need names of their own) in `dir`: SMTP on
/// `smtp` for loopback clients, which may relay; the admin API on `admin`; everything
/// relayed to `next_hop`, or no send connector without one (the caller adds its own).
pub fn config_named(
    name: &str,
    dir: &Path,
    smtp: SocketAddr,
    admin: SocketAddr,
    next_hop: Option<SocketAddr>,
) -> TransportFile {
    let setup = TransportSetup {
        server_name: Some(name.into()),
        fqdn: Some("transport.bench.invalid".into()),
        smart_host: next_hop,
        // 100 sessions come from one address (default 20).
        edit: edit(|f| f.receive_connectors[0].settings.max_inbound_connection_per_source = Some(1000)),
        ..Default::default()
    };
    setup.config_file(&Placement { dir, smtp, admin: Some(admin), token_file: None })
}

impl Transport {
    pub fn create(dir: &Path, smtp: SocketAddr, admin: SocketAddr, next_hop: SocketAddr) -> Result<Transport> {
        Self::with_config(dir, smtp, admin, &config(dir, smtp, admin, next_hop))
    }

    /// A server with a configuration of the caller's (listening on `smtp` and `admin`).
    pub fn with_config(dir: &Path, smtp: SocketAddr, admin: SocketAddr, file: &TransportFile) -> Result<Transport> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("transport.yaml");
        write_config_file(&config_path, file);
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
