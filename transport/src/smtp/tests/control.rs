//! What the server allows (the gate), shutdown, and intake failures.
use super::*;

const SHUTTING_DOWN: &str = "421 4.3.2 Service shutting down, closing transmission channel";

#[tokio::test]
async fn new_connections_refused_while_the_gate_is_closed() {
    let server = start(settings()).await;
    let mut open = server.session().await;
    server.gate.send_replace(Availability { connections: false, ..Availability::OPEN });
    let (mut c, banner) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    assert_eq!(banner, "421 4.3.2 Service not available, closing transmission channel");
    assert_eq!(c.read_to_end().await.unwrap(), "");
    // A session already open goes on and may submit (Paused).
    expect(&open.send_message("a@example.org", &["b@local.test"], &message("paused")).await.unwrap(), "250 2.6.0");
    server.gate.send_replace(Availability::OPEN);
    server.good_message_still_accepted("reopened").await;
}

#[tokio::test]
async fn mail_refused_with_421_while_hub_transport_is_inactive() {
    let server = start(settings()).await;
    server.gate.send_replace(Availability { mail: false, ..Availability::OPEN });
    // Banner and EHLO still work.
    let mut c = server.session().await;
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "421 4.3.2 Service not active");
    assert_eq!(c.read_to_end().await.unwrap(), "");
    server.gate.send_replace(Availability::OPEN);
    server.good_message_still_accepted("active-again").await;
}

#[tokio::test]
async fn end_sessions_closes_idle_sessions_and_lets_transactions_finish() {
    let server = start(settings()).await;
    let mut idle = server.session().await;
    let mut busy = server.session().await;
    expect(&busy.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    expect(&busy.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
    server.gate.send_replace(Availability { end_sessions: true, connections: false, ..Availability::OPEN });
    assert_eq!(idle.read_reply().await.unwrap(), SHUTTING_DOWN);
    assert_eq!(idle.read_to_end().await.unwrap(), "");
    expect(&busy.cmd("DATA").await.unwrap(), "354");
    busy.send_raw(data_block(&message("last-one")).as_bytes()).await.unwrap();
    expect(&busy.read_reply().await.unwrap(), "250 2.6.0");
    assert_eq!(busy.read_reply().await.unwrap(), SHUTTING_DOWN);
    assert_eq!(server.submit.messages().len(), 1);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_sessions() {
    let server = start(settings()).await;
    let mut idle = server.session().await;
    server.shutdown.send_replace(true);
    assert_eq!(idle.read_reply().await.unwrap(), SHUTTING_DOWN);
    assert_eq!(idle.read_to_end().await.unwrap(), "");
    drop(idle);
    tokio::time::timeout(WAIT, server.task).await.expect("listener returns after shutdown").expect("no panic");
    let refused = tokio::time::timeout(WAIT, TcpStream::connect(server.addr)).await.expect("connect attempt ends");
    assert!(refused.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn storage_failure_is_452_4_3_1_and_the_session_goes_on() {
    let server = start_with(settings(), MemSubmit::new(Mode::Storage)).await;
    let mut c = server.session().await;
    assert_eq!(
        c.send_message("a@example.org", &["b@local.test"], &message("no-disk")).await.unwrap(),
        "452 4.3.1 Insufficient system storage"
    );
    assert_eq!(c.cmd("RSET").await.unwrap(), "250 2.0.0 Resetting");
    server.submit.set_mode(Mode::Store);
    expect(&c.send_message("a@example.org", &["b@local.test"], &message("disk-back")).await.unwrap(), "250 2.6.0");
    assert_eq!(server.submit.messages().len(), 1);
    server.good_message_still_accepted("after-storage").await;
}

#[tokio::test]
async fn intake_unavailable_is_421_and_close() {
    let server = start_with(settings(), MemSubmit::new(Mode::Unavailable)).await;
    let mut c = server.session().await;
    assert_eq!(
        c.send_message("a@example.org", &["b@local.test"], &message("stopped")).await.unwrap(),
        "421 4.3.2 Service not active"
    );
    assert_eq!(c.read_to_end().await.unwrap(), "");
    server.submit.set_mode(Mode::Store);
    server.good_message_still_accepted("after-unavailable").await;
}

#[tokio::test]
async fn a_panicking_session_does_not_affect_others() {
    let server = start_with(settings(), MemSubmit::new(Mode::Panic)).await;
    let mut bystander = server.session().await;
    let mut victim = server.session().await;
    expect(&victim.cmd("MAIL FROM:<a@example.org>").await.unwrap(), "250");
    expect(&victim.cmd("RCPT TO:<b@local.test>").await.unwrap(), "250");
    expect(&victim.cmd("DATA").await.unwrap(), "354");
    victim.send_raw(data_block(&message("boom")).as_bytes()).await.unwrap();
    let dropped = victim.read_reply().await.expect_err("connection dropped, no 250");
    assert!(
        matches!(dropped.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset),
        "{dropped}"
    );
    server.submit.set_mode(Mode::Store);
    expect(
        &bystander.send_message("a@example.org", &["b@local.test"], &message("bystander")).await.unwrap(),
        "250 2.6.0",
    );
    server.good_message_still_accepted("after-panic").await;
    // The panicked session's slot was released.
    for _ in 0..100 {
        if server.events.closed.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.events.closed.load(Ordering::SeqCst) >= 2);
}
