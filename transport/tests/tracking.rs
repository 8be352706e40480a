//! The message tracking log (docs/design.md §5, §8) followed the way an administrator
//! asks Get-MessageTrackingLog: real messages through real peers (smtp-sink as next hop
//! and mailbox hop, a second transport server as redirect target), time on a manual
//! clock so retries and expiry take seconds, and the search through the admin API and
//! `transportctl get-messagetrackinglog`.

use crate::support::inproc::*;
use crate::support::*;
use std::process::Command;
use std::time::Duration;
use transport::api::{TrackingEvent, TrackingQuery, TrackingRecord};
use transport::clock::ManualClock;
use transport::config::TimeSpan;

const MIN: u64 = 60_000;

/// A server whose smart host is `smart_host` and whose mailbox hop (local.test) is
/// `mailbox`, with the logs in its folder.
fn server(
    dir: &std::path::Path,
    name: &str,
    smart_host: std::net::SocketAddr,
    mailbox: std::net::SocketAddr,
) -> InProc {
    let setup = TransportSetup {
        server_name: Some(name.into()),
        smart_host: Some(smart_host),
        mailbox: Some(mailbox),
        ..Default::default()
    };
    let mut file = setup.config_file(&Placement { dir, smtp: free_addr(), admin: None, token_file: None });
    file.retry.message_retry_interval = Some(TimeSpan::from_mins(5));
    file.retry.transient_failure_retry_count = Some(0);
    file.fqdn = format!("{name}.test.invalid");
    file.send_connectors[0].name = "Internet".into();
    InProc::start_file(&file, dir, ManualClock::new(t0()))
}

fn search(server: &InProc, query: TrackingQuery) -> Vec<TrackingRecord> {
    server.server().queue_manager().tracking().search(&query).expect("search")
}

fn by_message_id(server: &InProc, tag: &str) -> Vec<TrackingRecord> {
    search(server, TrackingQuery { message_id: Some(format!("<{tag}@test.invalid>")), ..Default::default() })
}

fn events(records: &[TrackingRecord]) -> Vec<TrackingEvent> {
    records.iter().map(|r| r.event_id).collect()
}

/// Waits until the message's records end with `last`.
fn wait_events(server: &InProc, tag: &str, last: TrackingEvent) -> Vec<TrackingRecord> {
    eventually(Duration::from_secs(20), &format!("{tag}: a {} record", last.as_str()), || {
        let found = by_message_id(server, tag);
        (found.last().map(|r| r.event_id) == Some(last)).then_some(found)
    })
}

