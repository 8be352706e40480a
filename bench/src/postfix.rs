//! A private Postfix instance: its own config_directory, queue_directory and
//! data_directory under a temp folder, relaying everything to the sink.
//! Durability is Postfix's default: cleanup fsyncs the queue file before smtpd
//! answers 250.
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postfix {
    pub dir: PathBuf,
    pub smtp: SocketAddr,
    master: Option<u32>,
}

/// The main.cf the bench writes (printed into the results as is).
pub fn main_cf(dir: &Path, sink: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.invalid
mydestination =
local_transport = error:local delivery is disabled
relayhost = [{ip}]:{port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# 100 sessions from one address (the transport server's maxInboundConnectionPerSource
# is raised the same way); smtpd and cleanup run one process per session.
default_process_limit = 200
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
",
        ip = sink.ip(),
        port = sink.port()
    )
}

/// master.cf: the services a relay needs, none chrooted (the queue directory
/// holds no chroot files).
pub fn master_cf(smtp: SocketAddr) -> String {
    format!(
        "{smtp} inet n - n - 200 smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

impl Postfix {
    pub fn create(dir: &Path, smtp: SocketAddr, sink: SocketAddr) -> Result<Postfix> {
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("etc/main.cf"), main_cf(dir, sink))?;
        std::fs::write(dir.join("etc/master.cf"), master_cf(smtp))?;
        let status = Command::new("chown").arg("postfix:postfix").arg(dir.join("data")).status()?;
        if !status.success() {
            bail!("chown postfix {}: {status}", dir.join("data").display());
        }
        Ok(Postfix { dir: dir.to_path_buf(), smtp, master: None })
    }

    fn postfix(&self, verb: &str) -> Result<()> {
        let out = Command::new(testkit::peer::find_tool("postfix", "postfix")?)
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg(verb)
            .output()
            .with_context(|| format!("postfix {verb}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!("postfix -c {} {verb} failed ({}): {}", self.dir.join("etc").display(), out.status, tail.join(" | "));
        }
        Ok(())
    }

    /// Starts the instance; returns the master's pid.
    pub fn start(&mut self) -> Result<u32> {
        self.postfix("start")?;
        let pid_file = self.dir.join("spool/pid/master.pid");
        let pid = testkit::poll::poll_every(Duration::from_millis(20), Duration::from_secs(20), || {
            std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok())
        })
        .context("Postfix master pid")?;
        self.master = Some(pid);
        testkit::listener::try_wait_for_smtp_ready(self.smtp, Duration::from_secs(20))?;
        Ok(pid)
    }

    /// Stops the instance and waits for the master to exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(pid) = self.master.take() else { return Ok(()) };
        self.postfix("stop")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::procs::alive(pid) {
            if Instant::now() > deadline {
                bail!("Postfix master {pid} still running 30 s after stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn version() -> String {
        Command::new("postconf")
            .args(["-d", "-h", "mail_version"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
