//! MTA-STS (RFC 8461) through the whole server, with real peers on loopback:
//! - an in-test DNS server (hickory-server): MX, A and the `_mta-sts` TXT records;
//! - an in-test HTTPS server (tokio + rustls) publishing the policies, its certificate
//!   from a test CA (rcgen) that the send connector trusts (`tlsCertificateAuthorities`);
//! - as MX hosts, on the port the send connector uses: `mx0` (127.0.0.2) Postfix's
//!   smtp-sink, without STARTTLS, and `mx1` (127.0.0.3) a second transport server whose
//!   receive connector has a certificate from the test CA; it delivers to a sink, and
//!   its Received header says whether the mail came over TLS.
//!
//! `mx0` has the better preference: wherever a policy does not apply, mail goes there in
//! clear. The sender runs on a test clock (max_age and message expiry in seconds) and
//! fetches policies from the HTTPS server's port through the `test-hooks` port file.

use crate::support::dns::{DnsServer, Zone};
use crate::support::inproc::*;
use crate::support::sts::*;
use crate::support::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use transport::api::QueueStatus;
use transport::clock::ManualClock;
use transport::config::MtaStsMode;

const CLEAR_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const TLS_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);

/// A recipient domain of the test's DNS: its MX hosts and its `_mta-sts` record's id.
struct Domain {
    name: &'static str,
    mx: &'static [&'static str],
    sts_id: Option<&'static str>,
}

const SECURE: Domain = Domain { name: "secure.test", mx: &["mx0.secure.test", "mx1.secure.test"], sts_id: Some("1") };

/// The zone: `mx0` and `mx1` (preferences 5 and 10, in the order given), each domain's
/// TXT record and policy host (127.0.0.1, where the HTTPS server listens).
fn zone(domains: &[&Domain]) -> Zone {
    let mut zone = Zone::new("test").a("mx0.secure.test", CLEAR_MX).a("mx1.secure.test", TLS_MX);
    for d in domains {
        for (i, host) in d.mx.iter().enumerate() {
            zone = zone.mx(d.name, 5 * (i as u16 + 1), host);
        }
        if let Some(id) = d.sts_id {
            zone = zone
                .txt(&format!("_mta-sts.{}", d.name), &format!("v=STSv1; id={id};"))
                .a(&format!("mta-sts.{}", d.name), Ipv4Addr::LOCALHOST);
        }
    }
    zone
}

/// Everything a test needs, started.
struct World {
    dir: tempfile::TempDir,
    /// Where the TLS MX host delivers what it takes.
    mailbox: Sink,
    /// mx0: no STARTTLS.
    clear: Sink,
    /// mx1.
    _hop: InProc,
    /// The sender's mailbox hop (local.test): reports to alice arrive here.
    reports: Sink,
    https: PolicyServer,
    dns: DnsServer,
    sender: InProc,
    mx_port: u16,
    ca: PathBuf,
}

struct Setup<'a> {
    domains: Vec<&'a Domain>,
    policies: Vec<(&'a str, String)>,
    /// The name on mx1's certificate.
    mx1_certificate: &'a str,
    /// The sender's send connector's `mtaSts`, when set.
    mta_sts: Option<MtaStsMode>,
    /// The policy host's certificate comes from a CA the sender does not trust.
    untrusted_policy_host: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            domains: vec![&SECURE],
            policies: vec![("secure.test", policy("enforce", &["mx1.secure.test"], 86_400))],
            mx1_certificate: "mx1.secure.test",
            mta_sts: None,
            untrusted_policy_host: false,
        }
    }
}

