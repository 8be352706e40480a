//! Safety Net (docs/design.md §9): delivered messages stay on the server, out of the
//! queue, for safetyNetHoldTime; a resubmit request (Add-ResubmitRequest) delivers those
//! of a time window again, to one next hop if asked; then they go. On a test clock: two
//! days in milliseconds. Real peers: two smtp-sinks as next hops.

use crate::support::inproc::*;
use crate::support::*;
use std::time::Duration;
use transport::api::ResubmitRequest;
use transport::client::ClientError;
use transport::clock::{rfc3339, Clock, ManualClock};
use transport::config::{TimeSpan, TransportFile};

/// The world through Outbound, partner.test through Partner; the admin API on a free port.
fn config(dir: &std::path::Path, world: std::net::SocketAddr, partner: std::net::SocketAddr) -> TransportFile {
    let setup = TransportSetup { server_name: Some("net-0".into()), smart_host: Some(world), ..Default::default() };
    let mut file = setup.config_file(&Placement { dir, smtp: free_addr(), admin: Some(free_addr()), token_file: None });
    file.log_directory = None;
    file.receive_connectors[0].settings.remote_ip_ranges.clear();
    let mut to_partner = file.send_connectors[0].clone();
    to_partner.name = "Partner".into();
    to_partner.address_spaces[0].domain = "partner.test".into();
    to_partner.smart_hosts = vec![partner.to_string()];
    file.send_connectors.push(to_partner);
    file
}

fn send(server: &InProc, id: &str, to: &[&str], lines: usize) {
    let (mut c, _) = SmtpClient::connect(server.smtp).expect("connect");
    c.cmd("EHLO client.test").unwrap();
    let reply = c.send_message("alice@example.org", to, &test_message(id, lines)).unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    let _ = c.cmd("QUIT");
}

fn admin(server: &InProc) -> transport::client::AdminClient {
    let addr = server.server().admin_addr().expect("admin API");
    transport::client::AdminClient::new(&format!("http://{addr}"), None).unwrap()
}

fn count(sink: &Sink, id: &str) -> usize {
    sink.message_ids().get(&format!("<{id}@test.invalid>")).copied().unwrap_or(0)
}

#[test]
fn delivered_mail_is_kept_for_the_hold_time_and_resubmitted_on_request() {
    let (world, partner) = (Sink::start(), Sink::start());
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let mut server = InProc::start_file(&config(dir.path(), world.addr, partner.addr), dir.path(), clock.clone());
    send(&server, "both", &["bob@example.net", "carol@partner.test"], 3);
    // Large enough to be spooled to a file of its own.
    send(&server, "large", &["bob@example.net"], 8_000);
    send(&server, "partner-only", &["dave@partner.test"], 3);
    world.wait_for(2, Duration::from_secs(30));
    partner.wait_for(2, Duration::from_secs(30));

    // Out of the queue, in the Safety Net, bodies where they were.
    let store = |server: &InProc| server.server().queue_manager().store().clone();
    eventually(Duration::from_secs(10), "three messages in the Safety Net", || {
        let s = store(&server);
        (s.is_empty() && s.retired_len() == 3).then_some(())
    });
    let spool = dir.path().join("queue").join("spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1, "the large body is kept");
    let info = server.server().info();
    assert_eq!((info.totals.messages, info.totals.safety_net_messages), (0, 3));

    // A restart keeps them, and does not deliver them again.
    server.restart();
    assert_eq!((store(&server).len(), store(&server).retired_len()), (0, 3));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((world.messages().len(), partner.messages().len()), (2, 2), "nothing delivered twice");

    // A mailbox server behind the partner hop was restored from a backup: resubmit what
    // went there in the last hour; the world hop gets nothing again.
    let request = ResubmitRequest {
        start_time: rfc3339(clock.now() - Duration::from_secs(3600)),
        end_time: rfc3339(clock.now()),
        destination: Some(partner.addr.to_string()),
    };
    let client = admin(&server);
    let done = server.block_on(client.resubmit(&request)).expect("resubmit");
    assert_eq!(done.resubmitted, 2, "both and partner-only");
    eventually(Duration::from_secs(30), "both and partner-only at the partner again", || {
        (count(&partner, "both") == 2 && count(&partner, "partner-only") == 2).then_some(())
    });
    let again = partner.messages().into_iter().filter(|m| m.content.contains("test both")).count();
    assert_eq!(again, 2);
    let carol_only = partner.messages().iter().all(|m| m.rcpt_args.iter().all(|r| !r.contains("bob@")));
    assert!(carol_only, "only the recipients routed to the partner hop");
    assert_eq!(world.messages().len(), 2, "the world hop gets nothing again");

    // Outside the window: nothing. A window that ends before it starts: refused.
    let earlier = ResubmitRequest {
        start_time: rfc3339(t0() - Duration::from_secs(7200)),
        end_time: rfc3339(t0() - Duration::from_secs(3600)),
        destination: None,
    };
    assert_eq!(server.block_on(client.resubmit(&earlier)).unwrap().resubmitted, 0);
    let reversed = ResubmitRequest {
        start_time: request.end_time.clone(),
        end_time: request.start_time.clone(),
        destination: None,
    };
    match server.block_on(client.resubmit(&reversed)) {
        Err(ClientError::Status { status: 400, message }) => assert!(message.contains("endTime is before startTime")),
        other => panic!("expected 400, got {other:?}"),
    }
    let bad = ResubmitRequest { start_time: "yesterday".into(), ..request.clone() };
    match server.block_on(client.resubmit(&bad)) {
        Err(ClientError::Status { status: 400, message }) => assert!(message.contains("startTime"), "{message}"),
        other => panic!("expected 400, got {other:?}"),
    }

    // Two days later the Safety Net has let everything go, the spooled body too.
    eventually(Duration::from_secs(10), "the resubmitted copies in the Safety Net", || {
        (store(&server).retired_len() == 5).then_some(())
    });
    clock.advance(Duration::from_secs(2 * 86400 + 11 * 60));
    eventually(Duration::from_secs(10), "an empty Safety Net", || (store(&server).retired_len() == 0).then_some(()));
    eventually(Duration::from_secs(10), "an empty spool folder", || {
        (std::fs::read_dir(&spool).unwrap().count() == 0).then_some(())
    });
}

#[test]
fn with_a_hold_time_of_zero_nothing_is_kept() {
    let (world, partner) = (Sink::start(), Sink::start());
    let dir = tempfile::tempdir().unwrap();
    let mut file = config(dir.path(), world.addr, partner.addr);
    file.transport_config.safety_net_hold_time = Some(TimeSpan::from_secs(0));
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    send(&server, "gone", &["bob@example.net"], 8_000);
    world.wait_for(1, Duration::from_secs(30));
    let store = server.server().queue_manager().store().clone();
    eventually(Duration::from_secs(10), "an empty store", || store.is_empty().then_some(()));
    assert_eq!(store.retired_len(), 0);
    let spool = dir.path().join("queue").join("spool");
    eventually(Duration::from_secs(10), "an empty spool folder", || {
        (std::fs::read_dir(&spool).unwrap().count() == 0).then_some(())
    });
}
