//! SMTP TLS Reporting (RFC 8460) through the whole server, with the peers of mta_sts.rs
//! on loopback: an in-test DNS server, an HTTPS policy server with a test CA, `mx0`
//! (127.0.0.2, smtp-sink without STARTTLS) and `mx1` (127.0.0.3, a transport server
//! with a certificate from the test CA). The sender runs on a test clock, so the UTC
//! day ends when the test says.
//!
//! `secure.test` enforces a policy naming both MX hosts and publishes
//! `_smtp._tls.secure.test`: its first session (to mx0) fails for want of STARTTLS, the
//! second (mx1) works. `other.test` enforces a policy naming mx1 and publishes no
//! TLSRPT record: its sessions are counted, and no report is mailed. `posted.test` is as
//! `other.test` and takes its reports by HTTPS POST (`rua=https://reports.posted.test`).
//! `broken.test` publishes a policy its host does not serve (404), `webpki.test` one on a
//! host whose certificate does not name it; `plain.test` has no policy and asks for
//! reports; `quiet.test` has neither. All four have mx1 as their MX host.

use crate::support::dns::{DnsServer, Zone};
use crate::support::inproc::*;
use crate::support::sts::*;
use crate::support::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use transport::api::{TlsReportDay, TlsReportDomain};
use transport::clock::ManualClock;
use transport::config::{AdminSettings, OrgSettings};

const CLEAR_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const TLS_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);
/// The day t0 falls on (2026-01-05T00:00:00Z).
const TODAY: &str = "2026-01-05";

struct World {
    _dir: tempfile::TempDir,
    mailbox: Sink,
    clear: Sink,
    _hop: InProc,
    /// The sender's mailbox hop (local.test): reports to tlsrpt@local.test arrive here.
    reports: Sink,
    https: PolicyServer,
    _dns: DnsServer,
    sender: InProc,
    admin: SocketAddr,
}

