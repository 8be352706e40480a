//! Many destinations: N messages to D domains routed by MX (dnsmasq answers
//! on loopback), a tenth of the domains dead: half of those point at a tarpit
//! that accepts connections and never speaks (a hung server: the connection
//! waits for the greeting until connectionTimeout), half at an address where
//! nothing listens (refused). Measured twice in one run, every domain alive
//! and with the dead ones, on the same build: the live domains' delivery
//! rate, the DNS queries asked (answers are cached by their TTL), and the
//! server's CPU once only the dead queues are left (they wait on timers).
use crate::load;
use crate::procs;
use crate::transport::Transport;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::sink::CountingSink;
use transport::config::{AddressSpace, DnsSettings, SendConnector, TransportFile};

/// The answers' TTL: longer than a run, so a domain is asked for once.
const TTL_SECS: u32 = 300;
/// Time the dead queues are watched once the live mail is delivered.
const IDLE_WATCH: Duration = Duration::from_secs(10);
/// Wait before that: the live queues close their last connections.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Destinations {
    pub messages: u64,
    pub domains: u64,
    pub dead_domains: u64,
    pub size: usize,
    /// Every domain alive: all messages delivered, first message sent to last received.
    pub alive_secs: f64,
    pub alive_dns_queries: u64,
    /// A tenth dead: the live domains' messages delivered.
    pub live_messages: u64,
    pub with_dead_secs: f64,
    pub with_dead_dns_queries: u64,
    /// CPU seconds per second of the server while only dead queues were left.
    pub idle_cpu: f64,
}

impl Destinations {
    pub fn alive_rate(&self) -> f64 {
        self.messages as f64 / self.alive_secs
    }

    pub fn with_dead_rate(&self) -> f64 {
        self.live_messages as f64 / self.with_dead_secs
    }
}

/// Domain `i` of the run (`d0000.bench.test` ...).
fn domain(i: u64) -> String {
    format!("d{i:04}.bench.test")
}

