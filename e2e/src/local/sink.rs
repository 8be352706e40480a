//! Postfix's `smtp-sink` as the next hop of the servers: every message it accepts is dumped
//! to its own file, so a test counts what arrived and by which Message-ID.
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a required peer; panics naming the Debian package when it is missing (a test
/// that needs a peer never skips).
pub fn tool(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("the local e2e needs `{name}`: install the Debian package `{package}` (apt-get install {package})")
    })
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("an ephemeral port")
}

pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Sink {
    /// smtp-sink on 127.0.0.1:`port` (0: a free one).
    pub fn start(port: u16) -> Sink {
        let bin = tool("smtp-sink", "postfix");
        let port = if port == 0 { free_port() } else { port };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let dir = tempfile::tempdir().expect("sink folder");
        let template = format!("{}/m.", dir.path().display());
        let child = Command::new(bin)
            .args(["-u", "root", "-d", &template])
            .arg(addr.to_string())
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink does not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sink { child, addr, dir }
    }

    /// `Ok` once a message of each of `ids` (as sent by [`super::smtp::message`]) has
    /// arrived, else `Err` naming the ones still missing.
    pub fn missing(&self, ids: &[String]) -> Result<(), String> {
        let got = self.message_ids();
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(&super::smtp::message_id(id))).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    }

    /// Message-ID → how many times it arrived (complete dumps only).
    pub fn message_ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else { return ids };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            // A complete dump ends with the empty line smtp-sink appends.
            if !text.ends_with("\n\n") {
                continue;
            }
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID:").or_else(|| l.strip_prefix("Message-Id:")))
                .map(|v| v.trim().to_string());
            if let Some(id) = id {
                *ids.entry(id).or_insert(0) += 1;
            }
        }
        ids
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