#[test]
fn delivered_deferred_then_delivered_and_bounced_messages_tell_their_story() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Sink::start();
    // The smart host refuses every recipient for now (4xx), later it takes them.
    let port = free_port();
    let mut refusing = Sink::start_on(port, &["-r", "RCPT"]);
    let smart: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = server(dir.path(), "track-0", smart, mailbox.addr);

    // To the mailbox hop: RECEIVE, then DELIVER with the hop's reply.
    s.send("alice@example.org", &["bob@local.test"], "local");
    let local = wait_events(&s, "local", TrackingEvent::Deliver);
    assert_eq!(events(&local), [TrackingEvent::Receive, TrackingEvent::Deliver]);
    let receive = &local[0];
    assert_eq!(receive.source, "SMTP");
    assert_eq!(receive.connector_id.as_deref(), Some("Default"));
    assert_eq!(receive.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(receive.client_hostname.as_deref(), Some("client.test"));
    assert_eq!(receive.server_hostname.as_deref(), Some("track-0.test.invalid"));
    assert_eq!(
        (receive.sender.as_str(), receive.recipients.as_slice()),
        ("alice@example.org", &["bob@local.test".to_string()][..])
    );
    assert!(receive.total_bytes > 0);
    let deliver = &local[1];
    assert_eq!(deliver.internal_message_id, receive.internal_message_id);
    assert_eq!(deliver.server_ip.as_deref(), Some("127.0.0.1"));
    assert!(deliver.recipient_status[0].starts_with("250"), "{deliver:?}");
    assert_eq!(mailbox.wait_for(1, Duration::from_secs(10)).len(), 1);

    // Out through the smart host: refused for now (DEFER with the 4xx), delivered after the
    // message retry interval (SEND).
    s.send("alice@example.org", &["carol@example.com"], "later");
    let deferred = wait_events(&s, "later", TrackingEvent::Defer);
    assert!(deferred[1].recipient_status[0].starts_with('4'), "{:?}", deferred[1]);
    assert_eq!(deferred[1].connector_id.as_deref(), Some("Internet"));
    refusing.stop();
    let _accepting = Sink::start_on(port, &[]);
    s.set_time(at_ms(ms(t0()) + 6 * MIN));
    let later = wait_events(&s, "later", TrackingEvent::Send);
    assert_eq!(events(&later), [TrackingEvent::Receive, TrackingEvent::Defer, TrackingEvent::Send]);
    assert!(later[2].recipient_status[0].starts_with("250"), "{:?}", later[2]);
    assert!(later[2].source_context.is_some(), "SEND names the connectivity log's session");

    // Filters an administrator combines.
    let to_carol = search(&s, TrackingQuery { recipients: vec!["CAROL@example.com".into()], ..Default::default() });
    assert_eq!(events(&to_carol), [TrackingEvent::Receive, TrackingEvent::Defer, TrackingEvent::Send]);
    let sends = search(
        &s,
        TrackingQuery {
            sender: Some("alice@example.org".into()),
            event_id: Some(TrackingEvent::Send),
            ..Default::default()
        },
    );
    assert_eq!(sends.len(), 1);
    // The time window: only what happened once the clock had moved on (the SEND).
    let window =
        TrackingQuery { start: Some(transport::clock::rfc3339(at_ms(ms(t0()) + 5 * MIN))), ..Default::default() };
    assert_eq!(events(&search(&s, window)), [TrackingEvent::Send]);
}

#[test]
fn a_bounced_message_records_the_hops_refusal_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Sink::start();
    // The next hop refuses every recipient for good (5xx).
    let refusing = Sink::start_with(&["-f", "RCPT"]);
    let s = server(dir.path(), "track-2", refusing.addr, mailbox.addr);
    s.send("kim@local.test", &["lee@example.com"], "bounced");
    let bounced = wait_events(&s, "bounced", TrackingEvent::Dsn);
    assert_eq!(events(&bounced), [TrackingEvent::Receive, TrackingEvent::Fail, TrackingEvent::Dsn]);
    let fail = &bounced[1];
    assert_eq!((fail.source.as_str(), fail.connector_id.as_deref()), ("SMTP", Some("Internet")));
    assert!(fail.recipient_status[0].starts_with('5'), "the hop's reply: {fail:?}");
    assert_eq!(fail.server_ip.as_deref(), Some("127.0.0.1"));
    let dsn = &bounced[2];
    assert_eq!(
        (dsn.recipients.as_slice(), dsn.message_info.as_deref()),
        (&["kim@local.test".to_string()][..], Some("failed"))
    );
    // The NDR reaches the sender's mailbox, and its own record says so.
    let report_id = dsn.message_id.clone().expect("the report's Message-ID");
    eventually(Duration::from_secs(20), "the NDR delivered", || {
        let q = TrackingQuery {
            message_id: Some(report_id.clone()),
            event_id: Some(TrackingEvent::Deliver),
            ..Default::default()
        };
        search(&s, q).into_iter().next()
    });
    assert_eq!(mailbox.wait_for(1, Duration::from_secs(10)).len(), 1);
}