/// Every tenth domain is dead when `dead` is set: even tenths hang, odd ones refuse.
fn fate(i: u64, dead: bool) -> Fate {
    match (dead, i % 10, (i / 10) % 2) {
        (true, 0, 0) => Fate::Tarpit,
        (true, 0, _) => Fate::Refused,
        _ => Fate::Alive,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Alive,
    Tarpit,
    Refused,
}

/// dnsmasq serving an MX and an A record per domain, logging every query.
struct Dns {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Dns {
    fn start(dir: &Path, domains: u64, dead: bool, hosts: [std::net::Ipv4Addr; 3]) -> Result<Dns> {
        let addr = testkit::port::free_addr();
        let log = dir.join("dnsmasq.log");
        let mut conf = format!(
            // Authoritative for bench.test, as a domain's own servers are: a
            // negative answer (no AAAA) carries the SOA, so resolvers cache it too.
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             auth-server=ns.bench.test,127.0.0.1\nauth-zone=bench.test\nauth-ttl={TTL_SECS}\nlocal-ttl={TTL_SECS}\n\
             log-queries\nlog-facility={log}\nuser=root\n",
            port = addr.port(),
            log = log.display()
        );
        for i in 0..domains {
            let host = match fate(i, dead) {
                Fate::Alive => hosts[0],
                Fate::Tarpit => hosts[1],
                Fate::Refused => hosts[2],
            };
            let d = domain(i);
            conf.push_str(&format!("mx-host={d},mx.{d},10\nhost-record=mx.{d},{host}\n"));
        }
        let conf_path = dir.join("dnsmasq.conf");
        std::fs::write(&conf_path, conf)?;
        let bin = testkit::peer::find_tool("dnsmasq", "dnsmasq-base")
            .context("dnsmasq is needed for the many-destinations run (make prepare)")?;
        let child = Command::new(bin)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf_path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start dnsmasq")?;
        let mut dns = Dns { child, addr, log };
        // dnsmasq answers over TCP too: up once it accepts a connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = dns.child.try_wait() {
                bail!("dnsmasq exited ({status})");
            }
            if Instant::now() > deadline {
                bail!("dnsmasq does not listen on {addr} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(dns)
    }

    /// Queries answered so far (one `query[TYPE]` or, authoritative, `auth[TYPE]` line each).
    fn queries(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .map_or(0, |l| l.lines().filter(|l| l.contains(": query[") || l.contains(": auth[")).count() as u64)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accepts connections and never answers (each is held until the peer gives up).
struct Tarpit {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tarpit {
    fn start(addr: SocketAddr) -> Result<Tarpit> {
        let listener = TcpListener::bind(addr).with_context(|| format!("tarpit on {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) if conn.set_nonblocking(true).is_ok() => held.push(conn),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                // Drop the connections the peer closed.
                held.retain_mut(|c| !matches!(c.read(&mut [0u8; 512]), Ok(0)));
            }
        });
        Ok(Tarpit { stop, thread: Some(thread) })
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The port is free again only once the thread has dropped the listener.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's configuration: one send connector routing by MX (asking `dns`) to `port`.
fn config(dir: &Path, smtp: SocketAddr, admin: SocketAddr, dns: SocketAddr, port: u16) -> TransportFile {
    let mut file = crate::transport::config_named("bench-0", dir, smtp, admin, None);
    file.send_connectors.push(SendConnector {
        name: "Internet".into(),
        address_spaces: vec![AddressSpace { domain: "*".into(), cost: Some(1) }],
        dns_routing: true,
        port: Some(port),
        ..Default::default()
    });
    file.dns = Some(DnsSettings { nameservers: vec![dns] });
    file
}

/// One pass: the messages sent, the live ones awaited at the sink.
struct Pass {
    /// Messages for live domains (all delivered).
    live: u64,
    secs: f64,
    queries: u64,
    idle_cpu: f64,
}

fn pass(tmp: &Path, sink: &mut CountingSink, messages: u64, domains: u64, size: usize, dead: bool) -> Result<Pass> {
    let dir = tmp.join(if dead { "destinations-dead" } else { "destinations-alive" });
    std::fs::create_dir_all(&dir)?;
    let port = sink.addr.port();
    // The tarpit and the refusing address share the sink's port on other loopback addresses.
    let hosts = [std::net::Ipv4Addr::LOCALHOST, [127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
    let _tarpit = Tarpit::start(SocketAddr::from((hosts[1], port)))?;
    let dns = Dns::start(&dir, domains, dead, hosts)?;
    let (smtp, admin) = (testkit::port::free_addr(), testkit::port::free_addr());
    let mut server = Transport::with_config(&dir, smtp, admin, &config(&dir, smtp, admin, dns.addr, port))?;
    let (pid, _) = server.start()?;
    let recipients: Vec<String> = (0..messages).map(|n| format!("user{n}@{}", domain(n % domains))).collect();
    let live = (0..messages).filter(|n| fate(n % domains, dead) == Fate::Alive).count() as u64;
    let before = sink.count();
    eprintln!(
        "destinations: {messages} messages to {domains} domains by MX{}",
        if dead { ", a tenth of them dead" } else { ", all alive" }
    );
    let started = Instant::now();
    load::send_each(smtp, 20, &recipients, size)?;
    let done = sink.wait_for(before + live, Duration::from_secs(600))?;
    let secs = done.duration_since(started).as_secs_f64();
    let queries = dns.queries();
    let idle_cpu = if dead {
        // Past the live queues' last connections (kept 2 s for more work) and commits.
        std::thread::sleep(SETTLE);
        let cpu = procs::cpu_seconds(pid);
        std::thread::sleep(IDLE_WATCH);
        (procs::cpu_seconds(pid) - cpu) / IDLE_WATCH.as_secs_f64()
    } else {
        0.0
    };
    if sink.count() > before + live {
        bail!("the sink got {} messages, {live} were for live domains", sink.count() - before);
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Pass { live, secs, queries, idle_cpu })
}

pub fn run(tmp: &Path, sink: &mut CountingSink, messages: u64, domains: u64, size: usize) -> Result<Destinations> {
    let alive = pass(tmp, sink, messages, domains, size, false)?;
    let with_dead = pass(tmp, sink, messages, domains, size, true)?;
    let dead_domains = (0..domains).filter(|i| fate(*i, true) != Fate::Alive).count() as u64;
    let d = Destinations {
        messages,
        domains,
        dead_domains,
        size,
        alive_secs: alive.secs,
        alive_dns_queries: alive.queries,
        live_messages: with_dead.live,
        with_dead_secs: with_dead.secs,
        with_dead_dns_queries: with_dead.queries,
        idle_cpu: with_dead.idle_cpu,
    };
    eprintln!(
        "destinations: all alive {:.0} msg/s, with dead domains {:.0} msg/s for the live ones; DNS queries {} / {}; idle CPU {:.3}",
        d.alive_rate(),
        d.with_dead_rate(),
        d.alive_dns_queries,
        d.with_dead_dns_queries,
        d.idle_cpu
    );
    Ok(d)
}
