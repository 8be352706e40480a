//! DATA: smuggling, NUL, size, header and hop limits.
use super::*;

/// Every way of ending a line or the data other than CRLF.CRLF that SMTP
/// smuggling uses, each followed by a smuggled transaction.
const SMUGGLING: [&str; 8] = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\n.\r", "\r.\n"];

#[tokio::test]
async fn smuggling_sequences_fail_the_transaction_and_nothing_is_submitted() {
    let server = start(settings()).await;
    for variant in SMUGGLING {
        let mut c = server.session().await;
        expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
        expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
        expect(&c.cmd("DATA").await.unwrap(), "354");
        let data = format!(
            "Subject: carrier\r\n\r\nhello{variant}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@local.test>\r\n\
             DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        );
        c.send_raw(data.as_bytes()).await.unwrap();
        assert_eq!(c.read_reply().await.unwrap(), "550 5.6.0 Bare CR or LF in message data refused", "{variant:?}");
        // Nothing of the data was taken as commands: the next reply is to ours.
        assert_eq!(c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "503 5.5.1 Need MAIL command", "{variant:?}");
        assert!(server.submit.messages().is_empty(), "{variant:?}");
    }
    // Bare LF in a header, bare CR in the body.
    for data in ["Subject: x\nTo: y\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbo\rdy\r\n.\r\n"] {
        let mut c = server.session().await;
        expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
        expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
        expect(&c.cmd("DATA").await.unwrap(), "354");
        c.send_raw(data.as_bytes()).await.unwrap();
        expect(&c.read_reply().await.unwrap(), "550 5.6.0");
    }
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-smuggling").await;
}

#[tokio::test]
async fn nul_bytes_are_refused() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
    expect(&c.cmd("DATA").await.unwrap(), "354");
    c.send_raw(b"Subject: nul\r\n\r\na\0b\r\n.\r\n").await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "550 5.6.0 NUL character in message data refused");
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-nul").await;
}

#[tokio::test]
async fn oversized_message_is_read_to_its_end_then_refused() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    let mut big = String::from("Subject: big\r\n\r\n");
    while big.len() <= 30_000 {
        big.push_str("0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    assert_eq!(
        c.send_message("a@example.org", &["b@local.test"], &big).await.unwrap(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    // The session is still in step and usable.
    assert_eq!(c.cmd("RSET").await.unwrap(), "250 2.0.0 Resetting");
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("small")).await.unwrap(), "250 2.6.0");
    let m = server.submit.messages();
    assert_eq!(m.len(), 1);
    assert!(m[0].data.inline().unwrap().ends_with(message("small").as_bytes()));
}

#[tokio::test]
async fn header_section_over_the_limit_is_refused() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    let mut msg = String::from("Subject: many headers\r\n");
    for i in 0..40 {
        msg.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(60)));
    }
    msg.push_str("\r\nshort body\r\n");
    assert!(msg.len() < 10_000);
    assert_eq!(
        c.send_message("a@example.org", &["b@local.test"], &msg).await.unwrap(),
        "552 5.3.4 Header size exceeds fixed maximum size"
    );
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-header").await;
}

#[tokio::test]
async fn too_many_received_headers_is_a_loop() {
    let server = start(settings()).await;
    let hops = |n: usize| {
        let mut m = String::new();
        for i in 0..n {
            m.push_str(&format!("Received: from hop{i}.test by hop{}.test; {DATE}\r\n", i + 1));
        }
        m.push_str("Subject: loop\r\n\r\nbody\r\n");
        m
    };
    let mut c = server.session().await;
    assert_eq!(
        c.send_message("a@example.org", &["b@local.test"], &hops(6)).await.unwrap(),
        "554 5.4.6 Hop count exceeded - possible mail loop"
    );
    assert!(server.submit.messages().is_empty());
    expect(&c.send_message("a@example.org", &["b@local.test"], &hops(5)).await.unwrap(), "250 2.6.0");
    let stored = String::from_utf8(server.submit.messages()[0].data.inline().unwrap().to_vec()).unwrap();
    assert_eq!(stored.matches("Received:").count(), 6, "ours on top of the five");
}