#[test]
fn removed_dropped_and_expired_messages_and_their_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = Sink::start();
    // Nobody listens at the smart host: what goes there stays queued (Retry).
    let nowhere: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = server(dir.path(), "track-1", nowhere, mailbox.addr);
    for tag in ["removed", "dropped", "old"] {
        s.send("frank@local.test", &["grace@example.com"], tag);
    }
    eventually(Duration::from_secs(10), "the queue in Retry", || {
        s.queues().iter().any(|q| q.last_error.is_some()).then_some(())
    });
    let id = |tag: &str| by_message_id(&s, tag)[0].internal_message_id;

    // Remove-Message -WithNDR: FAIL by ADMIN, then the report, found by the original's
    // Message-ID (its reference) and then by its own to the mailbox hop.
    s.block_on(s.server().queue_manager().remove_message(id("removed"), true)).expect("remove");
    let removed = wait_events(&s, "removed", TrackingEvent::Dsn);
    assert_eq!(events(&removed), [TrackingEvent::Receive, TrackingEvent::Fail, TrackingEvent::Dsn]);
    assert_eq!(removed[1].source, "ADMIN");
    assert_eq!(removed[1].recipients, ["grace@example.com"]);
    let dsn = &removed[2];
    assert_eq!(dsn.source, "DSN");
    assert_eq!(dsn.reference.as_deref(), Some("<removed@test.invalid>"));
    assert_eq!(dsn.recipients, ["frank@local.test"]);
    assert_eq!(dsn.message_info.as_deref(), Some("failed"));
    assert_eq!(dsn.sender, "", "a report has the null sender");
    let report_id = dsn.message_id.clone().expect("a report has a Message-ID");
    let report = eventually(Duration::from_secs(20), "the report delivered", || {
        let q = TrackingQuery {
            message_id: Some(report_id.clone()),
            event_id: Some(TrackingEvent::Deliver),
            ..Default::default()
        };
        search(&s, q).into_iter().next()
    });
    assert_eq!(report.recipients, ["frank@local.test"]);

    // Remove-Message without an NDR: DROP, and no report.
    s.block_on(s.server().queue_manager().remove_message(id("dropped"), false)).expect("remove");
    let dropped = wait_events(&s, "dropped", TrackingEvent::Drop);
    assert_eq!(events(&dropped), [TrackingEvent::Receive, TrackingEvent::Drop]);

    // The last one waits: after 4 h a delay report (DSN "delayed"), after 12 h idle its queue
    // is resubmitted (RESUBMIT by QUEUE), after two days it expires: EXPIRE and its report.
    let hour = 60 * MIN;
    s.set_time(at_ms(ms(t0()) + 5 * hour));
    wait_events(&s, "old", TrackingEvent::Dsn);
    s.set_time(at_ms(ms(t0()) + 13 * hour));
    wait_events(&s, "old", TrackingEvent::Resubmit);
    s.set_time(at_ms(ms(t0()) + 48 * hour + MIN));
    let old = wait_events(&s, "old", TrackingEvent::Dsn);
    // (Its queue stays idle, so it is resubmitted again every 12 h until it expires.)
    let mut story = events(&old);
    story.dedup();
    assert_eq!(
        story,
        [
            TrackingEvent::Receive,
            TrackingEvent::Dsn,
            TrackingEvent::Resubmit,
            TrackingEvent::Expire,
            TrackingEvent::Dsn
        ]
    );
    assert_eq!(old[1].message_info.as_deref(), Some("delayed"));
    assert_eq!(old[2].source, "QUEUE");
    let (expire, report) = (&old[old.len() - 2], &old[old.len() - 1]);
    assert_eq!(expire.source, "QUEUE");
    assert!(expire.recipient_status[0].contains("4.4.7"), "{expire:?}");
    assert_eq!(report.message_info.as_deref(), Some("failed"));
    let reports = mailbox.wait_for(3, Duration::from_secs(20));
    assert_eq!(reports.len(), 3, "the removal's report, the delay and the expiry reports; none for the drop");
}

