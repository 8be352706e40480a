//! Postfix's smtp-sink as the one next hop of every target, counting what it
//! receives through its `-c` counters (no dump files: the sink does no disk I/O).
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    messages: Arc<AtomicU64>,
}

impl Sink {
    pub fn start(addr: SocketAddr) -> Result<Sink> {
        let mut child = Command::new(crate::tool("smtp-sink")?)
            // -c: running counters on stdout; -m: concurrent sessions it serves.
            .args(["-c", "-u", "root", "-m", "1024"])
            .arg(addr.to_string())
            .arg("1024")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start smtp-sink")?;
        let mut out = child.stdout.take().context("smtp-sink stdout")?;
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
        crate::wait_for_port(addr, Duration::from_secs(10))?;
        Ok(Sink { child, addr, messages })
    }

    /// Messages received so far.
    pub fn count(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Waits until `count` messages have arrived; the moment it saw them.
    pub fn wait_for(&mut self, count: u64, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if self.count() >= count {
                return Ok(Instant::now());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("smtp-sink exited ({status})");
            }
            if Instant::now() > deadline {
                bail!("only {} of {count} messages reached the sink within {within:?}", self.count());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn parse_mesg(record: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(record).ok()?;
    text.split_whitespace().find_map(|f| f.strip_prefix("mesg="))?.parse().ok()
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