impl World {
    /// `org` changes the sender's organization settings (`transportConfig`).
    fn start(org: impl FnOnce(&mut OrgSettings)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pki.ca.pem()).unwrap();
        let mx_port = free_port();
        let mailbox = Sink::start();
        let clear = Sink::start_at(SocketAddr::new(CLEAR_MX.into(), mx_port), &[]);
        // mx1: every test domain on 127.0.0.3 with STARTTLS and a certificate for its name.
        let bind = SocketAddr::new(TLS_MX.into(), mx_port);
        let domains =
            ["secure.test", "other.test", "posted.test", "broken.test", "webpki.test", "plain.test", "quiet.test"];
        let hop = start_tls_hop(dir.path(), &pki, "mx1.secure.test", bind, mailbox.addr, &domains);
        let reports = Sink::start();
        let https = PolicyServer::start(
            &pki,
            &[
                ("secure.test", policy("enforce", &["mx0.secure.test", "mx1.secure.test"], 86_400)),
                ("other.test", policy("enforce", &["mx1.secure.test"], 86_400)),
                ("posted.test", policy("enforce", &["mx1.secure.test"], 86_400)),
                ("broken.test", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()),
            ],
        );
        let zone = Zone::new("test")
            .a("mx0.secure.test", CLEAR_MX)
            .a("mx1.secure.test", TLS_MX)
            .mx("secure.test", 5, "mx0.secure.test")
            .mx("secure.test", 10, "mx1.secure.test")
            .mx("other.test", 10, "mx1.secure.test")
            .txt("_mta-sts.secure.test", "v=STSv1; id=1;")
            .txt("_mta-sts.other.test", "v=STSv1; id=1;")
            .a("mta-sts.secure.test", Ipv4Addr::LOCALHOST)
            .a("mta-sts.other.test", Ipv4Addr::LOCALHOST)
            .txt("_smtp._tls.secure.test", "v=TLSRPTv1; rua=mailto:tlsrpt@local.test")
            .mx("posted.test", 10, "mx1.secure.test")
            .txt("_mta-sts.posted.test", "v=STSv1; id=1;")
            .a("mta-sts.posted.test", Ipv4Addr::LOCALHOST)
            .a("reports.posted.test", Ipv4Addr::LOCALHOST)
            .txt("_smtp._tls.posted.test", &format!("v=TLSRPTv1; rua={}", posted_rua(https.port)))
            // A policy published and not served (404), one on a host whose certificate
            // does not name it, none with a TLSRPT record, none at all.
            .mx("broken.test", 10, "mx1.secure.test")
            .txt("_mta-sts.broken.test", "v=STSv1; id=1;")
            .a("mta-sts.broken.test", Ipv4Addr::LOCALHOST)
            .mx("webpki.test", 10, "mx1.secure.test")
            .txt("_mta-sts.webpki.test", "v=STSv1; id=1;")
            .a("mta-sts.webpki.test", Ipv4Addr::LOCALHOST)
            .mx("plain.test", 10, "mx1.secure.test")
            .txt("_smtp._tls.plain.test", "v=TLSRPTv1; rua=mailto:tlsrpt@local.test")
            .mx("quiet.test", 10, "mx1.secure.test");
        let dns = DnsServer::start(vec![zone]);
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        std::fs::write(queue.join(transport::delivery::mta_sts::PORT_FLAG), https.port.to_string()).unwrap();
        let admin = free_addr();
        let mut file = sender_file(dir.path(), free_addr(), dns.addr, mx_port, reports.addr, &ca);
        file.admin = Some(AdminSettings { bind: admin, token_file: None });
        org(&mut file.transport_config);
        let sender = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
        World { _dir: dir, mailbox, clear, _hop: hop, reports, https, _dns: dns, sender, admin }
    }

    fn send(&self, to: &str, tag: &str) {
        self.sender.send("alice@local.test", &[to], tag);
    }

    fn arrived(&self, sink: &Sink, count: usize) -> Vec<SinkMessage> {
        self.sender.arrived(sink, count, WAIT)
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.admin);
        self.sender.block_on(async {
            let resp = reqwest::get(&url).await.expect("GET");
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        })
    }

    fn tlsrpt(&self, query: &str) -> Vec<TlsReportDay> {
        let (status, body) = self.get(&format!("/v1/tlsrpt{query}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("TlsReportDay[]")
    }
}

fn posted_rua(port: u16) -> String {
    format!("https://reports.posted.test:{port}/v1/tlsrpt")
}

fn domain<'a>(day: &'a TlsReportDay, name: &str) -> &'a TlsReportDomain {
    day.domains.iter().find(|d| d.domain == name).unwrap_or_else(|| panic!("{name} in {day:#?}"))
}

