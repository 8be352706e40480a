//! Recipient, protocol error, time and connection limits.
use super::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn recipients_over_the_limit_get_452_and_go_in_the_next_transaction() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    for i in 1..=3 {
        expect(&c.cmd(&format!("RCPT TO:<r{i}@local.test>")).await.unwrap(), "250 2.1.5");
    }
    assert_eq!(c.cmd("RCPT TO:<r4@local.test>").await.unwrap(), "452 4.5.3 Too many recipients");
    expect(&c.cmd("DATA").await.unwrap(), "354");
    c.send_raw(data_block(&message("first-three")).as_bytes()).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    expect(&c.send_message("a@example.org", &["r4@local.test"], &message("fourth")).await.unwrap(), "250 2.6.0");
    let m = server.submit.messages();
    assert_eq!(m[0].envelope.recipients.len(), 3);
    assert_eq!(m[1].envelope.recipients[0].address, "r4@local.test");
}

#[tokio::test]
async fn too_many_protocol_errors_close_the_connection() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    // Sequence errors do not count.
    for _ in 0..8 {
        expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "503 5.5.1");
    }
    for _ in 0..5 {
        expect(&c.cmd("FROBNICATE").await.unwrap(), "500 5.5.2");
    }
    expect(&c.cmd("MAIL FROM:<a@example.org> FOO=1").await.unwrap(), "555 5.5.4");
    assert_eq!(
        c.read_reply().await.unwrap(),
        "421 4.7.0 Too many errors on this connection, closing transmission channel"
    );
    assert_eq!(c.read_to_end().await.unwrap(), "");
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-errors").await;
}

#[tokio::test]
async fn idle_client_gets_421_4_4_2_and_is_closed() {
    let mut s = settings();
    s.limits.connection_inactivity_timeout = Duration::from_secs(1);
    let server = start(s).await;
    let mut c = server.session().await;
    assert_eq!(
        c.read_reply().await.unwrap(),
        "421 4.4.2 mail.local.test Timeout waiting for client input, closing transmission channel"
    );
    assert_eq!(c.read_to_end().await.unwrap(), "");
    // Idle inside DATA too.
    let mut c = server.session().await;
    expect(&c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    expect(&c.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
    expect(&c.cmd("DATA").await.unwrap(), "354");
    c.send_raw(b"Subject: half a message\r\n").await.unwrap();
    expect(&c.read_reply().await.unwrap(), "421 4.4.2 mail.local.test Timeout waiting for client input");
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-idle").await;
}

#[tokio::test]
async fn slow_client_is_cut_off_at_the_connection_lifetime() {
    let mut s = settings();
    s.limits.connection_inactivity_timeout = Duration::from_secs(2);
    s.limits.connection_timeout = Duration::from_secs(3);
    let server = start(s).await;
    let c = server.session().await;
    let mut stream = c.into_inner().unwrap();
    stream.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n").await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = AsyncSmtpClient::new(tokio::io::join(read, tokio::io::sink()));
    for want in ["250", "250", "354"] {
        expect(&reader.read_reply().await.unwrap(), want);
    }
    // One byte every 200 ms: never idle, never done. Bounded to 10 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert_eq!(
        reader.read_reply().await.unwrap(),
        "421 4.4.2 mail.local.test Connection lifetime exceeded, closing transmission channel"
    );
    trickle.abort();
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-slowloris").await;
}

#[tokio::test]
async fn a_command_line_trickled_byte_by_byte_times_out() {
    let mut s = settings();
    s.limits.connection_inactivity_timeout = Duration::from_secs(1);
    let server = start(s).await;
    let c = server.session().await;
    let (read, mut write) = c.into_inner().unwrap().into_split();
    let mut reader = AsyncSmtpClient::new(tokio::io::join(read, tokio::io::sink()));
    // Never idle for long, but the line never completes. Bounded to 10 s.
    let trickle = tokio::spawn(async move {
        for b in b"NOOP ".iter().chain(std::iter::repeat(&b'x')).take(50) {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    expect(&reader.read_reply().await.unwrap(), "421 4.4.2 mail.local.test Timeout waiting for client input");
    trickle.abort();
    server.good_message_still_accepted("after-trickle").await;
}

#[tokio::test]
async fn connections_per_source_and_per_connector_are_limited() {
    const LIMIT: &str =
        "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel";
    let mut s = settings();
    s.limits.max_inbound_connection_per_source = 2;
    let server = start(s).await;
    let mut first = server.session().await;
    let _second = server.session().await;
    let (mut third, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(banner, LIMIT);
    assert_eq!(third.read_to_end().await.unwrap(), "");
    assert_eq!(*server.events.connection_refused.lock().unwrap(), ["maxInboundConnectionPerSource reached"]);
    // A slot frees when a session ends.
    expect(&first.cmd("QUIT").await.unwrap(), "221");
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        let (mut c, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
        if banner.starts_with("220 ") {
            expect(&c.cmd("EHLO client.test").await.unwrap(), "250");
            admitted = true;
            break;
        }
        assert_eq!(banner, LIMIT);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a new session once one ended");

    let mut s = settings();
    s.limits.max_inbound_connection = 1;
    let server = start(s).await;
    let _only = server.session().await;
    let (_, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(banner, LIMIT);
}

#[tokio::test]
async fn clients_outside_remote_ip_ranges_are_denied() {
    let mut s = settings();
    s.settings.remote_ip_ranges = vec!["10.0.0.0/8".parse().unwrap()];
    let server = start(s).await;
    let (mut c, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(banner, "554 5.7.1 Access denied");
    assert_eq!(c.read_to_end().await.unwrap(), "");
    let mut s = settings();
    s.settings.remote_ip_ranges = vec!["127.0.0.0/8".parse().unwrap()];
    start(s).await.good_message_still_accepted("inside-range").await;
}
