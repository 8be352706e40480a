//! Every receive limit answers with the right reply and enhanced status code, and a
//! good message on another session still goes through afterwards.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use transport::config::size::KB;
use transport::config::{ByteSize, ReceiveSettings, TimeSpan};

struct Fixture {
    sink: Sink,
    server: TransportProcess,
    /// The `Limited` connector: no relay, 64 KB, 3 recipients, 2 s inactivity timeout.
    limited: SocketAddr,
}

fn fixture() -> Fixture {
    let sink = Sink::start();
    let limited = free_addr();
    let settings = ReceiveSettings {
        max_message_size: Some(ByteSize(64 * KB)),
        max_recipients_per_message: Some(3),
        connection_inactivity_timeout: Some(TimeSpan::from_secs(2)),
        ..Default::default()
    };
    let server = start_transport(&TransportSetup {
        smart_host: Some(sink.addr),
        mailbox: Some(sink.addr),
        edit: edit(move |f| f.receive_connectors.push(receive_connector("Limited", limited, settings.clone()))),
        ..Default::default()
    });
    wait_for_smtp_ready(limited, Duration::from_secs(10));
    Fixture { sink, server, limited }
}

fn session(addr: SocketAddr) -> SmtpClient {
    let (mut c, banner) = SmtpClient::connect(addr).expect("connect");
    assert!(banner.starts_with("220 "), "{banner}");
    let ehlo = c.cmd("EHLO client.test").expect("ehlo");
    assert!(ehlo.starts_with("250"), "{ehlo}");
    c
}

fn assert_reply(reply: &str, code: &str) {
    assert!(reply.starts_with(code), "expected `{code}`, got `{reply}`");
}

/// After the misbehaviour, a well-formed message on a new session is delivered.
fn good_message_still_flows(f: &Fixture, tag: &str) {
    let mut c = session(f.server.smtp);
    let reply = c.send_message("good@example.org", &["good@example.net"], &test_message(tag, 3)).expect("send");
    assert_reply(&reply, "250 2.6.0");
    let want = format!("<{tag}@test.invalid>");
    eventually(Duration::from_secs(30), "the good message at the sink", || {
        f.sink.message_ids().contains_key(&want).then_some(())
    });
}

#[test]
fn message_size_limit_552_5_3_4() {
    let f = fixture();
    let mut c = session(f.limited);
    assert_reply(&c.cmd("MAIL FROM:<a@example.org> SIZE=100000").unwrap(), "552 5.3.4");
    // Declared small, sent large: refused after the data, nothing stored.
    let big = test_message("too-big", 3000);
    assert_reply(&c.send_message("a@example.org", &["b@local.test"], &big).unwrap(), "552 5.3.4");
    // The session is still usable.
    assert_reply(&c.send_message("a@example.org", &["b@local.test"], &test_message("small", 2)).unwrap(), "250 2.6.0");
    good_message_still_flows(&f, "after-size");
    assert!(!f.sink.message_ids().contains_key("<too-big@test.invalid>"));
}

#[test]
fn recipient_limit_452_4_5_3_and_rest_in_next_transaction() {
    let f = fixture();
    let mut c = session(f.limited);
    assert_reply(&c.cmd("MAIL FROM:<a@example.org>").unwrap(), "250");
    for i in 1..=3 {
        assert_reply(&c.cmd(&format!("RCPT TO:<r{i}@local.test>")).unwrap(), "250");
    }
    assert_reply(&c.cmd("RCPT TO:<r4@local.test>").unwrap(), "452 4.5.3");
    assert_reply(&c.cmd("DATA").unwrap(), "354");
    c.send_raw(b"Message-ID: <first-three@test.invalid>\r\n\r\nhi\r\n.\r\n").unwrap();
    assert_reply(&c.read_reply().unwrap(), "250 2.6.0");
    // The client sends the remaining recipient in a new transaction.
    assert_reply(
        &c.send_message("a@example.org", &["r4@local.test"], &test_message("fourth", 1)).unwrap(),
        "250 2.6.0",
    );
    let msgs = f.sink.wait_for(2, Duration::from_secs(30));
    let rcpts: usize = msgs.iter().map(|m| m.rcpt_args.len()).sum();
    assert_eq!(rcpts, 4, "all four recipients delivered: {msgs:?}");
    good_message_still_flows(&f, "after-rcpt-limit");
}

