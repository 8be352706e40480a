//! Command replies, the stored message, pipelining.
use super::*;
use crate::envelope::{Notify, Ret, Source};

#[tokio::test]
async fn plain_transaction_stores_received_header_then_the_clients_bytes() {
    let server = start(settings()).await;
    let (mut c, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(banner, "220 mail.local.test kube-transport ESMTP ready");
    assert_eq!(
        c.cmd("EHLO client.test").await.unwrap(),
        "250-mail.local.test Hello [127.0.0.1]\n250-SIZE 10000\n250-PIPELINING\n250-DSN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n\
         250-CHUNKING\n250-SMTPUTF8\n250 BINARYMIME"
    );
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await.unwrap(), "250 2.1.0 Sender OK");
    assert_eq!(c.cmd("RCPT TO:<bob@local.test>").await.unwrap(), "250 2.1.5 Recipient OK");
    assert_eq!(c.cmd("DATA").await.unwrap(), "354 Start mail input; end with <CRLF>.<CRLF>");
    c.send_raw(data_block(&message("plain")).as_bytes()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "250 2.6.0 <1@mail.local.test> Queued mail for delivery");
    assert_eq!(c.cmd("QUIT").await.unwrap(), "221 2.0.0 Service closing transmission channel");
    assert_eq!(c.read_to_end().await.unwrap(), "");

    let m = &server.submit.messages()[0];
    let want = format!("{}{}", received(1, "ESMTP"), message("plain"));
    assert_eq!(String::from_utf8_lossy(m.data.inline().unwrap()), want);
    assert!(String::from_utf8_lossy(m.data.inline().unwrap()).contains("\r\n.leading dot\r\n.\r\n..two dots\r\n"));
    assert_eq!(m.envelope.id, MessageId(1));
    assert_eq!(m.envelope.mail_from.as_ref().map(|a| a.as_str()), Some("alice@example.org"));
    assert_eq!(m.envelope.recipients.len(), 1);
    assert_eq!(m.envelope.recipients[0].address.as_str(), "bob@local.test");
    assert_eq!((m.envelope.recipients[0].notify, m.envelope.recipients[0].orcpt.as_deref()), (None, None));
    assert_eq!(m.envelope.subject.as_deref(), Some("test plain"));
    assert_eq!(m.envelope.internet_message_id.as_deref(), Some("<plain@test.invalid>"));
    assert_eq!((m.envelope.body_8bit, m.envelope.ret, m.envelope.envid.as_deref()), (false, None, None));
    assert_eq!(&*m.envelope.origin.connector, "Default");
    assert_eq!(m.envelope.origin.client_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(
        (&*m.envelope.origin.helo, m.envelope.origin.tls, m.envelope.origin.source),
        ("client.test", false, Source::Smtp)
    );
}

#[tokio::test]
async fn helo_and_simple_commands() {
    let server = start(settings()).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "503 5.5.1 Send hello first");
    assert_eq!(c.cmd("HELO").await.unwrap(), "501 5.5.4 Syntax: HELO hostname");
    assert_eq!(c.cmd("HELO bad(name)").await.unwrap(), "501 5.5.4 Invalid domain name");
    assert_eq!(c.cmd("HELO client.test").await.unwrap(), "250 mail.local.test Hello [127.0.0.1]");
    assert_eq!(c.cmd("NOOP").await.unwrap(), "250 2.0.0 OK");
    assert_eq!(c.cmd("RSET").await.unwrap(), "250 2.0.0 Resetting");
    assert_eq!(
        c.cmd("VRFY bob").await.unwrap(),
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
    );
    expect(&c.cmd("HELP").await.unwrap(), "214 2.0.0 ");
    assert_eq!(c.cmd("FROBNICATE now").await.unwrap(), "500 5.5.2 Unrecognized command");
    assert_eq!(c.cmd("STARTTLS").await.unwrap(), "502 5.5.1 Command not implemented");
    // A HELO session's message says SMTP in its Received header.
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("helo")).await.unwrap(), "250 2.6.0");
    assert_eq!(c.cmd("QUIT").await.unwrap(), "221 2.0.0 Service closing transmission channel");
    let data = String::from_utf8(server.submit.messages()[0].data.inline().unwrap().to_vec()).unwrap();
    assert!(data.starts_with(&received(1, "SMTP")), "{data}");
}

