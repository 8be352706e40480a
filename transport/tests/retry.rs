//! docs/design.md §4 on a controllable clock: the whole connection-failure schedule of
//! an unreachable smart host (glitch tier, transient tier, outbound interval),
//! the one delay DSN, expiry with NDR, auto-resubmit, and a restart in the
//! middle of the schedule. Days of queue time take seconds.

use crate::support::inproc::*;
use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use transport::clock::ManualClock;
use transport::config::{RetrySettings, Role, TimeSpan, TransportFile};

const MIN: u64 = 60_000;

/// A config with one dead smart host for the world and a live mailbox hop
/// (Postfix's smtp-sink) for `local.test`, where the DSNs to alice go.
fn config(dir: &std::path::Path, smtp_port: u16, dead: u16, sink: std::net::SocketAddr) -> TransportFile {
    let setup = TransportSetup {
        server_name: Some("retry-0".into()),
        smart_host: Some(SocketAddr::from(([127, 0, 0, 1], dead))),
        mailbox: Some(sink),
        ..Default::default()
    };
    setup.config_file(&Placement {
        dir,
        smtp: SocketAddr::from(([127, 0, 0, 1], smtp_port)),
        admin: None,
        token_file: None,
    })
}

/// A port nothing listens on (connections are refused at once).
fn dead_port() -> u16 {
    free_port()
}

fn send(server: &InProc, from: &str, to: &str, rcpt_params: &str, tag: &str) {
    let (mut c, _) = SmtpClient::connect(server.smtp).expect("connect");
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).unwrap().starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>{rcpt_params}")).unwrap().starts_with("250"));
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send_raw(format!("Subject: {tag}\r\nMessage-ID: <{tag}@test.invalid>\r\n\r\nhello\r\n.\r\n").as_bytes()).unwrap();
    let reply = c.read_reply().unwrap();
    assert!(reply.starts_with("250 2.6.0"), "{reply}");
    let _ = c.cmd("QUIT");
}

/// Waits until the smart-host queue has made `attempts` failed attempts; returns (last, next) retry times.
fn wait_attempts(server: &InProc, hop: &str, attempts: u32) -> (u64, u64) {
    eventually(Duration::from_secs(10), &format!("attempt {attempts} to {hop}"), || {
        let q = server.queue(hop)?;
        if q.retry_count < attempts {
            return None;
        }
        assert_eq!(q.retry_count, attempts, "one attempt per due time: {q:?}");
        Some((ms_of(q.last_retry_time.as_deref()?), ms_of(q.next_retry_time.as_deref()?)))
    })
}

/// The DSNs at the sink, parsed: (Action, Status) of each report's first recipient.
fn dsns(sink: &Sink) -> Vec<(String, String, SinkMessage)> {
    sink.messages()
        .into_iter()
        .filter(|m| m.mail_args.starts_with("<>"))
        .map(|m| {
            let field = |name: &str| {
                m.content.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_default()
            };
            (field("Action:"), field("Status:"), m.clone())
        })
        .collect()
}

/// Walks every attempt of the schedule for `role` (with `retry` settings) up to expiry.
fn walk(
    role: Role,
    glitch_gaps: u64,
    transient_count: u64,
    transient_min: u64,
    outbound_min: u64,
    retry: RetrySettings,
) {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let clock = ManualClock::new(t0());
    let mut file = config(dir.path(), free_port(), dead, sink.addr);
    file.role = role;
    file.retry = retry;
    let server = InProc::start_file(&file, dir.path(), clock);
    let hop = format!("127.0.0.1:{dead}");
    send(&server, "alice@local.test", "bob@example.net", "", "walk");
    let start = ms(t0());

    // The immediate attempt fails: the queue is in Retry.
    let (mut last, mut next) = wait_attempts(&server, &hop, 1);
    assert_eq!(last, start, "first attempt at once");
    let (delay_at, expire_at) = (start + 240 * MIN, start + 2 * 24 * 60 * MIN);
    let mut expected = Vec::new();
    expected.extend(std::iter::repeat_n(1, glitch_gaps as usize));
    expected.extend(std::iter::repeat_n(transient_min, transient_count as usize));
    let mut attempt = 1;
    let mut delay_seen = false;
    loop {
        let gap = expected.get(attempt - 1).copied().unwrap_or(outbound_min);
        assert_eq!(next - last, gap * MIN, "gap after attempt {attempt} ({role:?})");
        if next >= expire_at {
            break;
        }
        if !delay_seen && next > delay_at {
            // One second before the delay timeout: no DSN yet; at it: the delay DSN.
            server.set_time(at_ms(delay_at - 1000));
            std::thread::sleep(Duration::from_millis(300));
            assert!(dsns(&sink).is_empty(), "no DSN before delayNotificationTimeOut");
            server.set_time(at_ms(delay_at));
            let got = eventually(Duration::from_secs(20), "the delay DSN", || {
                let d = dsns(&sink);
                (!d.is_empty()).then_some(d)
            });
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].0.as_str(), got[0].1.as_str()), ("delayed", "4.4.7"));
            assert!(got[0].2.content.contains("Will-Retry-Until:"), "{}", got[0].2.content);
            delay_seen = true;
        }
        server.set_time(at_ms(next));
        attempt += 1;
        (last, next) = wait_attempts(&server, &hop, attempt as u32);
        assert_eq!(last, next_before(&expected, attempt, start, outbound_min), "attempt {attempt} time");
    }
    assert!(delay_seen);
    // Expiry: NDR with 4.4.7, the message leaves the queue.
    server.set_time(at_ms(expire_at));
    let got = eventually(Duration::from_secs(20), "the NDR", || {
        let d = dsns(&sink);
        (d.len() >= 2).then_some(d)
    });
    let ndr = got.iter().find(|d| d.0 == "failed").expect("a failed report");
    assert_eq!(ndr.1, "4.4.7");
    assert!(ndr.2.content.contains("QUEUE.Expired"), "{}", ndr.2.content);
    eventually(Duration::from_secs(10), "the queue empty", || (server.queue(&hop)?.message_count == 0).then_some(()));
    assert_eq!(dsns(&sink).len(), 2, "exactly one delay DSN and one NDR");
}

