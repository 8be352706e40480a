//! DANE for SMTP (RFC 7672) through the whole server, with real peers on loopback:
//! - an in-test DNS server (hickory-server) serving the zone `test.`, DNSSEC-signed with
//!   a key the sender trusts (`transportConfig.dnssecTrustAnchorFile`), holding the
//!   recipient domains' MX, A and TLSA records; `plain.test` delegated unsigned (provably
//!   insecure: the signed parent denies its DS) and `bogus.test` delegated with a DS that
//!   does not match the key it is signed with (every answer from it is bogus);
//! - as MX hosts, on the port the send connector uses: transport servers on 127.0.0.3…
//!   whose receive connectors have the certificate each test wants (self-signed, expired,
//!   for another name, issued by a test CA), delivering to one sink; their Received
//!   header names the host and says whether the mail came over TLS (ESMTPS); and
//!   Postfix's smtp-sink on 127.0.0.2, without STARTTLS.
//!
//! The sender runs on a test clock; DNSSEC signatures are checked against the real time.
use crate::support::dns::{DnsServer, Zone, ZoneKey};
use crate::support::inproc::*;
use crate::support::sts::{self, *};
use crate::support::*;
use sha2::{Digest, Sha256, Sha512};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use transport::api::{QueueStatus, TlsReportDomain};
use transport::clock::ManualClock;
use transport::config::{DaneMode, TransportFile};

const CLEAR_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WAIT: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);

/// The certificate an MX host shows.
#[derive(Clone, Copy, PartialEq)]
enum Cert {
    /// From the test CA, for the host's name; the CA certificate is sent along.
    Valid,
    /// From the test CA, for the host's name, expired in 2002.
    Expired,
    /// From the test CA, for `elsewhere.invalid`.
    WrongName,
    /// Self-signed, for the host's name.
    SelfSigned,
}

/// An MX host running a transport server with STARTTLS.
struct Host {
    name: &'static str,
    ip: Ipv4Addr,
    cert: Cert,
}

/// What a host's certificate is made of, for its TLSA records.
struct Made {
    leaf: Vec<u8>,
    spki: Vec<u8>,
    ca: Vec<u8>,
    chain_pem: String,
    key_pem: String,
}

fn make(pki: &Pki, host: &Host) -> Made {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = match host.cert {
        Cert::WrongName => vec!["elsewhere.invalid".to_string()],
        _ => vec![host.name.to_string()],
    };
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    if host.cert == Cert::Expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let cert = match host.cert {
        Cert::SelfSigned => params.self_signed(&key).unwrap(),
        _ => params.signed_by(&key, &pki.ca, &pki.key).unwrap(),
    };
    let chain_pem = match host.cert {
        Cert::SelfSigned => cert.pem(),
        _ => cert.pem() + &pki.ca.pem(),
    };
    Made {
        leaf: cert.der().to_vec(),
        spki: key.public_key_der(),
        ca: pki.ca.der().to_vec(),
        chain_pem,
        key_pem: key.serialize_pem(),
    }
}

/// The sender's view of the world: keys, certificates and ports, given to the test's
/// zone builder.
struct Keys {
    /// Signs `test.`; the sender's trust anchor.
    test: ZoneKey,
    /// Signs `bogus.test` (its parent publishes the DS of another key).
    bogus: ZoneKey,
    port: u16,
    made: Vec<(&'static str, Made)>,
}

impl Keys {
    fn made(&self, host: &str) -> &Made {
        &self.made.iter().find(|(h, _)| *h == host).unwrap_or_else(|| panic!("no host {host}")).1
    }

    /// `_<port>._tcp.<host>`.
    fn tlsa_name(&self, host: &str) -> String {
        format!("_{}._tcp.{host}", self.port)
    }

