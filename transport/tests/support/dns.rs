//! An authoritative DNS server (hickory-server) on 127.0.0.1 for the tests:
//! UDP and TCP on one ephemeral port, answering from in-memory zones the test
//! fills. Names inside a zone that were not added answer NXDOMAIN; names that
//! exist without records of the asked type answer NOERROR with no data.
//!
//! The server runs on its own thread and runtime, so that sync and async
//! tests can use it alike; dropping it stops it.
//!
//! DNSSEC (the DANE tests): a zone made [`Zone::signed`] with a [`ZoneKey`] is signed
//! (RRSIGs, NSEC denials) when the server starts; [`ZoneKey::anchor`] is the trust anchors
//! file of a validating resolver. A parent delegates with [`Zone::delegate`] (NS, and DS
//! for a signed child), and DS queries for a zone's apex are answered by its parent, as
//! on the Internet, so an unsigned child is provably insecure.
use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSSECRData, DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, SigSigner, SigningKey};
use hickory_proto::rr::rdata::tlsa::TLSA;
use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::authority::{AuthorityObject, Catalog, ZoneType};
use hickory_server::dnssec::NxProofKind;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use rustls_pki_types::PrivatePkcs8KeyDer;
use std::collections::HashMap;
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
    /// Signs the zone when the server starts.
    key: Option<ZoneKey>,
    /// Records added after the zone is signed: served without RRSIGs, as by an attacker
    /// who strips them.
    unsigned: Vec<Record>,
}

/// A zone's signing key (ECDSA P-256, one key as KSK and ZSK).
#[derive(Clone)]
pub struct ZoneKey {
    pkcs8: Vec<u8>,
}

impl ZoneKey {
    pub fn generate() -> ZoneKey {
        let der = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("generate a zone key");
        ZoneKey { pkcs8: der.secret_pkcs8_der().to_vec() }
    }

    fn signing_key(&self) -> EcdsaSigningKey {
        EcdsaSigningKey::from_pkcs8(&PrivatePkcs8KeyDer::from(self.pkcs8.clone()), Algorithm::ECDSAP256SHA256)
            .expect("read the zone key")
    }

    fn dnskey(&self) -> DNSKEY {
        DNSKEY::from_key(&self.signing_key().to_public_key().expect("public key"))
    }

    /// A trust anchors file naming this key as the key of `origin` (zone-file form).
    pub fn anchor(&self, origin: &str) -> String {
        format!("{} 3600 IN DNSKEY {}\n", name(origin), self.dnskey())
    }

    /// The DS record of `child` signed with this key, as its parent publishes it.
    fn ds(&self, child: &Name) -> DS {
        let public = self.signing_key().to_public_key().expect("public key");
        DS::from_key(&public, child, DigestType::SHA256).expect("DS digest")
    }
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
        Zone { origin, records, key: None, unsigned: Vec::new() }
    }

    /// Signed with `key` when the server starts.
    pub fn signed(mut self, key: &ZoneKey) -> Self {
        self.key = Some(key.clone());
        self
    }

    /// Delegates `child` (NS `ns.<child>`), with the DS of `key` when the child is signed.
    pub fn delegate(mut self, child: &str, key: Option<&ZoneKey>) -> Self {
        let child = name(child);
        let ns = name(&format!("ns.{child}"));
        self.records.push(Record::from_rdata(child.clone(), TTL, RData::NS(NS(ns))));
        if let Some(key) = key {
            let ds = RData::DNSSEC(DNSSECRData::DS(key.ds(&child)));
            self.records.push(Record::from_rdata(child, TTL, ds));
        }
        self
    }

    /// A TLSA record (RFC 6698) at `owner` (e.g. `_25._tcp.mx.example.test`).
    pub fn tlsa(mut self, owner: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Self {
        let tlsa = TLSA::new(usage.into(), selector.into(), matching.into(), data.to_vec());
        self.records.push(Record::from_rdata(name(owner), TTL, RData::TLSA(tlsa)));
        self
    }

    /// Moves the records at `owner` out of the signing: in a signed zone they are served
    /// without their RRSIGs (what an attacker on the path who strips them leaves).
    pub fn strip_signatures(mut self, owner: &str) -> Self {
        let owner = name(owner);
        let (stripped, kept) = self.records.into_iter().partition(|r: &Record| *r.name() == owner);
        self.records = kept;
        self.unsigned = stripped;
        self
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
                let authorities: Vec<(LowerName, Arc<dyn AuthorityObject>)> =
                    zones.into_iter().map(|zone| (LowerName::new(&zone.origin), authority(zone))).collect();
                let catalog = |except: Option<&LowerName>| {
                    let mut catalog = Catalog::new();
                    for (origin, authority) in authorities.iter().filter(|(o, _)| Some(o) != except) {
                        catalog.upsert(origin.clone(), vec![authority.clone()]);
                    }
                    catalog
                };
                let parents = authorities
                    .iter()
                    .filter(|(origin, _)| !origin.is_root())
                    .map(|(origin, _)| (origin.clone(), catalog(Some(origin))))
                    .collect();
                let handler = Zones { all: catalog(None), parents };
                let (udp, tcp) = bind_pair().await;
                let addr = udp.local_addr().expect("UDP address");
                let mut server = ServerFuture::new(handler);
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

/// An authority for `zone`, signed when it has a key.
fn authority(zone: Zone) -> Arc<dyn AuthorityObject> {
    let proof = zone.key.as_ref().map(|_| NxProofKind::Nsec);
    let mut authority = InMemoryAuthority::empty(zone.origin.clone(), ZoneType::Primary, false, proof);
    for record in zone.records {
        assert!(authority.upsert_mut(record, 1), "record outside zone {}", zone.origin);
    }
    if let Some(key) = &zone.key {
        let signer = SigSigner::dnssec(
            key.dnskey(),
            Box::new(key.signing_key()),
            zone.origin.clone(),
            Duration::from_secs(86_400),
        );
        authority.add_zone_signing_key_mut(signer).expect("add the zone key");
        authority.secure_zone_mut().expect("sign the zone");
    }
    for record in zone.unsigned {
        assert!(authority.upsert_mut(record, 1), "record outside zone {}", zone.origin);
    }
    Arc::new(authority)
}

/// The zones: a DS query for a zone's apex goes to the zone above it (the DS record
/// lives in the parent, RFC 4035 §3.1.4.1), everything else to the closest zone.
struct Zones {
    all: Catalog,
    /// Zone apex → every zone but that one.
    parents: HashMap<LowerName, Catalog>,
}

impl RequestHandler for Zones {
    fn handle_request<'a, 'b, 'c, R>(
        &'a self,
        request: &'b Request,
        response_handle: R,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ResponseInfo> + Send + 'c>>
    where
        R: ResponseHandler + 'c,
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        let parent = request.request_info().ok().and_then(|info| {
            let ds = info.query.query_type() == RecordType::DS;
            ds.then(|| self.parents.get(info.query.name())).flatten()
        });
        let catalog = parent.unwrap_or(&self.all);
        catalog.handle_request(request, response_handle)
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