impl World {
    fn start(setup: Setup) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pki.ca.pem()).unwrap();
        let mx_port = free_port();
        let mailbox = Sink::start();
        let clear = Sink::start_at(SocketAddr::new(CLEAR_MX.into(), mx_port), &[]);
        // mx1: the test domains on 127.0.0.3 with STARTTLS, its certificate for the name the setup asks.
        let bind = SocketAddr::new(TLS_MX.into(), mx_port);
        let domains = ["secure.test", "testing.test", "plain.test"];
        let hop = start_tls_hop(dir.path(), &pki, setup.mx1_certificate, bind, mailbox.addr, &domains);
        let reports = Sink::start();
        let https = if setup.untrusted_policy_host {
            PolicyServer::start(&Pki::new(), &setup.policies)
        } else {
            PolicyServer::start(&pki, &setup.policies)
        };
        let dns = DnsServer::start(vec![zone(&setup.domains)]);
        // The test hook: policies are fetched from the HTTPS server's port, not 443.
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        std::fs::write(queue.join(transport::delivery::mta_sts::PORT_FLAG), https.port.to_string()).unwrap();
        let mut file = sender_file(dir.path(), free_addr(), dns.addr, mx_port, reports.addr, &ca);
        file.send_connectors[0].mta_sts = setup.mta_sts;
        let sender = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
        World { dir, mailbox, clear, _hop: hop, reports, https, dns, sender, mx_port, ca }
    }

    fn send(&self, to: &str, tag: &str) {
        self.sender.send("alice@local.test", &[to], tag);
    }

    fn arrived(&self, sink: &Sink, count: usize) -> Vec<SinkMessage> {
        self.sender.arrived(sink, count, WAIT)
    }

    /// Waits until every outbound session has ended (a session takes whatever is queued
    /// while it is open, and ends 2 s after its queue runs dry): the next message then
    /// gets a new connection, under the policy in force then.
    fn settle(&self) {
        eventually(WAIT, "the outbound sessions ended", || {
            let log = self.sender.connectivity_log();
            let count = |direction: &str| log.iter().filter(|l| l.split(',').nth(4) == Some(direction)).count();
            (count("+") == count("-")).then_some(())
        });
    }

    /// The connectivity log lines that contain `text`.
    fn logged(&self, text: &str) -> Vec<String> {
        self.sender.connectivity_log().into_iter().filter(|l| l.contains(text)).collect()
    }

    /// The queue of `domain`, once it is in Retry with a LastError containing `reason`.
    fn retry_with(&self, domain: &str, reason: &str) -> transport::api::QueueInfo {
        eventually(WAIT, &format!("the {domain} queue in Retry with {reason:?}"), || {
            let q = self.sender.queue(domain)?;
            let error = q.last_error.as_deref().unwrap_or_default();
            (q.status == QueueStatus::Retry && error.contains(reason)).then_some(q)
        })
    }
}

/// Mail that came to mx1 over TLS (its Received header says ESMTPS).
fn over_tls(message: &SinkMessage) -> bool {
    message.content.contains("by mx1.secure.test with ESMTPS")
}

#[test]
fn enforce_delivers_over_tls_only_to_the_mx_hosts_the_policy_names() {
    let w = World::start(Setup::default());
    w.send("bob@secure.test", "enforced");
    let got = w.arrived(&w.mailbox, 1);
    assert!(over_tls(&got[0]), "{}", got[0].content);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<enforced@test.invalid>"));
    assert!(w.clear.messages().is_empty(), "mx0 is preferred but not in the policy: never used");
    assert_eq!(w.https.requests(), 1);
    assert!(!w.logged("MTA-STS policy of secure.test (enforce): mx mx1.secure.test").is_empty());
    assert!(!w.logged("MTA-STS: mx0.secure.test not used").is_empty());
}

#[test]
fn enforce_with_no_mx_host_named_waits_in_retry_and_its_reports_say_why() {
    let w = World::start(Setup {
        policies: vec![("secure.test", policy("enforce", &["mx9.secure.test"], 86_400))],
        ..Setup::default()
    });
    w.send("bob@secure.test", "unnamed");
    let q = w.retry_with("secure.test", "451 4.7.5 MTA-STS: no MX host of secure.test is named by its policy");
    assert!(q.last_error.as_deref().unwrap().contains("mx0.secure.test, mx1.secure.test not used"), "{q:?}");
    assert!(!w.logged("(Retry : 451 4.7.5 MTA-STS: no MX host").is_empty(), "the connectivity log says why");
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.clear.messages().is_empty() && w.mailbox.messages().is_empty(), "nothing sent anywhere");

    // Four hours on: the delay DSN carries the policy's status; two days on: the NDR says why.
    w.sender.set_time(t0() + Duration::from_secs(4 * 3600));
    let delay = w.arrived(&w.reports, 1);
    assert!(
        delay[0].content.contains("Action: delayed") && delay[0].content.contains("Status: 4.7.5"),
        "{}",
        delay[0].content
    );
    w.sender.set_time(t0() + 2 * DAY);
    let reports = w.arrived(&w.reports, 2);
    let ndr = reports.iter().find(|m| m.content.contains("Action: failed")).expect("an NDR");
    assert!(ndr.content.contains("Status: 4.4.7"), "{}", ndr.content);
    assert!(ndr.content.contains("QUEUE.Expired") && ndr.content.contains("MTA-STS: no MX host"), "{}", ndr.content);
    assert!(w.clear.messages().is_empty() && w.mailbox.messages().is_empty());
}