    /// The signed zone `test.` with its delegations, and the two child zones.
    fn zones(&self, test: Zone, plain: Zone, bogus: Zone) -> Vec<Zone> {
        let wrong = ZoneKey::generate();
        let test = test.delegate("plain.test", None).delegate("bogus.test", Some(&wrong)).signed(&self.test);
        vec![test, plain, bogus.signed(&self.bogus)]
    }
}

struct World {
    _dir: tempfile::TempDir,
    /// The MX port (in the TLSA records' names).
    port: u16,
    /// Where the MX hosts deliver.
    mailbox: Sink,
    /// 127.0.0.2: smtp-sink without STARTTLS.
    clear: Sink,
    _hosts: Vec<InProc>,
    /// The sender's mailbox hop (local.test): DSNs and NDRs to alice arrive here.
    reports: Sink,
    _dns: DnsServer,
    _https: Option<PolicyServer>,
    sender: InProc,
}

impl World {
    /// `zones` builds the DNS from the hosts' certificates; `dane` is the sender's send
    /// connector's `dane`, when set; `sts` publishes MTA-STS policies.
    fn start(
        hosts: &[Host],
        zones: impl FnOnce(&Keys) -> Vec<Zone>,
        dane: Option<DaneMode>,
        sts: &[(&str, String)],
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let port = free_port();
        let keys = Keys {
            test: ZoneKey::generate(),
            bogus: ZoneKey::generate(),
            port,
            made: hosts.iter().map(|h| (h.name, make(&pki, h))).collect(),
        };
        let dns = DnsServer::start(zones(&keys));
        let mailbox = Sink::start();
        let clear = Sink::start_at(SocketAddr::new(CLEAR_MX.into(), port), &[]);
        let started = hosts.iter().map(|h| start_host(dir.path(), h, keys.made(h.name), port, mailbox.addr)).collect();
        let reports = Sink::start();
        let anchors = dir.path().join("anchors.txt");
        std::fs::write(&anchors, keys.test.anchor("test")).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pki.ca.pem()).unwrap();
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        let https = (!sts.is_empty()).then(|| {
            let https = PolicyServer::start(&pki, sts);
            std::fs::write(queue.join(transport::delivery::mta_sts::PORT_FLAG), https.port.to_string()).unwrap();
            https
        });
        let mut file = sender_file(dir.path(), dns.addr, port, reports.addr, &anchors, &ca);
        file.send_connectors[0].dane = dane;
        let sender = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
        World { _dir: dir, port, mailbox, clear, _hosts: started, reports, _dns: dns, _https: https, sender }
    }

    fn send(&self, to: &str, tag: &str) {
        self.sender.send("alice@local.test", &[to], tag);
    }

    fn arrived(&self, sink: &Sink, count: usize) -> Vec<SinkMessage> {
        self.sender.arrived(sink, count, WAIT)
    }

    /// The queue of `domain`, once it is in Retry with a LastError containing every one
    /// of `reasons`. A queue in Retry has ended its connection attempts.
    fn retry_with(&self, domain: &str, reasons: &[&str]) -> String {
        eventually(WAIT, &format!("the {domain} queue in Retry with {reasons:?}"), || {
            let q = self.sender.queue(domain)?;
            let error = q.last_error.unwrap_or_default();
            (q.status == QueueStatus::Retry && reasons.iter().all(|r| error.contains(r))).then_some(error)
        })
    }

    fn logged(&self, text: &str) -> usize {
        self.sender.connectivity_log().iter().filter(|l| l.contains(text)).count()
    }

    /// Today's TLS report entry of `domain` (what Get-TlsReport shows).
    fn tls_report(&self, domain: &str) -> TlsReportDomain {
        let day = self.sender.server().queue_manager().tls_reports().day(None);
        day.domains.into_iter().find(|d| d.domain == domain).unwrap_or_else(|| panic!("no TLS report entry {domain}"))
    }

    /// The message with `tag` among those the MX hosts delivered.
    fn delivered(&self, count: usize, tag: &str) -> SinkMessage {
        let got = self.arrived(&self.mailbox, count);
        let id = format!("<{tag}@test.invalid>");
        got.into_iter().find(|m| m.header("Message-ID").as_deref() == Some(&id)).unwrap_or_else(|| panic!("{tag}"))
    }
}

/// Whether `host` took the message over TLS (its Received header says ESMTPS).
fn over_tls_by(message: &SinkMessage, host: &str) -> bool {
    message.content.contains(&format!("by {host} with ESMTPS"))
}