/// When attempt `n` (1-based) is due, from the schedule.
fn next_before(gaps: &[u64], n: usize, start: u64, outbound: u64) -> u64 {
    start + (1..n).map(|i| gaps.get(i - 1).copied().unwrap_or(outbound)).sum::<u64>() * MIN
}

#[test]
fn mailbox_role_default_schedule_delay_dsn_and_expiry() {
    walk(Role::Mailbox, 4, 6, 5, 10, RetrySettings::default());
}

#[test]
fn edge_role_default_schedule_delay_dsn_and_expiry() {
    walk(Role::Edge, 4, 6, 10, 30, RetrySettings::default());
}

#[test]
fn non_default_schedule() {
    let retry = RetrySettings {
        queue_glitch_retry_count: Some(2),
        queue_glitch_retry_interval: Some(TimeSpan::from_mins(1)),
        transient_failure_retry_count: Some(3),
        transient_failure_retry_interval: Some(TimeSpan::from_mins(7)),
        outbound_connection_failure_retry_interval: Some(TimeSpan::from_mins(45)),
        ..Default::default()
    };
    walk(Role::Mailbox, 2, 3, 7, 45, retry);
}

#[test]
fn restart_mid_schedule_keeps_counters_and_sends_no_second_delay_dsn() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let mut file = config(dir.path(), free_port(), dead, sink.addr);
    file.expiration.delay_notification_time_out = Some(TimeSpan::from_mins(40));
    let mut server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    let hop = format!("127.0.0.1:{dead}");
    send(&server, "alice@local.test", "bob@example.net", "", "restart");
    let (_, mut next) = wait_attempts(&server, &hop, 1);
    // Walk through the glitch and transient tiers, past the delay DSN (40 min):
    // attempt 12 is at +44 min.
    for attempt in 2..=12 {
        server.set_time(at_ms(next));
        (_, next) = wait_attempts(&server, &hop, attempt);
    }
    let delayed = eventually(Duration::from_secs(20), "the delay DSN", || {
        let d = dsns(&sink);
        (d.len() == 1).then_some(d)
    });
    assert_eq!(delayed[0].0, "delayed");
    let before = server.queue(&hop).unwrap();

    server.restart();
    let after = eventually(Duration::from_secs(10), "the queue after restart", || server.queue(&hop));
    assert_eq!(after.retry_count, before.retry_count, "retry count kept");
    assert_eq!(after.next_retry_time, before.next_retry_time, "next retry time kept");
    assert_eq!(after.identity, before.identity, "same queue identity");
    assert_eq!(after.message_count, 1);
    // No attempt before the scheduled time, the scheduled one happens, no second delay DSN.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.queue(&hop).unwrap().retry_count, before.retry_count);
    server.set_time(at_ms(next));
    wait_attempts(&server, &hop, before.retry_count + 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dsns(&sink).len(), 1, "still exactly one delay DSN");
}

