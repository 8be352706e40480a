//! The cluster's network, made of network namespaces the harness creates itself.
//!
//! Each cluster holds a slot `n` (1..=250, an flock on `/run/kube-transport-e2e/slot-<n>`,
//! released by the kernel when the process ends, so a crashed run never blocks a slot):
//! - the control plane listens on `127.77.<n>.1` (loopback, one address per cluster);
//! - the pod network is `10.244.<n>.0/24` on a bridge `ktbr<n>` whose `.1` is this host's
//!   end, as a node's address on a CNI bridge: tests and the API server reach pods directly;
//! - every pod has a network namespace `kt<n>-p<k>` with a veth into the bridge, its own
//!   loopback, and its own address `.2`–`.127` (a process binds `0.0.0.0` as in a pod);
//! - Service addresses `.128`–`.191` live in namespace `kt<n>-svc` (see [`super::proxy`]);
//! - hosts "outside the cluster" (the smtp-sink a send connector relays to) live in
//!   namespace `kt<n>-ext` at `.192`–`.250`.
//!
//! Nothing routes out of the pod network (no default route in any namespace), and no
//! process ever connects to an address outside 127.0.0.0/8 or these namespaces.
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

const SLOTS_DIR: &str = "/run/kube-transport-e2e";
const PODS: std::ops::RangeInclusive<u8> = 2..=127;
const SERVICES: std::ops::RangeInclusive<u8> = 128..=191;
const OUTSIDE: std::ops::RangeInclusive<u8> = 192..=250;

/// `ip <args>`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// One cluster's share of the machine's addresses.
pub struct Slot {
    pub n: u8,
    _lock: File,
}

impl Slot {
    /// The first free slot; leftovers of a run that died holding it are removed.
    pub fn acquire() -> Result<Slot> {
        std::fs::create_dir_all(SLOTS_DIR).with_context(|| format!("cannot create {SLOTS_DIR} (run as root)"))?;
        for n in 1..=250u8 {
            let file = File::create(format!("{SLOTS_DIR}/slot-{n}")).context("cannot create a slot lock file")?;
            if file.try_lock().is_ok() {
                let slot = Slot { n, _lock: file };
                slot.remove_leftovers();
                return Ok(slot);
            }
        }
        bail!("all 250 cluster slots are taken")
    }