#[test]
fn syntax_and_sequence_errors() {
    let f = fixture();
    let mut c = session(f.server.smtp);
    assert_reply(&c.cmd("RCPT TO:<b@example.net>").unwrap(), "503 5.5.1");
    assert_reply(&c.cmd("DATA").unwrap(), "503 5.5.1");
    assert_reply(&c.cmd("FROBNICATE").unwrap(), "500 5.5.2");
    assert_reply(&c.cmd("MAIL FROM:not-an-address").unwrap(), "501 5.1.7");
    assert_reply(&c.cmd("MAIL FROM:<a@example.org> FOO=BAR").unwrap(), "555 5.5.4");
    assert_reply(&c.cmd("MAIL FROM:<a@example.org>").unwrap(), "250");
    assert_reply(&c.cmd("MAIL FROM:<a@example.org>").unwrap(), "503 5.5.1");
    assert_reply(&c.cmd("RCPT TO:<not an address>").unwrap(), "501 5.1.3");
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_reply(&c.cmd(&long).unwrap(), "500 5.5.2");
    assert_reply(&c.cmd("NOOP").unwrap(), "250");
    assert_reply(&c.cmd("VRFY someone").unwrap(), "252");
    good_message_still_flows(&f, "after-syntax");
}

#[test]
fn relay_denied_550_5_7_1_but_accepted_domains_allowed() {
    let f = fixture();
    let mut c = session(f.limited);
    assert_reply(&c.cmd("MAIL FROM:<a@example.org>").unwrap(), "250");
    assert_reply(&c.cmd("RCPT TO:<victim@example.net>").unwrap(), "550 5.7.1");
    assert_reply(&c.cmd("RCPT TO:<user%victim.example@local.test>").unwrap(), "250");
    assert_reply(&c.cmd("RCPT TO:<@local.test:victim@example.net>").unwrap(), "550 5.7.1");
    assert_reply(&c.cmd("RCPT TO:<user@LOCAL.TEST>").unwrap(), "250");
    good_message_still_flows(&f, "after-relay");
}

#[test]
fn smuggled_message_after_bare_lf_dot_is_refused_and_never_delivered() {
    let f = fixture();
    let mut c = session(f.server.smtp);
    assert_reply(&c.cmd("MAIL FROM:<a@example.org>").unwrap(), "250");
    assert_reply(&c.cmd("RCPT TO:<b@example.net>").unwrap(), "250");
    assert_reply(&c.cmd("DATA").unwrap(), "354");
    c.send_raw(
        b"Message-ID: <carrier@test.invalid>\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\n\
          DATA\r\nMessage-ID: <smuggled@test.invalid>\r\n\r\nevil\r\n.\r\n",
    )
    .unwrap();
    assert_reply(&c.read_reply().unwrap(), "550 5.6.0");
    good_message_still_flows(&f, "after-smuggling");
    let ids = f.sink.message_ids();
    assert!(!ids.contains_key("<smuggled@test.invalid>") && !ids.contains_key("<carrier@test.invalid>"), "{ids:?}");
}

#[test]
fn idle_client_is_cut_off_with_421_4_4_2() {
    let f = fixture();
    let mut c = session(f.limited);
    std::thread::sleep(Duration::from_secs(3));
    let reply = c.read_reply().expect("timeout reply");
    assert_reply(&reply, "421 4.4.2");
    assert_eq!(c.read_to_end(), "", "connection closed after the 421");
    good_message_still_flows(&f, "after-timeout");
}
