//! An authoritative DNS server (hickory-server) on 127.0.0.1 for the tests:
//! UDP and TCP on one ephemeral port, answering from in-memory zones the test
//! fills. Names inside a zone that were not added answer NXDOMAIN; names that
//! exist without records of the asked type answer NOERROR with no data.
//!
//! The server runs on its own thread and runtime, so that sync and async
//! tests can use it alike; dropping it stops it.
use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

const TTL: u32 = 60;

fn name(text: &str) -> Name {
    let mut name = Name::from_str(text).unwrap_or_else(|e| panic!("bad DNS name {text:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// One zone and its records.
pub struct Zone {
    origin: Name,
    records: Vec<Record>,
}

impl Zone {
    /// A zone with its SOA and NS records (`ns.<origin>`).
    pub fn new(origin: &str) -> Self {
        let origin = name(origin);
        let ns = name(&format!("ns.{origin}"));
        let soa = SOA::new(ns.clone(), name(&format!("hostmaster.{origin}")), 1, 3600, 600, 86400, TTL);
        let records = vec![
            Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
            Record::from_rdata(origin.clone(), TTL, RData::NS(NS(ns))),
        ];
        Zone { origin, records }
    }

    pub fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        self.records.push(Record::from_rdata(name(domain), TTL, RData::MX(MX::new(preference, name(exchange)))));
        self
    }

    /// RFC 7505: `MX 0 .`
    pub fn null_mx(mut self, domain: &str) -> Self {
        self.records.push(Record::from_rdata(name(domain), TTL, RData::MX(MX::new(0, Name::root()))));
        self
    }

    pub fn a(mut self, host: &str, ip: Ipv4Addr) -> Self {
        self.records.push(Record::from_rdata(name(host), TTL, RData::A(A(ip))));
        self
    }

    /// A name that exists with a TXT record only (no MX, no address).
    pub fn txt(mut self, host: &str, text: &str) -> Self {
        self.records.push(Record::from_rdata(name(host), TTL, RData::TXT(TXT::new(vec![text.to_string()]))));
        self
    }

    pub fn aaaa(mut self, host: &str, ip: Ipv6Addr) -> Self {
        self.records.push(Record::from_rdata(name(host), TTL, RData::AAAA(AAAA(ip))));
        self
    }
}

/// A running DNS server; `addr` is its UDP and TCP address.
pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds UDP on an ephemeral port, then TCP on the same port (retrying when
/// that TCP port happens to be taken).
async fn bind_pair() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS UDP socket");
        let addr = udp.local_addr().expect("UDP address");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

impl DnsServer {
    pub fn start(zones: Vec<Zone>) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("DNS server runtime");
            runtime.block_on(async move {
                let mut catalog = Catalog::new();
                for zone in zones {
                    let mut authority = InMemoryAuthority::empty(zone.origin.clone(), ZoneType::Primary, false);
                    for record in zone.records {
                        assert!(authority.upsert_mut(record, 1), "record outside zone {}", zone.origin);
                    }
                    catalog.upsert(LowerName::new(&zone.origin), vec![Arc::new(authority)]);
                }
                let (udp, tcp) = bind_pair().await;
                let addr = udp.local_addr().expect("UDP address");
                let mut server = ServerFuture::new(catalog);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(10));
                ready_tx.send(addr).expect("report DNS address");
                let _ = stop_rx.await;
                let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown_gracefully()).await;
            });
        });
        let addr = ready_rx.recv_timeout(Duration::from_secs(10)).expect("DNS server did not start");
        DnsServer { addr, stop: Some(stop_tx), thread: Some(thread) }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