    /// `127.77.<n>.1`: the control plane's address.
    pub fn control_plane_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 77, self.n, 1)
    }

    pub fn bridge(&self) -> String {
        format!("ktbr{}", self.n)
    }

    fn prefix(&self) -> String {
        format!("kt{}-", self.n)
    }

    /// `10.244.<n>.<host>`.
    pub fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.n, host)
    }

    fn remove_leftovers(&self) {
        for ns in namespaces().into_iter().filter(|ns| ns.starts_with(&self.prefix())) {
            let _ = ip(&["netns", "del", &ns]);
        }
        // A namespace goes (with its end of a veth) only when nothing holds it any more;
        // the host's ends are removed now, so their names are free for this run.
        let veth = format!("ktv{}x", self.n);
        for link in links().into_iter().filter(|l| l.starts_with(&veth)) {
            let _ = ip(&["link", "del", &link]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Names of the namespaces `ip netns` knows.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out).lines().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect()
}

/// Names of this host's network interfaces.
fn links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// A network namespace of the harness, by name (`/run/netns/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread inside this namespace: sockets it creates stay in it (a listener
    /// made here accepts this namespace's connections wherever it is then polled).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
        let file = File::open(self.path()).with_context(|| format!("no network namespace {}", self.name))?;
        let name = self.name.clone();
        std::thread::spawn(move || -> Result<T> {
            // SAFETY: setns on this thread only, with a valid namespace file descriptor.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("cannot enter network namespace {name}: {}", std::io::Error::last_os_error());
            }
            Ok(f()?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in network namespace {} panicked", self.name))?
    }

    /// A TCP listener on `addr` inside this namespace, for tokio.
    pub fn listen(&self, addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
        let std = self.run(move || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        Ok(tokio::net::TcpListener::from_std(std)?)
    }
}

/// The pod network of one cluster: the bridge, and address and namespace allocation.
pub struct Network {
    pub slot: Slot,
    used: Mutex<BTreeSet<u8>>,
    /// The last address given out: the next goes after it, so an address freed by a pod is
    /// not given to the next one at once (neighbours may still hold its old MAC).
    last: Mutex<u8>,
    next_veth: Mutex<u32>,
    pub services: Netns,
    pub outside: Netns,
}

/// A pod's (or Service's, or outside host's) place on the network.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub netns: Netns,
    pub ip: Ipv4Addr,
}

impl Network {
    pub fn create(slot: Slot) -> Result<Arc<Network>> {
        let bridge = slot.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", slot.address(1)), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let services = Netns { name: format!("{}svc", slot.prefix()) };
        let outside = Netns { name: format!("{}ext", slot.prefix()) };
        let net = Network {
            slot,
            used: Mutex::new(BTreeSet::new()),
            last: Mutex::new(0),
            next_veth: Mutex::new(0),
            services: services.clone(),
            outside: outside.clone(),
        };
        net.plug(&services)?;
        net.plug(&outside)?;
        Ok(Arc::new(net))
    }

    /// A new namespace `kt<n>-p<k>` for a pod, on the bridge, with the next free pod address.
    pub fn attach_pod(&self) -> Result<Attachment> {
        let host = self.take(PODS)?;
        let k = self.next_id();
        let netns = Netns { name: format!("{}p{k}", self.slot.prefix()) };
        if let Err(e) = self.plug(&netns).and_then(|_| self.add_address(&netns, host)) {
            self.release(host);
            let _ = ip(&["netns", "del", &netns.name]);
            return Err(e);
        }
        Ok(Attachment { netns, ip: self.slot.address(host) })
    }

    /// Gives a pod's address and namespace back.
    pub fn detach(&self, a: &Attachment) {
        let _ = ip(&["netns", "del", &a.netns.name]);
        if let Some(host) = a.ip.octets().get(3) {
            self.release(*host);
        }
    }

    /// A new address for a Service, in the Services' namespace.
    pub fn service_address(&self) -> Result<Ipv4Addr> {
        let host = self.take(SERVICES)?;
        self.add_address(&self.services, host)?;
        Ok(self.slot.address(host))
    }

    /// A new address for a host outside the cluster (a next hop), in the outside namespace.
    pub fn outside_address(&self) -> Result<Attachment> {
        let host = self.take(OUTSIDE)?;
        self.add_address(&self.outside, host)?;
        Ok(Attachment { netns: self.outside.clone(), ip: self.slot.address(host) })
    }

    fn next_id(&self) -> u32 {
        let mut n = self.next_veth.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    fn take(&self, range: std::ops::RangeInclusive<u8>) -> Result<u8> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let after = range.clone().filter(|h| *h > *last);
        let host = after
            .chain(range.clone())
            .find(|h| !used.contains(h))
            .with_context(|| format!("no free address in {range:?}"))?;
        used.insert(host);
        *last = host;
        Ok(host)
    }

    fn release(&self, host: u8) {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).remove(&host);
    }

    /// Creates `netns` with its loopback up and a veth into the bridge.
    fn plug(&self, netns: &Netns) -> Result<()> {
        let n = self.slot.n;
        let k = self.next_id();
        let (outer, inner) = (format!("ktv{n}x{k}"), format!("kti{n}x{k}"));
        ip(&["netns", "add", &netns.name])?;
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
        ip(&["link", "set", &inner, "netns", &netns.name])?;
        ip(&["-n", &netns.name, "link", "set", &inner, "name", "eth0"])?;
        ip(&["-n", &netns.name, "link", "set", "eth0", "up"])?;
        // Announce each address added later (gratuitous ARP), so the other pods drop a MAC
        // they remember for it.
        let _ = Command::new("ip")
            .args(["netns", "exec", &netns.name, "sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_notify=1"])
            .status();
        ip(&["link", "set", &outer, "master", &self.slot.bridge()])?;
        ip(&["link", "set", &outer, "up"])?;
        Ok(())
    }

    fn add_address(&self, netns: &Netns, host: u8) -> Result<()> {
        let address = self.slot.address(host);
        ip(&["-n", &netns.name, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        // This host may remember the MAC of an earlier holder of the address.
        let _ = ip(&["neigh", "flush", "to", &address.to_string(), "dev", &self.slot.bridge()]);
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.slot.remove_leftovers();
    }
}