#[test]
fn a_redirected_message_is_followed_from_server_to_server() {
    let sink = Sink::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nowhere: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let a = server(dir_a.path(), "mail-0", nowhere, sink.addr);
    let b = server(dir_b.path(), "mail-1", sink.addr, sink.addr);
    a.send("henry@example.org", &["ivan@example.com"], "moved");
    eventually(Duration::from_secs(10), "the queue in Retry", || {
        a.queues().iter().any(|q| q.last_error.is_some()).then_some(())
    });
    // Maintenance on mail-0: its queue is handed to mail-1 (Redirect-Message).
    a.block_on(async { a.server().queue_manager().redirect(&b.smtp.to_string()) }).expect("redirect");
    let on_a = wait_events(&a, "moved", TrackingEvent::Redirect);
    assert_eq!(events(&on_a), [TrackingEvent::Receive, TrackingEvent::Redirect]);
    assert_eq!(on_a[1].source, "ADMIN");
    assert_eq!(on_a[1].server_ip.as_deref(), Some("127.0.0.1"));
    let on_b = wait_events(&b, "moved", TrackingEvent::Send);
    assert_eq!(events(&on_b), [TrackingEvent::Receive, TrackingEvent::Send]);
    assert_eq!(on_b[0].client_hostname.as_deref(), Some("mail-0.test.invalid"), "mail-1 received it from mail-0");
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).len(), 1, "delivered once");
}

#[test]
fn transportctl_searches_a_running_servers_log() {
    let sink = Sink::start();
    let t = start_transport(&TransportSetup {
        smart_host: Some(sink.addr),
        admin: true,
        token: Some("s3cret".into()),
        ..Default::default()
    });
    // A real client: swaks.
    let swaks = tool("swaks", "swaks");
    for (tag, to) in [("one", "x@example.com"), ("two", "y@example.net")] {
        let out = Command::new(&swaks)
            .args(["--server", &t.smtp.to_string(), "--from", "judy@example.org", "--to", to])
            .args(["--header", &format!("Message-Id: <{tag}@swaks.test>"), "--silent", "2"])
            .output()
            .expect("swaks");
        assert!(out.status.success(), "swaks: {}", String::from_utf8_lossy(&out.stderr));
    }
    sink.wait_for(2, Duration::from_secs(20));
    let token = t.dir.join("token");
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_transportctl"))
            .args(["--admin", &format!("http://{}", t.admin.unwrap()), "--token-file"])
            .arg(&token)
            .args(args)
            .output()
            .expect("transportctl")
    };
    let records = eventually(Duration::from_secs(10), "two SEND records", || {
        let out = ctl(&["get-messagetrackinglog", "--event-id", "send", "-o", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let records: Vec<TrackingRecord> = serde_json::from_slice(&out.stdout).expect("JSON records");
        (records.len() == 2).then_some(records)
    });
    assert_eq!(records[0].message_id.as_deref(), Some("<one@swaks.test>"));
    assert!(records.iter().all(|r| r.connector_id.as_deref() == Some("Outbound")));

    let out =
        ctl(&["get-messagetrackinglog", "--message-id", "two@swaks.test", "--recipients", "nobody@x,Y@example.net"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("Timestamp") && lines[0].contains("EventId"), "{table}");
    assert_eq!(lines.len(), 4, "header, rule, RECEIVE and SEND: {table}");
    assert!(lines[2].contains("RECEIVE") && lines[3].contains("SEND"), "{table}");

    // A bad filter is a clear error naming it, not an empty answer.
    let out = ctl(&["get-messagetrackinglog", "--start", "yesterday"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start") && err.contains("RFC 3339"), "{err}");

    // Through a Kubernetes API server's pod proxy the token travels in X-Transport-Token.
    let url = format!("http://{}/v1/messagetracking?eventId=RECEIVE", t.admin.unwrap());
    let (status, body) = block_on(async {
        let resp = reqwest::Client::new().get(&url).header("x-transport-token", "s3cret").send().await.expect("GET");
        (resp.status(), resp.text().await.unwrap_or_default())
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Vec<TrackingRecord>>(&body).expect("records").len(), 2);
    let status = block_on(async { reqwest::get(&url).await.expect("GET").status() });
    assert_eq!(status, 401, "no token, no records");
}