/// A transport server taking mail for the test domains on `host.ip`, with STARTTLS and
/// the certificate made for it.
fn start_host(dir: &Path, host: &Host, made: &Made, port: u16, mailbox: SocketAddr) -> InProc {
    let bind = SocketAddr::new(host.ip.into(), port);
    start_mx_host(&dir.join(host.name), host.name, (&made.chain_pem, &made.key_pem), bind, mailbox, &["*.test"])
}

/// The sender of [`sts::sender_file`] (MX routing on `port`, the test CA trusted for
/// MTA-STS, DSNs to alice at `reports`), its DNSSEC anchored at the `test.` key.
fn sender_file(
    dir: &Path,
    dns: SocketAddr,
    port: u16,
    reports: SocketAddr,
    anchors: &Path,
    ca: &Path,
) -> TransportFile {
    let mut file = sts::sender_file(dir, free_addr(), dns, port, reports, ca);
    file.transport_config.dnssec_trust_anchor_file = Some(anchors.to_path_buf());
    file
}

/// TLSA association data: (usage, selector, matching, data).
fn ee_spki_sha256(m: &Made) -> (u8, u8, u8, Vec<u8>) {
    (3, 1, 1, Sha256::digest(&m.spki).to_vec())
}

/// `domain` MX `host` (at `ip`) with `records` at the host's TLSA name, into `zone`.
fn mx_with_tlsa(
    zone: Zone,
    keys: &Keys,
    domain: &str,
    host: &str,
    ip: Ipv4Addr,
    records: &[(u8, u8, u8, Vec<u8>)],
) -> Zone {
    let mut zone = zone.mx(domain, 10, host).a(host, ip);
    for (usage, selector, matching, data) in records {
        zone = zone.tlsa(&keys.tlsa_name(host), *usage, *selector, *matching, data);
    }
    zone
}

fn empty_children() -> (Zone, Zone) {
    (Zone::new("plain.test"), Zone::new("bogus.test"))
}

