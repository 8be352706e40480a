//! swaks and Postfix's smtp-source → transport → Postfix's smtp-sink (smart host).

use crate::support::*;
use std::process::Command;
use std::time::Duration;
use transport::config::TimeSpan;

/// Strips the `Received:` header our server prepends (with its folded lines).
fn without_our_received(content: &str) -> &str {
    assert!(content.starts_with("Received: from "), "our Received header comes first: {content:.200}");
    let mut offset = 0;
    for (i, line) in content.split_inclusive('\n').enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        offset += line.len();
    }
    &content[offset..]
}

#[test]
fn swaks_message_is_relayed_byte_for_byte_with_a_received_header() {
    let swaks = tool("swaks", "swaks");
    let sink = Sink::start();
    let server = start_transport(&TransportSetup { smart_host: Some(sink.addr), ..Default::default() });

    let original = "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: byte for byte\r\n\
        Message-ID: <swaks-1@test.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        First line.\r\n.A line that starts with a dot.\r\n..Two dots.\r\n\r\n   indented\ttab\r\nLast line.\r\n";
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("msg.eml");
    // swaks ends the data with CRLF.CRLF itself: the file holds the message
    // without its final line end, so what swaks sends is exactly `original`.
    std::fs::write(&file, original.strip_suffix("\r\n").expect("ends with CRLF")).expect("write");
    let out = Command::new(swaks)
        .args(["--server", &server.smtp.to_string(), "--from", "alice@example.org", "--to", "bob@example.net"])
        .args(["--helo", "client.test", "--data"])
        .arg(format!("@{}", file.display()))
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    assert!(transcript.contains("<-  250 2.6.0 "), "queued reply missing:\n{transcript}");

    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(m.mail_args.starts_with("<alice@example.org>"), "{}", m.mail_args);
    assert!(m.rcpt_args.iter().any(|r| r.starts_with("<bob@example.net>")), "{:?}", m.rcpt_args);
    let received = m.content.lines().next().unwrap_or_default();
    assert!(received.contains("from client.test ([127.0.0.1])"), "{received}");
    assert!(m.content.contains("by relay.test.invalid with ESMTP id "), "{}", m.content);
    // smtp-sink writes LF line ends; the bytes are otherwise exactly the client's.
    assert_eq!(without_our_received(&m.content), original.replace("\r\n", "\n"));
}