#[test]
fn enforce_never_sends_in_clear_to_a_host_without_starttls() {
    let w = World::start(Setup {
        policies: vec![("secure.test", policy("enforce", &["mx0.secure.test"], 86_400))],
        ..Setup::default()
    });
    w.send("bob@secure.test", "no-starttls");
    w.retry_with("secure.test", "451 4.7.5 MTA-STS: secure.test requires TLS with a valid certificate");
    let q = w.retry_with("secure.test", "does not offer STARTTLS");
    assert!(q.last_error.as_deref().unwrap().contains("mx0.secure.test"), "{q:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.clear.messages().is_empty(), "never in clear");
    assert!(w.mailbox.messages().is_empty(), "mx1 is not in the policy");
}

#[test]
fn enforce_refuses_a_certificate_for_another_name() {
    let w = World::start(Setup { mx1_certificate: "other.test", ..Setup::default() });
    w.send("bob@secure.test", "wrong-name");
    let q = w.retry_with("secure.test", "451 4.7.5 MTA-STS: secure.test requires TLS");
    let error = q.last_error.unwrap();
    assert!(error.contains("certificate not valid for name \"mx1.secure.test\""), "{error}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.mailbox.messages().is_empty() && w.clear.messages().is_empty(), "nothing sent"); // The TLS report says what the handshake's certificate error was, typed.
    assert_eq!(result_types(&w, "secure.test"), ["certificate-host-mismatch"]);
}

/// The result types of the TLS report entry of `domain` today.
fn result_types(w: &World, domain: &str) -> Vec<String> {
    let day = w.sender.server().queue_manager().tls_reports().day(None);
    let entry = day.domains.into_iter().find(|d| d.domain == domain).expect("a TLS report entry");
    entry.failure_details.into_iter().map(|d| d.result_type).collect()
}

/// Tracing output of this test binary (the servers run in it), from the first call on.
fn warnings() -> Arc<Mutex<Vec<u8>>> {
    static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let sink = buffer.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || Capture(sink.clone()))
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
            buffer
        })
        .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn testing_mode_delivers_as_before_and_logs_what_would_have_failed() {
    let warnings = warnings();
    let testing = Domain { name: "testing.test", ..SECURE };
    let w = World::start(Setup {
        domains: vec![&testing, &SECURE],
        policies: vec![
            ("testing.test", policy("testing", &["mx1.secure.test"], 86_400)),
            ("secure.test", policy("enforce", &["mx1.secure.test"], 86_400)),
        ],
        mx1_certificate: "other.test",
        // Published enforce is only tested on this connector.
        mta_sts: Some(MtaStsMode::TestingOnly),
        ..Setup::default()
    });
    // testing.test publishes testing; mx0 (preferred, not in the policy, no STARTTLS) takes it.
    w.send("carol@testing.test", "tested");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<tested@test.invalid>"));
    let expected = [
        "MTA-STS testing: mx0.secure.test not named by the policy of testing.test (mx mx1.secure.test)",
        "fails the policy of testing.test: the peer does not offer STARTTLS; delivering anyway",
    ];
    for line in expected {
        assert_eq!(w.logged(line).len(), 1, "connectivity log: {line}");
        let text = String::from_utf8_lossy(&warnings.lock().unwrap()).to_string();
        assert!(text.contains(line) && text.contains("WARN"), "a warning: {line}\n{text}");
    }

    // secure.test publishes enforce; under TestingOnly it goes to mx0 as well, logged.
    w.settle();
    w.send("bob@secure.test", "enforce-tested");
    w.arrived(&w.clear, 2);
    assert_eq!(w.logged("MTA-STS policy of secure.test (testing)").len(), 1);
    assert_eq!(w.logged("mx0.secure.test not named by the policy of secure.test").len(), 1);
    assert!(w.mailbox.messages().is_empty());
}