#[tokio::test]
async fn mail_from_replies_and_parameters() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd("MAIL FROM:not-an-address").await.unwrap(), "501 5.1.7 Invalid address");
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> FOO=BAR").await.unwrap(), "555 5.5.4 Unsupported parameter FOO");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=10001").await.unwrap(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> BODY=UTF8").await.unwrap(), "501 5.5.4 Invalid BODY parameter");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=10000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1").await.unwrap(),
        "250 2.1.0 Sender OK"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "503 5.5.1 Sender already specified");
    expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250 2.1.5");
    expect(&c.cmd("DATA").await.unwrap(), "354");
    let body = "Subject: 8bit\r\n\r\ncaf\u{e9} \u{2603}\r\n";
    c.send_raw(data_block(body).as_bytes()).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    // The null reverse path.
    expect(&c.send_message("", &["b@local.test"], &message("null")).await.unwrap(), "250 2.6.0");
    let m = server.submit.messages();
    assert_eq!(
        (m[0].envelope.body_8bit, m[0].envelope.ret, m[0].envelope.envid.as_deref()),
        (true, Some(Ret::Hdrs), Some("QQ+1"))
    );
    assert!(m[0].data.inline().unwrap().ends_with(body.as_bytes()));
    assert_eq!(
        (m[1].envelope.mail_from.as_ref().map(|a| a.as_str()), m[1].envelope.body_8bit, m[1].envelope.ret),
        (None, false, None)
    );
}

#[tokio::test]
async fn require_tls_refuses_mail_in_clear() {
    let mut s = settings();
    s.settings.require_tls = true;
    let server = start(s).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "530 5.7.0 Must issue a STARTTLS command first");
    assert!(server.submit.messages().is_empty());
}

#[tokio::test]
async fn rcpt_to_replies_relay_rules_and_dsn_parameters() {
    let mut s = settings();
    s.limits.max_recipients_per_message = 50;
    let server = start(s).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "503 5.5.1 Need MAIL command");
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250 2.1.0");
    assert_eq!(c.cmd("RCPT TO:<not an address>").await.unwrap(), "501 5.1.3 Invalid recipient address");
    assert_eq!(
        c.cmd("RCPT TO:<b@local.test> NOTIFY=NEVER,SUCCESS").await.unwrap(),
        "501 5.5.4 Invalid NOTIFY parameter"
    );
    assert_eq!(c.cmd("RCPT TO:<victim@example.net>").await.unwrap(), "550 5.7.1 Unable to relay");
    // The source route does not decide: its destination does.
    assert_eq!(c.cmd("RCPT TO:<@local.test:victim@example.net>").await.unwrap(), "550 5.7.1 Unable to relay");
    assert_eq!(c.cmd("RCPT TO:<victim@local.test.example.net>").await.unwrap(), "550 5.7.1 Unable to relay");
    let accepted = [
        ("RCPT TO:<one@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one+40local.test", "one@local.test"),
        ("RCPT TO:<two@LOCAL.TEST> NOTIFY=NEVER", "two@LOCAL.TEST"),
        ("RCPT TO:<three@local.test.>", "three@local.test"),
        ("RCPT TO:<four@corp.test>", "four@corp.test"),
        ("RCPT TO:<five@eu.Corp.test>", "five@eu.Corp.test"),
        ("RCPT TO:<@relay.example.net,@other.example.net:six@local.test>", "six@local.test"),
        ("RCPT TO:<user%victim.example@local.test>", "user%victim.example@local.test"),
        ("RCPT TO:<host!user@local.test>", "host!user@local.test"),
        ("RCPT TO:<\"john doe\"@local.test>", "\"john doe\"@local.test"),
        ("RCPT TO:<Postmaster>", "postmaster@local.test"),
    ];
    for (cmd, _) in accepted {
        assert_eq!(c.cmd(cmd).await.unwrap(), "250 2.1.5 Recipient OK", "{cmd}");
    }
    expect(&c.cmd("DATA").await.unwrap(), "354");
    c.send_raw(data_block(&message("rcpts")).as_bytes()).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    let m = &server.submit.messages()[0];
    let got: Vec<&str> = m.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
    let want: Vec<&str> = accepted.iter().map(|(_, a)| *a).collect();
    assert_eq!(got, want);
    assert_eq!(
        m.envelope.recipients[0].notify,
        Some(Notify { never: false, success: true, failure: true, delay: false })
    );
    assert_eq!(m.envelope.recipients[0].orcpt.as_deref(), Some("rfc822;one+40local.test"));
    assert_eq!(m.envelope.recipients[1].notify, Some(Notify { never: true, ..Default::default() }));
    assert_eq!(m.envelope.recipients[2].notify, None);
}

