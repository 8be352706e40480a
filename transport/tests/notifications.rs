//! Who gets which DSN (RFC 3461, docs/design.md §4/§5): delay DSNs only when enabled for
//! the sender's side and allowed by NOTIFY; never for a null sender; an NDR at
//! once for a 5xx; a "relayed" success DSN when NOTIFY=SUCCESS meets a hop
//! without DSN support. Reports are parsed back and their fields checked.

use crate::support::inproc::*;
use crate::support::*;
use mail_parser::{MessageParser, MimeHeaders};
use std::time::Duration;
use transport::clock::ManualClock;
use transport::config::OrgSettings;

const MIN: u64 = 60_000;

struct Setup {
    sink: Sink,
    server: InProc,
    _dir: tempfile::TempDir,
}

/// `smart_host` serves the world; `sink` is the mailbox hop of local.test; `org` changes
/// the organization settings.
fn setup(smart_host: std::net::SocketAddr, org: impl FnOnce(&mut OrgSettings)) -> Setup {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = TransportSetup {
        server_name: Some("dsn-0".into()),
        smart_host: Some(smart_host),
        mailbox: Some(sink.addr),
        ..Default::default()
    };
    let mut file = setup.config_file(&Placement { dir: dir.path(), smtp: free_addr(), admin: None, token_file: None });
    file.log_directory = None;
    file.receive_connectors[0].settings.remote_ip_ranges.clear();
    org(&mut file.transport_config);
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    Setup { sink, server, _dir: dir }
}

fn send(server: &InProc, from: &str, to: &str, rcpt_params: &str, tag: &str) {
    let (mut c, _) = SmtpClient::connect(server.smtp).expect("connect");
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{from}> ENVID=env-{tag}")).unwrap();
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{to}>{rcpt_params}")).unwrap();
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send_raw(format!("Subject: {tag}\r\nMessage-ID: <{tag}@test.invalid>\r\n\r\nhello\r\n.\r\n").as_bytes()).unwrap();
    assert!(c.read_reply().unwrap().starts_with("250 2.6.0"));
    let _ = c.cmd("QUIT");
}

/// DSN messages generated so far, wherever they are (queued or delivered to the sink).
fn queued_dsns(server: &InProc) -> usize {
    server
        .server()
        .queue_manager()
        .messages(&all_messages(None))
        .unwrap()
        .rows
        .iter()
        .filter(|m| m.message_source_name == "DSN")
        .count()
}

fn sink_dsns(sink: &Sink) -> Vec<SinkMessage> {
    sink.messages().into_iter().filter(|m| m.mail_args.starts_with("<>")).collect()
}

/// The delivery-status part of a report, as text.
fn delivery_status(m: &SinkMessage) -> String {
    let parsed = MessageParser::default().parse(m.content.as_bytes()).expect("parses");
    let ct = parsed.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    // RFC 6533: the global kind when the report names UTF-8 addresses.
    let kind = ct.attribute("report-type").expect("report-type");
    assert!(kind == "delivery-status" || kind == "global-delivery-status", "{kind}");
    parsed
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some(kind)))
        .map(|p| String::from_utf8_lossy(p.contents()).to_string())
        .expect("a message/delivery-status part")
}

