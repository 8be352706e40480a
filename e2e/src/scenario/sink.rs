//! Postfix's `smtp-sink` as a next hop outside the cluster: it listens on an address of
//! the cluster's "outside" namespace, and dumps every message it accepts to its own file,
//! so a test counts what arrived and by which Message-ID.
use crate::cluster::daemon::{self, Daemon};
use crate::cluster::Cluster;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of a required peer; an error naming the Debian package when it is missing (a test
/// that needs a peer never skips).
pub fn tool(name: &str, package: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).with_context(|| {
        format!("the e2e suite needs `{name}`: install the Debian package `{package}` (apt-get install {package})")
    })
}

/// An address outside the cluster: where a next hop is, or will be.
#[derive(Debug, Clone, Copy)]
pub struct Outside {
    pub addr: SocketAddr,
}

impl Outside {
    /// A new outside address with nothing listening on it yet (a next hop that is down:
    /// connections are refused at once).
    pub fn reserve(cluster: &Cluster, port: u16) -> Result<Outside> {
        let a = cluster.net.outside_address()?;
        Ok(Outside { addr: SocketAddr::from((a.ip, port)) })
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    dir: PathBuf,
    _daemon: Daemon,
}

impl Sink {
    /// smtp-sink on a new outside address, port 2526.
    pub fn start(cluster: &Cluster) -> Result<Sink> {
        Sink::at(cluster, Outside::reserve(cluster, 2526)?)
    }

    /// smtp-sink at `outside` (a next hop coming back).
    pub fn at(cluster: &Cluster, outside: Outside) -> Result<Sink> {
        let bin = tool("smtp-sink", "postfix")?;
        let ip: Ipv4Addr = match outside.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => anyhow::bail!("outside addresses are IPv4"),
        };
        let dir = cluster.root().join("outside").join(format!("sink-{ip}-{}", outside.addr.port()));
        std::fs::create_dir_all(&dir)?;
        let template = format!("{}/m.", dir.display());
        let netns = &cluster.net.outside.name;
        let listen = outside.addr.to_string();
        let args: Vec<&std::ffi::OsStr> = vec![
            "netns".as_ref(),
            "exec".as_ref(),
            netns.as_ref(),
            bin.as_os_str(),
            "-u".as_ref(),
            "root".as_ref(),
            "-d".as_ref(),
            template.as_ref(),
            listen.as_ref(),
            "256".as_ref(),
        ];
        let name = format!("smtp-sink-{ip}-{}", outside.addr.port());
        let daemon = Daemon::spawn(&name, daemon::command("ip", args), &cluster.root().join("logs"))?;
        let sink = Sink { addr: outside.addr, dir, _daemon: daemon };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&sink.addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "smtp-sink does not listen on {}", sink.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sink)
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

    /// The Message-IDs that arrived more than once, with their counts.
    pub fn twice(&self) -> Vec<(String, usize)> {
        self.message_ids().into_iter().filter(|(_, n)| *n > 1).collect()
    }

    /// Message-ID → how many times it arrived (complete dumps only).
    pub fn message_ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return ids };
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