#[test]
fn dane_ee_delivers_over_tls_whatever_the_certificates_names_dates_or_issuer() {
    let hosts = [
        Host { name: "mx.selfsigned.test", ip: Ipv4Addr::new(127, 0, 0, 3), cert: Cert::SelfSigned },
        Host { name: "mx.expired.test", ip: Ipv4Addr::new(127, 0, 0, 4), cert: Cert::Expired },
        Host { name: "mx.wrongname.test", ip: Ipv4Addr::new(127, 0, 0, 5), cert: Cert::WrongName },
    ];
    let w = World::start(
        &hosts,
        |k| {
            let (plain, bogus) = empty_children();
            let m = |h| k.made(h);
            let mut test = Zone::new("test");
            // Each selector and matching type once: the key's SHA-256, the certificate's
            // SHA-256, the key's SHA-512.
            test = mx_with_tlsa(
                test,
                k,
                "selfsigned.test",
                hosts[0].name,
                hosts[0].ip,
                &[ee_spki_sha256(m(hosts[0].name))],
            );
            let cert_sha256 = (3, 0, 1, Sha256::digest(&m(hosts[1].name).leaf).to_vec());
            test = mx_with_tlsa(test, k, "expired.test", hosts[1].name, hosts[1].ip, &[cert_sha256]);
            let spki_sha512 = (3, 1, 2, Sha512::digest(&m(hosts[2].name).spki).to_vec());
            test = mx_with_tlsa(test, k, "wrongname.test", hosts[2].name, hosts[2].ip, &[spki_sha512]);
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    let cases =
        [("selfsigned.test", hosts[0].name), ("expired.test", hosts[1].name), ("wrongname.test", hosts[2].name)];
    for (i, (domain, host)) in cases.into_iter().enumerate() {
        w.send(&format!("bob@{domain}"), domain);
        let got = w.delivered(i + 1, domain);
        assert!(over_tls_by(&got, host), "{domain}: over TLS by {host}: {}", got.content);
        let report = w.tls_report(domain);
        assert_eq!(report.policy_type, "tlsa", "{domain}");
        assert_eq!((report.successful_session_count, report.failed_session_count), (1, 0), "{domain}");
    }
    assert!(w.clear.messages().is_empty());
    assert_eq!(w.logged("DANE applies to mx.selfsigned.test"), 1);
    let report = w.tls_report("selfsigned.test");
    assert_eq!(report.mx_host, vec!["mx.selfsigned.test".to_string()]);
    assert!(report.policy_string[0].starts_with("3 1 1 "), "the TLSA record: {:?}", report.policy_string);
}

#[test]
fn a_certificate_matching_no_tlsa_record_is_deferred_never_sent_and_expires_to_an_ndr() {
    let hosts = [Host { name: "mx.mismatch.test", ip: Ipv4Addr::new(127, 0, 0, 3), cert: Cert::Valid }];
    let w = World::start(
        &hosts,
        |k| {
            let (plain, bogus) = empty_children();
            // The digest of another key: the host's certificate (valid for PKIX) does not match.
            let other = (3, 1, 1, Sha256::digest(b"another key").to_vec());
            let test = mx_with_tlsa(Zone::new("test"), k, "mismatch.test", hosts[0].name, hosts[0].ip, &[other]);
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@mismatch.test", "mismatch");
    let error = w.retry_with(
        "mismatch.test",
        &["451 4.7.5 DANE: mx.mismatch.test publishes TLSA records", "matches no TLSA record"],
    );
    assert!(error.contains(&format!("_{}._tcp.mx.mismatch.test", w.port)), "{error}");
    assert_eq!(w.logged("(Retry : 451 4.7.5 DANE: mx.mismatch.test"), 1, "the connectivity log says why");
    assert!(w.mailbox.messages().is_empty() && w.clear.messages().is_empty(), "nothing sent anywhere");

    let report = w.tls_report("mismatch.test");
    assert_eq!(
        (report.policy_type.as_str(), report.successful_session_count, report.failed_session_count),
        ("tlsa", 0, 1)
    );
    assert_eq!(report.failure_details[0].result_type, "tlsa-invalid");
    assert_eq!(report.failure_details[0].receiving_mx_hostname, "mx.mismatch.test");

    // Four hours on: a delay DSN with the 4.7.5 status; two days on: the NDR says why.
    let stages = [
        (Duration::from_secs(4 * 3600), "Action: delayed", "Status: 4.7.5"),
        (2 * DAY, "Action: failed", "DANE: mx.mismatch.test"),
    ];
    for (after, action, says) in stages {
        w.sender.set_time(t0() + after);
        let dsn = eventually(WAIT, action, || w.reports.messages().into_iter().find(|m| m.content.contains(action)));
        assert!(dsn.content.contains(says), "{action}: {}", dsn.content);
    }
    assert!(w.mailbox.messages().is_empty() && w.clear.messages().is_empty());
}

#[test]
fn a_host_without_starttls_under_dane_is_deferred_never_sent_in_clear() {
    let w = World::start(
        &[],
        |k| {
            let (plain, bogus) = empty_children();
            let record = (3, 1, 1, Sha256::digest(b"any key").to_vec());
            let test = mx_with_tlsa(Zone::new("test"), k, "nostarttls.test", "mx.nostarttls.test", CLEAR_MX, &[record]);
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@nostarttls.test", "clear");
    w.retry_with("nostarttls.test", &["451 4.7.5 DANE: mx.nostarttls.test", "does not offer STARTTLS"]);
    assert!(w.clear.messages().is_empty(), "never in clear");
    let report = w.tls_report("nostarttls.test");
    assert_eq!(report.failure_details[0].result_type, "starttls-not-supported");
}

#[test]
fn dane_ta_delivers_through_a_chain_to_the_anchor_for_the_mx_name_only() {
    let hosts = [
        Host { name: "mx.ta.test", ip: Ipv4Addr::new(127, 0, 0, 3), cert: Cert::Valid },
        Host { name: "mx.taname.test", ip: Ipv4Addr::new(127, 0, 0, 4), cert: Cert::WrongName },
    ];
    let w = World::start(
        &hosts,
        |k| {
            let (plain, bogus) = empty_children();
            let anchor = |h| (2, 0, 1, Sha256::digest(&k.made(h).ca).to_vec());
            let mut test =
                mx_with_tlsa(Zone::new("test"), k, "ta.test", hosts[0].name, hosts[0].ip, &[anchor(hosts[0].name)]);
            test = mx_with_tlsa(test, k, "taname.test", hosts[1].name, hosts[1].ip, &[anchor(hosts[1].name)]);
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@ta.test", "ta");
    let got = w.delivered(1, "ta");
    assert!(over_tls_by(&got, "mx.ta.test"), "{}", got.content);

    w.send("bob@taname.test", "taname");
    let error = w.retry_with("taname.test", &["451 4.7.5 DANE: mx.taname.test", "DANE-TA"]);
    assert!(error.contains("not valid for name"), "{error}");
    assert_eq!(w.mailbox.messages().len(), 1, "only ta.test's message");
    assert_eq!(w.tls_report("taname.test").failure_details[0].result_type, "certificate-host-mismatch");
}

#[test]
fn an_unsigned_zone_gets_no_dane_and_its_tlsa_records_are_not_applied() {
    let w = World::start(
        &[],
        |k| {
            let bogus = Zone::new("bogus.test");
            // plain.test is unsigned: its TLSA record (matching nothing) proves nothing.
            let record = (3, 1, 1, Sha256::digest(b"any key").to_vec());
            let plain = mx_with_tlsa(Zone::new("plain.test"), k, "plain.test", "mx.plain.test", CLEAR_MX, &[record]);
            k.zones(Zone::new("test"), plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@plain.test", "plain");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<plain@test.invalid>"), "opportunistic, as without DANE");
    assert_eq!(w.logged("DANE applies"), 0);
    let day = w.sender.server().queue_manager().tls_reports().day(None);
    assert!(day.domains.is_empty(), "no policy, nothing counted: {day:?}");
}

#[test]
fn bogus_signatures_defer_the_domain_or_the_mx_host() {
    let hosts = [Host { name: "mx.bogus.test", ip: Ipv4Addr::new(127, 0, 0, 3), cert: Cert::SelfSigned }];
    let w = World::start(
        &hosts,
        |k| {
            let plain = Zone::new("plain.test");
            let record = ee_spki_sha256(k.made(hosts[0].name));
            // bogus.test's own MX, and a signed domain whose MX host lives in bogus.test.
            let bogus = mx_with_tlsa(Zone::new("bogus.test"), k, "bogus.test", hosts[0].name, hosts[0].ip, &[record]);
            let test = Zone::new("test").mx("viabogus.test", 10, hosts[0].name);
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@bogus.test", "bogus");
    let error = w.retry_with("bogus.test", &["451 4.7.5 DANE: the MX records of bogus.test cannot be trusted"]);
    assert!(error.contains("Bogus") || error.contains("bogus"), "{error}");

    w.send("bob@viabogus.test", "viabogus");
    w.retry_with("viabogus.test", &["451 4.7.5 DANE: the DNSSEC lookups for mx.bogus.test failed"]);
    assert!(w.mailbox.messages().is_empty() && w.clear.messages().is_empty(), "nothing sent");
    let report = w.tls_report("viabogus.test");
    assert_eq!((report.policy_type.as_str(), report.failed_session_count), ("tlsa", 1));
    assert_eq!(report.failure_details[0].result_type, "dnssec-invalid");
}

/// hickory 0.25 calls an answer of a signed zone whose RRSIGs an attacker stripped
/// unsigned rather than bogus. TLSA records that come unsigned for a host whose addresses
/// are signed are therefore taken for stripped: the host is not used, never in clear.
#[test]
fn tlsa_records_stripped_of_their_signatures_defer_the_host_never_clear_text() {
    let w = World::start(
        &[],
        |k| {
            let (plain, bogus) = empty_children();
            let record = (3, 1, 1, Sha256::digest(b"any key").to_vec());
            let test = mx_with_tlsa(Zone::new("test"), k, "stripped.test", "mx.stripped.test", CLEAR_MX, &[record])
                .strip_signatures(&k.tlsa_name("mx.stripped.test"));
            k.zones(test, plain, bogus)
        },
        None,
        &[],
    );
    w.send("bob@stripped.test", "stripped");
    let error = w.retry_with("stripped.test", &["451 4.7.5 DANE: the DNSSEC lookups for mx.stripped.test failed"]);
    assert!(error.contains("without valid signatures"), "{error}");
    assert!(w.clear.messages().is_empty(), "never in clear");
    let report = w.tls_report("stripped.test");
    assert_eq!((report.policy_type.as_str(), report.failed_session_count), ("tlsa", 1));
    assert_eq!(report.failure_details[0].result_type, "dnssec-invalid");
}

#[test]
fn where_dane_and_mta_sts_are_both_published_dane_decides() {
    // MTA-STS enforce would refuse this self-signed certificate; its TLSA record matches.
    let hosts = [Host { name: "mx.both.test", ip: Ipv4Addr::new(127, 0, 0, 3), cert: Cert::SelfSigned }];
    let w = World::start(
        &hosts,
        |k| {
            let (plain, bogus) = empty_children();
            let record = ee_spki_sha256(k.made(hosts[0].name));
            let test = mx_with_tlsa(Zone::new("test"), k, "both.test", hosts[0].name, hosts[0].ip, &[record])
                .txt("_mta-sts.both.test", "v=STSv1; id=1;")
                .a("mta-sts.both.test", Ipv4Addr::LOCALHOST);
            k.zones(test, plain, bogus)
        },
        None,
        &[("both.test", policy("enforce", &["mx.both.test"], 86_400))],
    );
    w.send("bob@both.test", "both");
    let got = w.delivered(1, "both");
    assert!(over_tls_by(&got, "mx.both.test"), "{}", got.content);
    assert_eq!(w.logged("MTA-STS policy of both.test (enforce)"), 1, "the policy was found and applied");
    let report = w.tls_report("both.test");
    assert_eq!((report.policy_type.as_str(), report.successful_session_count), ("tlsa", 1));
}

#[test]
fn without_dnssec_from_the_nameservers_dane_is_off_and_the_log_says_so() {
    // Nothing signed: the anchor's zone has no DNSKEY, so nothing can be proven secure or
    // insecure (a resolver that drops DNSSEC records looks the same).
    let w = World::start(
        &[],
        |k| {
            let record = (3, 1, 1, Sha256::digest(b"any key").to_vec());
            vec![mx_with_tlsa(Zone::new("test"), k, "unsigned.test", "mx.unsigned.test", CLEAR_MX, &[record])]
        },
        None,
        &[],
    );
    w.send("bob@unsigned.test", "unsigned");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<unsigned@test.invalid>"), "delivered as without DANE");
    assert_eq!(
        w.logged("DANE is off: DNSSEC cannot be validated with the configured nameservers and trust anchors"),
        1
    );
    assert_eq!(w.logged("DANE applies"), 0);
}

#[test]
fn dane_disabled_leaves_the_connector_as_it_was() {
    let w = World::start(
        &[],
        |k| {
            let (plain, bogus) = empty_children();
            let record = (3, 1, 1, Sha256::digest(b"any key").to_vec());
            let test = mx_with_tlsa(Zone::new("test"), k, "off.test", "mx.off.test", CLEAR_MX, &[record]);
            k.zones(test, plain, bogus)
        },
        Some(DaneMode::Disabled),
        &[],
    );
    w.send("bob@off.test", "off");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<off@test.invalid>"));
    assert_eq!(w.logged("DANE applies"), 0);
}

#[test]
fn an_unreadable_trust_anchor_file_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("missing-anchors.txt");
    let file = sender_file(
        dir.path(),
        "127.0.0.1:53".parse().unwrap(),
        25,
        "127.0.0.1:25".parse().unwrap(),
        &anchors,
        &anchors,
    );
    let path = dir.path().join("sender.yaml");
    write_config_file(&path, &file);
    let errors = transport::config::TransportFile::load(&path).expect_err("the anchors file is missing");
    assert!(errors.to_string().contains("transportConfig.dnssecTrustAnchorFile"), "{errors}");

    // Readable but not DNSKEY records: the server does not start with it.
    std::fs::write(&anchors, "this is not a zone file\n").unwrap();
    let file = transport::config::TransportFile::load(&path).expect("readable");
    let refused = transport::delivery::dane::Dane::new(file.dns.as_ref(), Some(&anchors)).err().expect("refused");
    assert!(refused.to_string().contains("DNSSEC trust anchors"), "{refused}");
}