fn cross_delay_timeout(s: &Setup) {
    s.server.set_time(at_ms(ms(t0()) + 240 * MIN));
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn delay_dsn_respects_the_sender_side_switches() {
    let dead = free_port().to_string();
    let dead = format!("127.0.0.1:{dead}").parse().unwrap();
    // Internal senders: disabled. External: enabled (default).
    let s = setup(dead, |o| o.internal_delay_dsn_enabled = Some(false));
    send(&s.server, "alice@local.test", "bob@example.net", "", "internal");
    send(&s.server, "carol@example.org", "bob@example.net", "", "external");
    cross_delay_timeout(&s);
    // carol's delay DSN is queued (towards the dead hop); alice gets none.
    eventually(Duration::from_secs(20), "one delay DSN", || (queued_dsns(&s.server) == 1).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(queued_dsns(&s.server), 1);
    assert!(sink_dsns(&s.sink).is_empty(), "no delay DSN to the internal sender");
    let dsn = s
        .server
        .server()
        .queue_manager()
        .messages(&all_messages(None))
        .unwrap()
        .rows
        .into_iter()
        .find(|m| m.message_source_name == "DSN")
        .unwrap();
    assert_eq!(dsn.recipients[0].address, "carol@example.org");
    assert_eq!(dsn.from_address, "", "DSNs have a null reverse path");

    // Both sides disabled: nothing at all.
    let s = setup(dead, |o| {
        o.internal_delay_dsn_enabled = Some(false);
        o.external_delay_dsn_enabled = Some(false);
    });
    send(&s.server, "alice@local.test", "bob@example.net", "", "i2");
    send(&s.server, "carol@example.org", "bob@example.net", "", "e2");
    cross_delay_timeout(&s);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(queued_dsns(&s.server), 0);
}

#[test]
fn notify_and_null_sender_rules() {
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = setup(dead, |_| {});
    send(&s.server, "alice@local.test", "no-delay@example.net", " NOTIFY=FAILURE", "no-delay");
    send(&s.server, "alice@local.test", "never@example.net", " NOTIFY=NEVER", "never");
    send(&s.server, "", "bounce@example.net", "", "null-sender");
    cross_delay_timeout(&s);
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink_dsns(&s.sink).is_empty(), "NOTIFY without DELAY, NEVER and <> get no delay DSN");
    // Expiry: only NOTIFY=FAILURE gets its NDR.
    s.server.set_time(at_ms(ms(t0()) + 2 * 24 * 60 * MIN));
    let got = eventually(Duration::from_secs(20), "the NDR", || {
        let d = sink_dsns(&s.sink);
        (!d.is_empty()).then_some(d)
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = if got.len() == 1 { got } else { sink_dsns(&s.sink) };
    assert_eq!(got.len(), 1, "one NDR: {got:?}");
    let status = delivery_status(&got[0]);
    assert!(
        status.contains("Final-Recipient: rfc822; no-delay@example.net")
            || status.contains("Final-Recipient: rfc822;no-delay@example.net"),
        "{status}"
    );
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 4.4.7"), "{status}");
    assert!(status.contains("Original-Envelope-Id: env-no-delay"), "{status}");
    assert!(
        status.contains("Reporting-MTA: dns; relay.test.invalid")
            || status.contains("Reporting-MTA: dns;relay.test.invalid"),
        "{status}"
    );
    // Nothing is left queued.
    eventually(Duration::from_secs(10), "empty queues", || {
        (s.server.server().queue_manager().totals().messages == 0).then_some(())
    });
}

#[test]
fn a_5xx_gets_an_ndr_at_once_with_the_remote_reply() {
    let refusing = Sink::start_with(&["-f", "RCPT"]);
    let s = setup(refusing.addr, |_| {});
    send(&s.server, "alice@local.test", "nobody@example.net", "", "refused");
    let got = eventually(Duration::from_secs(20), "the NDR", || {
        let d = sink_dsns(&s.sink);
        (!d.is_empty()).then_some(d)
    });
    let status = delivery_status(&got[0]);
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.3.0"), "smtp-sink's 500 5.3.0: {status}");
    assert!(status.contains("Diagnostic-Code: smtp; 500 5.3.0"), "{status}");
    assert!(status.contains("Remote-MTA: dns;"), "{status}");
    let parsed = MessageParser::default().parse(got[0].content.as_bytes()).unwrap();
    assert_eq!(parsed.subject(), Some("Undeliverable: refused"));
    assert!(got[0].mail_args.starts_with("<>"));
}

#[test]
fn notify_success_to_a_hop_without_dsn_gets_a_relayed_dsn() {
    let no_dsn = Sink::start_with(&["-N"]);
    let s = setup(no_dsn.addr, |_| {});
    send(&s.server, "alice@local.test", "bob@example.net", " NOTIFY=SUCCESS ORCPT=rfc822;bob@example.net", "relayed");
    no_dsn.wait_for(1, Duration::from_secs(20));
    let got = eventually(Duration::from_secs(20), "the success DSN", || {
        let d = sink_dsns(&s.sink);
        (!d.is_empty()).then_some(d)
    });
    let status = delivery_status(&got[0]);
    assert!(status.contains("Action: relayed"), "{status}");
    assert!(status.contains("Status: 2.0.0"), "{status}");
    assert!(
        status.contains("Original-Recipient: rfc822;bob@example.net")
            || status.contains("Original-Recipient: rfc822; bob@example.net"),
        "{status}"
    );

    // A DSN-capable hop takes over: NOTIFY goes along and no DSN comes from us.
    let with_dsn = Sink::start();
    let s = setup(with_dsn.addr, |_| {});
    send(&s.server, "alice@local.test", "bob@example.net", " NOTIFY=SUCCESS", "passed");
    let m = with_dsn.wait_for(1, Duration::from_secs(20));
    assert!(m[0].rcpt_args.iter().any(|r| r.contains("NOTIFY=SUCCESS")), "{:?}", m[0].rcpt_args);
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink_dsns(&s.sink).is_empty());
}

#[test]
fn binarymime_for_a_hop_without_it_is_returned_at_once_with_5_6_3_and_headers_only() {
    // smtp-sink offers neither CHUNKING nor BINARYMIME: the message cannot go there as it is.
    let world = Sink::start();
    let s = setup(world.addr, |_| {});
    let (mut c, _) = SmtpClient::connect(s.server.smtp).expect("connect");
    assert!(c.cmd("EHLO client.test").unwrap().contains("BINARYMIME"));
    assert!(c.cmd("MAIL FROM:<alice@local.test> BODY=BINARYMIME").unwrap().starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.net>").unwrap().starts_with("250"));
    let body = b"Subject: binary\r\nMessage-ID: <binary@test.invalid>\r\n\r\n\x00\xff\nraw\r";
    c.send_raw(&[format!("BDAT {} LAST\r\n", body.len()).as_bytes(), body].concat()).unwrap();
    let reply = c.read_reply().unwrap();
    assert!(reply.starts_with("250 2.6.0"), "{reply}");
    let _ = c.cmd("QUIT");

    let got = eventually(Duration::from_secs(20), "the NDR", || {
        let d = sink_dsns(&s.sink);
        (!d.is_empty()).then_some(d)
    });
    let status = delivery_status(&got[0]);
    assert!(status.contains("Action: failed") && status.contains("Status: 5.6.3"), "{status}");
    assert!(status.contains("BINARYMIME"), "the reason is given: {status}");
    let parsed = MessageParser::default().parse(got[0].content.as_bytes()).unwrap();
    let returned = parsed
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("rfc822-headers")));
    assert!(returned.is_some(), "the original's header only: {}", got[0].content);
    assert!(world.messages().is_empty(), "nothing went to the hop");
}

#[test]
fn a_utf8_recipient_for_a_hop_without_smtputf8_is_returned_with_5_6_7() {
    // smtp-sink does not offer SMTPUTF8: the address cannot be sent there without mangling it.
    let world = Sink::start();
    let s = setup(world.addr, |_| {});
    let (mut c, _) = SmtpClient::connect(s.server.smtp).expect("connect");
    assert!(c.cmd("EHLO client.test").unwrap().contains("SMTPUTF8"));
    assert!(c.cmd("MAIL FROM:<alice@local.test> SMTPUTF8").unwrap().starts_with("250"));
    assert!(c.cmd("RCPT TO:<jörg@example.net>").unwrap().starts_with("250"));
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send_raw("Subject: utf8\r\nMessage-ID: <utf8@test.invalid>\r\n\r\nGrüße\r\n.\r\n".as_bytes()).unwrap();
    assert!(c.read_reply().unwrap().starts_with("250 2.6.0"));
    let _ = c.cmd("QUIT");

    let got = eventually(Duration::from_secs(20), "the NDR", || {
        let d = sink_dsns(&s.sink);
        (!d.is_empty()).then_some(d)
    });
    let status = delivery_status(&got[0]);
    assert!(status.contains("Action: failed") && status.contains("Status: 5.6.7"), "{status}");
    assert!(status.contains("Final-Recipient: utf-8; jörg@example.net"), "{status}");
    let parsed = MessageParser::default().parse(got[0].content.as_bytes()).unwrap();
    let kind = parsed.content_type().and_then(|c| c.attribute("report-type").map(str::to_string));
    assert_eq!(kind.as_deref(), Some("global-delivery-status"), "RFC 6533");
    assert!(status.contains("SMTPUTF8"), "the reason is given: {status}");
    assert!(world.messages().is_empty(), "nothing went to the hop");
}