#[test]
fn sessions_are_counted_kept_over_a_restart_and_reported_after_the_day() {
    let mut w = World::start(|_| {});
    w.send("bob@secure.test", "secure");
    w.arrived(&w.mailbox, 1);
    w.send("carol@other.test", "other");
    w.arrived(&w.mailbox, 2);
    assert!(w.clear.messages().is_empty(), "never in clear under enforce");

    // Today's counts: secure.test one failure (mx0, no STARTTLS) and one success (mx1).
    let days = w.tlsrpt("");
    assert_eq!(days.len(), 1, "{days:#?}");
    assert_eq!(days[0].date, TODAY);
    let secure = domain(&days[0], "secure.test");
    assert_eq!((secure.successful_session_count, secure.failed_session_count), (1, 1), "{secure:#?}");
    assert_eq!(secure.policy_type, "sts");
    assert!(secure.policy_string.contains(&"mode: enforce".to_string()), "{secure:#?}");
    assert_eq!(secure.mx_host, ["mx0.secure.test", "mx1.secure.test"]);
    let detail = &secure.failure_details[0];
    assert_eq!(detail.result_type, "starttls-not-supported");
    assert_eq!(detail.receiving_mx_hostname, "mx0.secure.test");
    assert_eq!(detail.receiving_ip.as_deref(), Some("127.0.0.2"));
    // This server's side of the connection (sending-mta-ip): a loopback address here.
    let sending: std::net::IpAddr = detail.sending_mta_ip.as_deref().expect("sending-mta-ip").parse().unwrap();
    assert!(sending.is_loopback(), "{sending}");
    assert_eq!(detail.failed_session_count, 1);
    assert!(detail.failure_reason_code.as_deref().is_some_and(|r| r.contains("does not offer STARTTLS")), "{detail:?}");
    let other = domain(&days[0], "other.test");
    assert_eq!((other.successful_session_count, other.failed_session_count), (1, 0));
    assert_eq!(w.tlsrpt(&format!("?date={TODAY}")), days);
    let (status, body) = w.get("/v1/tlsrpt?date=yesterday");
    assert!(status == 400 && body.contains("date"), "{status} {body}");

    // The metric has no domain label.
    let (_, metrics) = w.get("/metrics");
    let line = |result: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("transport_tls_sessions_total{") && l.contains(&format!("result=\"{result}\"")))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
    };
    assert_eq!(line("starttls-not-supported").as_deref(), Some("1"), "{metrics}");
    assert_eq!(line("success").as_deref(), Some("2"), "{metrics}");

    // A restart keeps the day's counts.
    w.sender.restart();
    assert_eq!(w.tlsrpt(""), days);

    // The day ends: secure.test's report comes by mail to its rua; other.test gets none.
    w.sender.set_time(t0() + DAY + Duration::from_secs(120));
    let mail = w.arrived(&w.reports, 1).remove(0);
    assert_eq!(mail.rcpt_args.len(), 1, "{:?}", mail.rcpt_args);
    assert!(mail.rcpt_args[0].contains("tlsrpt@local.test"), "{:?}", mail.rcpt_args);
    let parsed = mail_parser::MessageParser::new().parse(mail.content.as_bytes()).expect("a mail");
    let header = |name: &str| parsed.header(name).and_then(|h| h.as_text()).map(str::to_string);
    assert_eq!(header("TLS-Report-Domain").as_deref(), Some("secure.test"));
    assert_eq!(header("TLS-Report-Submitter").as_deref(), Some("sender.test"));
    let report_id = format!("{TODAY}T00:00:00Z_secure.test@sender.test");
    assert_eq!(
        parsed.subject(),
        Some(format!("Report Domain: secure.test Submitter: sender.test Report-ID: <{report_id}>").as_str())
    );
    assert!(mail.content.contains("multipart/report") && mail.content.contains("report-type=\"tlsrpt\""));
    let part = parsed.attachment(0).expect("the report");
    assert!(mail.content.contains("application/tlsrpt+gzip"), "{}", mail.content);
    let json: serde_json::Value =
        serde_json::from_reader(flate2::read::GzDecoder::new(part.contents())).expect("gzipped JSON");
    assert_eq!(json["organization-name"], "sender.test");
    assert_eq!(json["contact-info"], "postmaster@local.test");
    assert_eq!(json["report-id"], report_id.as_str());
    assert_eq!(json["date-range"]["start-datetime"], format!("{TODAY}T00:00:00Z"));
    assert_eq!(json["date-range"]["end-datetime"], format!("{TODAY}T23:59:59Z"));
    let policy = &json["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "sts");
    assert_eq!(policy["policy"]["policy-domain"], "secure.test");
    assert_eq!(policy["policy"]["policy-string"][0], "version: STSv1");
    assert_eq!(policy["summary"]["total-successful-session-count"], 1);
    assert_eq!(policy["summary"]["total-failure-session-count"], 1);
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "starttls-not-supported");
    assert_eq!(failure["receiving-mx-hostname"], "mx0.secure.test");
    assert_eq!(failure["receiving-ip"], "127.0.0.2");
    assert_eq!(failure["sending-mta-ip"], sending.to_string());
    assert_eq!(failure["failed-session-count"], 1);
    assert!(failure["failure-reason-code"].as_str().is_some_and(|r| r.contains("STARTTLS")), "{failure}");

    // What became of each report is kept; other.test's stayed here.
    let day = eventually(WAIT, "both reports decided", || {
        let day = w.tlsrpt(&format!("?date={TODAY}")).remove(0);
        day.domains.iter().all(|d| d.report.is_some()).then_some(day)
    });
    assert_eq!(domain(&day, "secure.test").report.as_deref(), Some("sent to tlsrpt@local.test"));
    assert_eq!(domain(&day, "other.test").report.as_deref(), Some("not sent: no TLSRPT record"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.reports.messages().len(), 1, "no report for other.test, none twice");

    // transportctl shows the same.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_transportctl"))
            .args(["--admin", &format!("http://{}", w.admin), "get-tlsreport"])
            .args(args)
            .output()
            .expect("transportctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let json: Vec<TlsReportDay> = serde_json::from_str(&ctl(&["--date", TODAY, "-o", "json"])).expect("JSON");
    assert_eq!(json, vec![day]);
    let table = ctl(&[]);
    let row = table.lines().find(|l| l.contains("secure.test")).unwrap_or_else(|| panic!("{table}"));
    for cell in [TODAY, "sts", "starttls-not-supported mx0.secure.test x1", "sent to tlsrpt@local.test"] {
        assert!(row.contains(cell), "{cell} in {table}");
    }
}

#[test]
fn with_reporting_off_the_day_is_counted_and_no_report_is_mailed() {
    let w = World::start(|org| org.tls_reporting_enabled = Some(false));
    w.send("bob@secure.test", "secure");
    w.arrived(&w.mailbox, 1);
    let counted = domain(&w.tlsrpt("").remove(0), "secure.test").clone();
    assert_eq!((counted.successful_session_count, counted.failed_session_count), (1, 1));

    w.sender.set_time(t0() + DAY + Duration::from_secs(120));
    let day = eventually(WAIT, "the report decided", || {
        let day = w.tlsrpt(&format!("?date={TODAY}")).remove(0);
        day.domains.iter().all(|d| d.report.is_some()).then_some(day)
    });
    assert_eq!(domain(&day, "secure.test").report.as_deref(), Some("not sent: tlsReportingEnabled is false"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(w.reports.messages().is_empty(), "no report mailed");
}

#[test]
fn a_report_is_posted_to_an_https_rua_and_tried_again_while_refused() {
    let w = World::start(|_| {});
    w.send("dave@posted.test", "posted");
    w.arrived(&w.mailbox, 1);
    let rua = posted_rua(w.https.port);

    // The day ends while the reporting endpoint answers 503: nothing received, tried again.
    w.https.answer_reports_with("posted.test", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    let before = w.https.requests();
    w.sender.set_time(t0() + DAY + Duration::from_secs(120));
    eventually(WAIT, "the POST refused", || (w.https.requests() > before).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    let day = w.tlsrpt(&format!("?date={TODAY}")).remove(0);
    assert_eq!(domain(&day, "posted.test").report, None, "not decided while refused: {day:#?}");
    assert!(w.https.posted().is_empty());

    // An hour later the endpoint takes it.
    w.https.answer_reports_with("posted.test", "");
    w.sender.set_time(t0() + DAY + Duration::from_secs(120 + 3600));
    let posted = eventually(WAIT, "the report posted", || w.https.posted().pop());
    assert_eq!((posted.host.as_str(), posted.path.as_str()), ("reports.posted.test", "/v1/tlsrpt"));
    assert_eq!(posted.content_type, "application/tlsrpt+gzip");
    let json: serde_json::Value =
        serde_json::from_reader(flate2::read::GzDecoder::new(posted.body.as_slice())).expect("gzipped JSON");
    assert_eq!(json["report-id"], format!("{TODAY}T00:00:00Z_posted.test@sender.test"));
    let policy = &json["policies"][0];
    assert_eq!(policy["policy"]["policy-domain"], "posted.test");
    assert_eq!(policy["policy"]["mx-host"][0], "mx1.secure.test");
    assert_eq!(policy["summary"]["total-successful-session-count"], 1);
    assert_eq!(policy["summary"]["total-failure-session-count"], 0);
    let day = eventually(WAIT, "the report decided", || {
        let day = w.tlsrpt(&format!("?date={TODAY}")).remove(0);
        day.domains.iter().all(|d| d.report.is_some()).then_some(day)
    });
    assert_eq!(domain(&day, "posted.test").report, Some(format!("posted to {rua}")));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.https.posted().len(), 1, "posted once");
    assert!(w.reports.messages().is_empty(), "no mailto: rua, no mail");
}

#[test]
fn a_policy_not_fetched_and_a_domain_without_one_are_reported_too() {
    let w = World::start(|_| {});
    for (to, tag) in
        [("d@broken.test", "broken"), ("d@webpki.test", "webpki"), ("d@plain.test", "plain"), ("d@quiet.test", "quiet")]
    {
        w.send(to, tag);
    }
    // Nothing is enforced without a policy: all four are delivered (over TLS, to mx1).
    w.arrived(&w.mailbox, 4);
    let day = w.tlsrpt("").remove(0);
    // A policy published and not had: each session under it is a failure of the policy.
    let broken = domain(&day, "broken.test");
    assert_eq!(
        (broken.policy_type.as_str(), broken.successful_session_count, broken.failed_session_count),
        ("sts", 0, 1)
    );
    assert!(broken.policy_string.is_empty(), "{broken:#?}");
    let detail = &broken.failure_details[0];
    assert_eq!(
        (detail.result_type.as_str(), detail.receiving_mx_hostname.as_str()),
        ("sts-policy-fetch-error", "mx1.secure.test")
    );
    assert!(detail.failure_reason_code.as_deref().is_some_and(|r| r.contains("404")), "{detail:?}");
    let webpki = domain(&day, "webpki.test");
    assert_eq!(webpki.failure_details[0].result_type, "sts-webpki-invalid", "{webpki:#?}");
    // No policy, and the domain asks for reports: its TLS session is a success.
    let plain = domain(&day, "plain.test");
    assert_eq!(
        (plain.policy_type.as_str(), plain.successful_session_count, plain.failed_session_count),
        ("no-policy-found", 1, 0)
    );
    assert!(day.domains.iter().all(|d| d.domain != "quiet.test"), "no policy and no TLSRPT record: not counted");
    let (_, metrics) = w.get("/metrics");
    let counted =
        |labels: &str| metrics.lines().any(|l| l.starts_with("transport_tls_sessions_total{") && l.contains(labels));
    assert!(counted("policy_type=\"no-policy-found\""), "{metrics}");
    assert!(counted("result=\"sts-webpki-invalid\""), "{metrics}");

    // After midnight plain.test gets its report, policy-type no-policy-found; the two
    // without a TLSRPT record get none.
    w.sender.set_time(t0() + DAY + Duration::from_secs(120));
    let mail = w.arrived(&w.reports, 1).remove(0);
    let parsed = mail_parser::MessageParser::new().parse(mail.content.as_bytes()).expect("a mail");
    assert_eq!(parsed.header("TLS-Report-Domain").and_then(|h| h.as_text()), Some("plain.test"));
    let json: serde_json::Value =
        serde_json::from_reader(flate2::read::GzDecoder::new(parsed.attachment(0).expect("the report").contents()))
            .expect("gzipped JSON");
    assert_eq!(json["policies"][0]["policy"]["policy-type"], "no-policy-found");
    assert_eq!(json["policies"][0]["summary"]["total-successful-session-count"], 1);
    let day = eventually(WAIT, "the reports decided", || {
        let day = w.tlsrpt(&format!("?date={TODAY}")).remove(0);
        day.domains.iter().all(|d| d.report.is_some()).then_some(day)
    });
    assert_eq!(domain(&day, "broken.test").report.as_deref(), Some("not sent: no TLSRPT record"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.reports.messages().len(), 1);
}