#[test]
fn queue_stuck_in_retry_is_resubmitted_and_reaches_a_new_route() {
    let sink = Sink::start();
    let new_route = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let smtp_port = free_port();
    let mut file = config(dir.path(), smtp_port, dead, sink.addr);
    file.retry.max_idle_time_before_resubmit = Some(TimeSpan::from_hours(1));
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    let hop = format!("127.0.0.1:{dead}");
    send(&server, "alice@local.test", "bob@example.net", "", "resubmit");
    wait_attempts(&server, &hop, 1);

    // The old connector goes away; a new one routes the world to a live host.
    let mut replaced = file.clone();
    replaced.send_connectors[0].name = "Replacement".into();
    replaced.send_connectors[0].smart_hosts = vec![new_route.addr.to_string()];
    server.reload_file(&replaced);
    // The old queue keeps trying its old hop until maxIdleTimeBeforeResubmit.
    server.set_time(at_ms(ms(t0()) + 30 * MIN));
    std::thread::sleep(Duration::from_millis(500));
    assert!(new_route.messages().is_empty(), "not before the resubmit");
    assert_eq!(server.queue(&hop).unwrap().message_count, 1);

    server.set_time(at_ms(ms(t0()) + 60 * MIN));
    let got = new_route.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<resubmit@test.invalid>"));
    eventually(Duration::from_secs(10), "the old queue empty", || {
        server.queue(&hop).is_none_or(|q| q.message_count == 0).then_some(())
    });
}

#[test]
fn mailbox_hops_retry_on_their_own_interval() {
    let dir = tempfile::tempdir().unwrap();
    let dead_mailbox: std::net::SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    let world = Sink::start();
    let mut file = config(dir.path(), free_port(), world.addr.port(), dead_mailbox);
    file.retry.mailbox_delivery_queue_retry_interval = Some(TimeSpan::from_mins(7));
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    send(&server, "carol@example.org", "bob@local.test", "", "mailbox");
    let hop = dead_mailbox.to_string();
    let (mut last, mut next) = wait_attempts(&server, &hop, 1);
    // Not the glitch/transient tiers: every gap is mailboxDeliveryQueueRetryInterval.
    for attempt in 2..=8 {
        assert_eq!(next - last, 7 * MIN, "gap before attempt {attempt}");
        server.set_time(at_ms(next));
        (last, next) = wait_attempts(&server, &hop, attempt);
    }
    assert_eq!(server.queue(&hop).unwrap().delivery_type, transport::api::DeliveryType::SmtpDeliveryToMailbox);
}

#[test]
fn a_4xx_on_a_working_connection_retries_the_message_not_the_queue() {
    let soft = Sink::start_with(&["-r", "RCPT"]);
    let mailbox = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), free_port(), soft.addr.port(), mailbox.addr);
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    send(&server, "alice@local.test", "bob@example.net", "", "soft");
    let hop = soft.addr.to_string();
    let manager = || server.server().queue_manager().messages(&all_messages(None)).unwrap().rows;
    let row = eventually(Duration::from_secs(10), "the message in Retry", || {
        manager().into_iter().find(|m| m.status == transport::api::MessageStatus::Retry && m.retry_count == 1)
    });
    assert!(row.last_error.as_deref().is_some_and(|e| e.starts_with("450")), "{row:?}");
    let q = server.queue(&hop).unwrap();
    assert_eq!(q.retry_count, 0, "the connection worked: the queue is not in Retry ({q:?})");
    // messageRetryInterval (15 min) later, one more attempt.
    server.set_time(at_ms(ms(t0()) + 15 * MIN - 1000));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(manager()[0].retry_count, 1);
    server.set_time(at_ms(ms(t0()) + 15 * MIN));
    eventually(Duration::from_secs(10), "the second attempt", || (manager()[0].retry_count == 2).then_some(()));
}

#[test]
fn unreachable_is_resubmitted_when_routing_changes() {
    let sink = Sink::start();
    let mailbox = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut file = config(dir.path(), free_port(), sink.addr.port(), mailbox.addr);
    file.send_connectors[0].address_spaces[0].domain = "example.com".into();
    let server = InProc::start_file(&file, dir.path(), ManualClock::new(t0()));
    send(&server, "alice@local.test", "bob@example.net", "", "unroutable");
    let unreachable = eventually(Duration::from_secs(10), "the Unreachable queue", || {
        server.queues().into_iter().find(|q| q.id == "Unreachable" && q.message_count == 1)
    });
    assert_eq!(unreachable.next_hop_domain, "Unreachable Domain");
    let row = &server.server().queue_manager().messages(&all_messages(Some("Unreachable"))).unwrap().rows[0];
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("example.net")), "{row:?}");
    // A connector for the domain appears: the Unreachable queue goes through routing again.
    file.send_connectors[0].address_spaces[0].domain = "*.net".into();
    server.reload_file(&file);
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].header("Message-ID").as_deref(), Some("<unroutable@test.invalid>"));
}