#[test]
fn smtp_source_1000_messages_over_20_sessions_all_arrive() {
    let source = tool("smtp-source", "postfix");
    let sink = Sink::start();
    let server = start_transport(&TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    let out = Command::new(source)
        .args(["-s", "20", "-m", "1000", "-l", "2048", "-f", "load@example.org", "-t", "sink@example.net"])
        .arg(server.smtp.to_string())
        .output()
        .expect("run smtp-source");
    assert!(out.status.success(), "smtp-source failed: {}", String::from_utf8_lossy(&out.stderr));
    let got = sink.wait_for(1000, Duration::from_secs(120));
    assert_eq!(got.len(), 1000, "every accepted message arrives once");
    assert!(got.iter().all(|m| m.rcpt_args.iter().any(|r| r.starts_with("<sink@example.net>"))));
}

/// Messages far above the in-memory threshold go to spool files as they arrive:
/// they survive a SIGKILL of the server while their hop is down, arrive byte for
/// byte once it is back, and leave no file behind once delivered.
#[test]
fn large_messages_are_spooled_survive_a_kill_and_arrive_byte_for_byte() {
    let port = free_port();
    let hop: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = start_transport(&TransportSetup {
        smart_host: Some(hop),
        // Without the Safety Net, which would keep the delivered bodies (safety_net.rs).
        edit: edit(|f| {
            f.retry = retry_every(1);
            f.transport_config.safety_net_hold_time = Some(TimeSpan::from_secs(0));
        }),
        admin: true,
        ..Default::default()
    });
    let spool = server.dir.join("queue").join("spool");
    // Three senders at once, 1.2 to 2.4 MB each.
    let sent: Vec<(String, String)> = std::thread::scope(|s| {
        let senders: Vec<_> = (1..=3)
            .map(|n| {
                let addr = server.smtp;
                s.spawn(move || {
                    let id = format!("large-{n}");
                    let message = test_message(&id, 40_000 * n);
                    let (mut c, _) = SmtpClient::connect(addr).expect("connect");
                    c.cmd("EHLO large.test").expect("EHLO");
                    let reply = c.send_message("alice@example.org", &["bob@example.net"], &message).expect("send");
                    assert!(reply.starts_with("250 "), "{id}: {reply}");
                    (format!("<{id}@test.invalid>"), message)
                })
            })
            .collect();
        senders.into_iter().map(|h| h.join().expect("sender")).collect()
    });
    let spooled = std::fs::read_dir(&spool).expect("spool folder").count();
    assert_eq!(spooled, 3, "each large message in its own spool file");

    server.kill();
    server.spawn();
    let sink = Sink::start_on(port, &[]);
    let got = sink.wait_for(3, Duration::from_secs(60));
    for (id, message) in &sent {
        let m = got.iter().find(|m| m.header("Message-ID").as_deref() == Some(id.as_str())).expect("delivered");
        // smtp-sink writes LF line ends; the server added CRLF after the last line.
        let want = format!("{}\n", message.replace("\r\n", "\n"));
        assert!(without_our_received(&m.content) == want, "{id} arrived changed ({} bytes)", m.content.len());
    }
    server.wait_store_empty(Duration::from_secs(30));
    eventually(Duration::from_secs(10), "an empty spool folder", || {
        (std::fs::read_dir(&spool).expect("spool folder").count() == 0).then_some(())
    });
}

/// The send protocol log's data column (commands and replies) of a server.
fn sent_lines(server: &TransportProcess) -> Vec<String> {
    let lines = crate::support::inproc::read_logs(&server.dir.join("log").join("ProtocolLog").join("SmtpSend"));
    lines.iter().filter_map(|l| l.split(',').nth(7).map(str::to_string)).collect()
}

#[test]
fn a_hop_that_offers_chunking_gets_bdat_and_one_that_does_not_gets_data() {
    // client → A → B (a transport server: CHUNKING, BINARYMIME) → smtp-sink (neither).
    let sink = Sink::start();
    let logged = || edit(|f| f.send_connectors[0].protocol_logging = true);
    let b = start_transport(&TransportSetup {
        smart_host: Some(sink.addr),
        edit: logged(),
        server_name: Some("test-b".into()),
        ..Default::default()
    });
    let a = start_transport(&TransportSetup { smart_host: Some(b.smtp), edit: logged(), ..Default::default() });

    // 200 KB with lines that start with a dot: more than one chunk, and what DATA
    // would have to dot-stuff goes as it is.
    let line = ".a line that starts with a dot, as DATA would have to stuff it\r\n";
    let body = line.repeat(200_000 / line.len());
    let (mut c, _) = SmtpClient::connect(a.smtp).expect("connect");
    c.cmd("EHLO client.test").expect("EHLO");
    let message = format!("Subject: chunked\r\nMessage-ID: <chunked@test.invalid>\r\n\r\n{body}");
    let reply = c.send_message("alice@example.org", &["bob@example.net"], &message).expect("send");
    assert!(reply.starts_with("250"), "{reply}");
    let _ = c.cmd("QUIT");
    let got = sink.wait_for(1, Duration::from_secs(30));
    // smtp-sink writes LF line ends.
    let want = message.replace("\r\n", "\n");
    assert!(got[0].content.ends_with(&want), "the message arrives as it was sent");

    let a_sent = eventually(Duration::from_secs(10), "A's send protocol log", || {
        let lines = sent_lines(&a);
        lines.iter().any(|l| l.contains("LAST")).then_some(lines)
    });
    let chunks: Vec<&String> = a_sent.iter().filter(|l| l.starts_with("BDAT ")).collect();
    assert!(chunks.len() >= 3, "A sent BDAT chunks to B: {a_sent:#?}");
    assert!(chunks.last().is_some_and(|l| l.ends_with(" LAST")), "{chunks:?}");
    assert!(!a_sent.iter().any(|l| l == "DATA"), "{a_sent:#?}");
    let b_sent = eventually(Duration::from_secs(10), "B's send protocol log", || {
        let lines = sent_lines(&b);
        lines.iter().any(|l| l == "DATA").then_some(lines)
    });
    assert!(!b_sent.iter().any(|l| l.starts_with("BDAT")), "B uses DATA with smtp-sink: {b_sent:#?}");
}

/// Python's smtplib sends one SMTPUTF8 message (UTF-8 sender, recipient and header).
const SMTPLIB_UTF8: &str = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.test")
msg = "From: Jörg <jörg@bücher.test>\r\nTo: müller@example.net\r\nSubject: Grüße\r\nMessage-ID: <utf8@test.invalid>\r\n\r\nHallo.\r\n"
s.sendmail("jörg@bücher.test", ["müller@example.net"], msg.encode("utf-8"), mail_options=["SMTPUTF8"])
s.quit()
"#;

#[test]
fn python_smtplib_sends_smtputf8_and_it_is_relayed_with_smtputf8() {
    let python = tool("python3", "python3");
    // client → A → B (a transport server: SMTPUTF8; its own next hop is down, it keeps the message).
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = start_transport(&TransportSetup {
        smart_host: Some(dead),
        edit: edit(|f| f.receive_connectors[0].settings.protocol_logging = true),
        server_name: Some("test-b".into()),
        ..Default::default()
    });
    let a = start_transport(&TransportSetup { smart_host: Some(b.smtp), ..Default::default() });
    let out = Command::new(python)
        .args(["-c", SMTPLIB_UTF8, &a.smtp.ip().to_string(), &a.smtp.port().to_string()])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "smtplib: {}", String::from_utf8_lossy(&out.stderr));

    let received = eventually(Duration::from_secs(20), "B's receive protocol log with the message", || {
        let lines = crate::support::inproc::read_logs(&b.dir.join("log").join("ProtocolLog").join("SmtpReceive"));
        lines.iter().any(|l| l.contains("250 2.6.0")).then_some(lines)
    });
    assert!(
        received.iter().any(|l| l.contains("MAIL FROM:<jörg@bücher.test>") && l.contains("SMTPUTF8")),
        "A relays with SMTPUTF8, the address as sent: {received:#?}"
    );
    assert!(received.iter().any(|l| l.contains("RCPT TO:<müller@example.net>")), "{received:#?}");
}