#[tokio::test]
async fn allow_relay_accepts_any_domain() {
    let mut s = settings();
    s.settings.allow_relay = true;
    let server = start(s).await;
    let mut c = server.session().await;
    expect(&c.send_message("a@example.org", &["victim@example.net"], &message("relay")).await.unwrap(), "250 2.6.0");
    assert_eq!(server.submit.messages()[0].envelope.recipients[0].address.as_str(), "victim@example.net");
}

#[tokio::test]
async fn data_needs_recipients() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd("DATA").await.unwrap(), "503 5.5.1 Need MAIL command");
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    expect(&c.cmd("RCPT TO:<x@example.net>").await.unwrap(), "550 5.7.1");
    assert_eq!(c.cmd("DATA").await.unwrap(), "503 5.5.1 No valid recipients");
    assert!(server.submit.messages().is_empty());
}

#[tokio::test]
async fn pipelined_commands_in_one_write_are_answered_in_order() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    c.send_raw(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@local.test>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<c@local.test>\r\nDATA\r\n",
    )
    .await
    .unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "550 5.7.1", "250 2.1.5", "354 "] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    let mut rest = data_block(&message("pipelined")).into_bytes();
    rest.extend_from_slice(b"MAIL FROM:<a@example.org>\r\nRSET\r\nQUIT\r\n");
    c.send_raw(&rest).await.unwrap();
    for want in ["250 2.6.0", "250 2.1.0", "250 2.0.0 Resetting", "221 2.0.0"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    assert_eq!(c.read_to_end().await.unwrap(), "");
    let m = server.submit.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].envelope.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
        ["b@local.test", "c@local.test"]
    );
}

#[tokio::test]
async fn long_line_is_refused_and_the_session_goes_on() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    assert_eq!(c.cmd(&format!("NOOP {}", "x".repeat(5000))).await.unwrap(), "500 5.5.2 Line too long");
    assert_eq!(c.cmd("NOOP").await.unwrap(), "250 2.0.0 OK");
    // Control characters inside a command.
    expect(&c.cmd("NOOP a\rb").await.unwrap(), "500 5.5.2");
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("after-long")).await.unwrap(), "250 2.6.0");
}

#[tokio::test]
async fn protocol_log_and_events() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("logged")).await.unwrap(), "250 2.6.0");
    expect(&c.cmd("RCPT TO:<x@local.test>").await.unwrap(), "503");
    expect(&c.cmd("QUIT").await.unwrap(), "221");
    c.read_to_end().await.unwrap();
    drop(c);
    // session_closed comes when the session task ends, just after the close.
    for _ in 0..100 {
        if server.events.closed.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = &server.events;
    assert_eq!((ev.opened.load(Ordering::SeqCst), ev.closed.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(ev.received.load(Ordering::SeqCst), 1);
    assert_eq!(*ev.refused.lock().unwrap(), ["503 5.5.1"]);
    let lines = ev.lines.lock().unwrap().clone();
    assert_eq!(lines.first().map(|l| l.0), Some(LogEvent::Connect));
    assert!(lines.contains(&(LogEvent::Received, "EHLO client.test".into())), "{lines:?}");
    assert!(lines.contains(&(LogEvent::Sent, "250 2.1.0 Sender OK".into())), "{lines:?}");
    assert!(lines.iter().any(|(e, l)| *e == LogEvent::Disconnect && l == "QUIT"), "{lines:?}");

    // Without protocolLogging: events, but no protocol lines.
    let mut s = settings();
    s.settings.protocol_logging = false;
    let quiet = start(s).await;
    let mut c = quiet.session().await;
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("quiet")).await.unwrap(), "250 2.6.0");
    assert!(quiet.events.lines.lock().unwrap().is_empty());
    assert_eq!(quiet.events.received.load(Ordering::SeqCst), 1);
}