#[test]
fn testing_mode_audits_the_certificate_and_still_delivers_over_tls() {
    let warnings = warnings();
    let only_mx1 = Domain { name: "secure.test", mx: &["mx1.secure.test"], sts_id: Some("1") };
    let w = World::start(Setup {
        domains: vec![&only_mx1],
        policies: vec![("secure.test", policy("testing", &["mx1.secure.test"], 86_400))],
        mx1_certificate: "other.test",
        ..Setup::default()
    });
    w.send("bob@secure.test", "audited");
    let got = w.arrived(&w.mailbox, 1);
    assert!(over_tls(&got[0]), "{}", got[0].content);
    let line = "fails the policy of secure.test: invalid peer certificate";
    let logged = w.logged(line);
    assert_eq!(logged.len(), 1, "{:#?}", w.sender.connectivity_log());
    assert!(logged[0].contains("not valid for name"), "{}", logged[0]);
    assert!(String::from_utf8_lossy(&warnings.lock().unwrap()).contains(line));
    assert_eq!(result_types(&w, "secure.test"), ["certificate-host-mismatch"], "what enforce would have refused");
}

#[test]
fn a_policy_host_with_an_untrusted_certificate_gives_no_policy() {
    let warnings = warnings();
    let w = World::start(Setup { untrusted_policy_host: true, ..Setup::default() });
    w.send("bob@secure.test", "untrusted");
    // As without a policy (RFC 8461 §3.3): mx0, the preferred host, in clear.
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<untrusted@test.invalid>"));
    assert_eq!(w.https.requests(), 0, "no request after a failed handshake");
    assert!(w.logged("MTA-STS policy of").is_empty());
    let text = String::from_utf8_lossy(&warnings.lock().unwrap()).to_string();
    assert!(
        text.lines().any(|l| l.contains("the policy cannot be fetched; no policy applies")
            && l.contains("https://mta-sts.secure.test:")
            && l.contains("invalid peer certificate")),
        "{text}"
    );
}

#[test]
fn a_policy_served_wrong_is_not_used() {
    let warnings = warnings();
    let enforce = policy("enforce", &["mx1.secure.test"], 86_400);
    let cases = [
        (
            "redirect.test",
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://mta-sts.secure.test/.well-known/mta-sts.txt\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string(),
            "answered 301",
        ),
        (
            "html.test",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{enforce}",
                enforce.len()
            ),
            "is \"text/html\", not text/plain",
        ),
        ("big.test", format!("{enforce}x-padding: {}\r\n", "x".repeat(70_000)), "is larger than 65536 bytes"),
        ("invalid.test", policy("enforce", &["mx1.secure.test"], 31_557_601), "max_age 31557601 is over the limit"),
    ];
    let domains: Vec<Domain> = cases.iter().map(|(name, _, _)| Domain { name, ..SECURE }).collect();
    let w = World::start(Setup {
        domains: domains.iter().chain([&SECURE]).collect(),
        policies: cases
            .iter()
            .map(|(name, body, _)| (*name, body.clone()))
            .chain([("secure.test", enforce.clone())])
            .collect(),
        ..Setup::default()
    });
    for (name, _, why) in &cases {
        w.send(&format!("bob@{name}"), name);
        let found = eventually_or(WAIT, || {
            let text = String::from_utf8_lossy(&warnings.lock().unwrap()).to_string();
            text.lines().any(|l| l.contains(&format!("domain={name} ")) && l.contains(why)).then_some(text)
        });
        let text = found.unwrap_or_else(|| {
            panic!("no warning for {name} ({why}):\n{}", String::from_utf8_lossy(&warnings.lock().unwrap()))
        });
        assert!(text.contains("no policy applies"), "{text}");
    }
    // Each went as without a policy: to mx0, the preferred host, in clear.
    w.arrived(&w.clear, cases.len());
    assert!(w.mailbox.messages().is_empty());
    assert_eq!(w.https.requests(), cases.len(), "one request each, the redirect not followed");
}

#[test]
fn without_a_txt_record_mail_goes_as_before() {
    let plain = Domain { name: "plain.test", mx: &["mx0.secure.test"], sts_id: None };
    let w = World::start(Setup { domains: vec![&plain, &SECURE], ..Setup::default() });
    w.send("dave@plain.test", "plain");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<plain@test.invalid>"));
    assert_eq!(w.https.requests(), 0, "no policy asked for");
    assert!(w.logged("MTA-STS").is_empty());
}

