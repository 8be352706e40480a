//! Postfix's `smtp-sink` as a next hop outside the cluster: it listens on an address of
//! the cluster's "outside" namespace, and dumps every message it accepts to its own file,
//! so a test counts what arrived and by which Message-ID (the test kit's smtp-sink command
//! and dump reader).
use crate::cluster::daemon::{self, Daemon};
use crate::cluster::Cluster;
use anyhow::Result;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use testkit::sink::{dump_command, SinkDump};

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
        let ip: Ipv4Addr = match outside.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => anyhow::bail!("outside addresses are IPv4"),
        };
        let dir = cluster.root().join("outside").join(format!("sink-{ip}-{}", outside.addr.port()));
        std::fs::create_dir_all(&dir)?;
        let (bin, sink_args) = dump_command(&dir, outside.addr)?;
        let netns = &cluster.net.outside.name;
        let mut args: Vec<&std::ffi::OsStr> = vec!["netns".as_ref(), "exec".as_ref(), netns.as_ref(), bin.as_os_str()];
        args.extend(sink_args.iter().map(std::ffi::OsStr::new));
        let name = format!("smtp-sink-{ip}-{}", outside.addr.port());
        let daemon = Daemon::spawn(&name, daemon::command("ip", args), &cluster.root().join("logs"))?;
        let sink = Sink { addr: outside.addr, dir, _daemon: daemon };
        testkit::listener::try_wait_for_listener(sink.addr, Duration::from_secs(10))?;
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
        SinkDump::new(&self.dir).message_ids()
    }
}