#[test]
fn a_cached_policy_applies_without_its_host_and_after_a_restart() {
    let mut w = World::start(Setup::default());
    w.send("bob@secure.test", "first");
    assert!(over_tls(&w.arrived(&w.mailbox, 1)[0]));
    assert_eq!(w.https.requests(), 1);

    // The policy host goes away: the cached policy still applies (same id, not expired).
    w.https.stop();
    w.settle();
    w.send("bob@secure.test", "host-gone");
    let got = w.arrived(&w.mailbox, 2);
    assert!(got.iter().all(over_tls));
    let cache = w.dir.path().join("queue").join(transport::delivery::mta_sts::CACHE_FILE);
    assert!(std::fs::read_to_string(&cache).unwrap().contains("mx1.secure.test"), "persisted");

    // A restart, and the domain now publishes id 2 (through a new DNS server) whose policy
    // cannot be fetched: the policy fetched before the restart still applies (§5.1).
    w.settle();
    w.sender.stop();
    let dns = DnsServer::start(vec![zone(&[&Domain { sts_id: Some("2"), ..SECURE }])]);
    let file = sender_file(w.dir.path(), w.sender.smtp, dns.addr, w.mx_port, w.reports.addr, &w.ca);
    write_config_file(&w.sender.config_path, &file);
    w.dns = dns;
    w.sender.restart();
    w.send("bob@secure.test", "after-restart");
    let got = w.arrived(&w.mailbox, 3);
    assert!(got.iter().all(over_tls));
    assert!(w.clear.messages().is_empty(), "never to mx0 while the policy applies");

    // Past max_age the cached policy is gone, and none can be fetched: as without a policy.
    w.settle();
    w.sender.set_time(t0() + DAY + Duration::from_secs(60));
    w.send("bob@secure.test", "expired");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<expired@test.invalid>"));
}

#[test]
fn a_policy_is_fetched_again_once_max_age_has_passed() {
    let w = World::start(Setup {
        policies: vec![("secure.test", policy("enforce", &["mx1.secure.test"], 600))],
        ..Setup::default()
    });
    w.send("bob@secure.test", "fetched");
    assert!(over_tls(&w.arrived(&w.mailbox, 1)[0]));
    // The domain changes its policy without a new id: the cached one holds for max_age.
    w.https.publish("secure.test", policy("testing", &["mx1.secure.test"], 600));
    w.settle();
    w.sender.set_time(t0() + Duration::from_secs(599));
    w.send("bob@secure.test", "cached");
    assert!(w.arrived(&w.mailbox, 2).iter().all(over_tls));
    assert_eq!(w.https.requests(), 1, "not fetched again before max_age");
    // Past max_age it is fetched again: now testing, so mx0 (preferred) takes the mail.
    w.settle();
    w.sender.set_time(t0() + Duration::from_secs(601));
    w.send("bob@secure.test", "refetched");
    let got = w.arrived(&w.clear, 1);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<refetched@test.invalid>"));
    assert_eq!(w.https.requests(), 2);
    assert_eq!(w.logged("MTA-STS policy of secure.test (testing)").len(), 1);
}

#[test]
fn a_cached_policy_is_refreshed_before_it_expires_and_outlives_its_host() {
    let mut w = World::start(Setup {
        policies: vec![("secure.test", policy("testing", &["mx1.secure.test"], 86_400))],
        ..Setup::default()
    });
    w.send("bob@secure.test", "testing");
    w.arrived(&w.clear, 1);
    assert_eq!(w.https.requests(), 1);
    // The domain moves to enforce without a new id: only a refresh can see it.
    w.https.publish("secure.test", policy("enforce", &["mx1.secure.test"], 86_400));
    w.settle();
    // Past half of max_age, the hourly refresh fetches it again with no mail to send.
    w.sender.set_time(t0() + Duration::from_secs(13 * 3600));
    eventually(WAIT, "the policy fetched again in the background", || (w.https.requests() == 2).then_some(()));
    // The policy host goes away. A day after the first fetch (its expiry), the refreshed
    // policy still applies: enforce, so only mx1, over TLS; mx0 gets nothing more.
    w.https.stop();
    w.sender.set_time(t0() + DAY + Duration::from_secs(3600));
    w.send("bob@secure.test", "refreshed");
    let got = w.arrived(&w.mailbox, 1);
    assert!(over_tls(&got[0]), "{:?}", got[0].content);
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<refreshed@test.invalid>"));
    assert_eq!(w.clear.messages().len(), 1, "nothing more in clear");
    assert_eq!(w.logged("MTA-STS policy of secure.test (enforce)").len(), 1);
}
