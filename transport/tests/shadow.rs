//! Shadow redundancy with real processes: three servers of one "service" on
//! loopback, Postfix's smtp-sink as the next hop. A server that is killed
//! (SIGKILL) and loses its queue folder loses no message it answered `250`
//! for: its peers' shadow copies are delivered instead.

use crate::support::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::api::{DeliveryType, QueueInfo, TrackingEvent, TrackingQuery, TrackingRecord};
use transport::config::{ShadowChannel, ShadowPeer, TimeSpan};

const TOKEN: &str = "peers-of-the-test-service";

/// Servers `test-a`, `test-b`, ... each with a shadow channel on loopback and
/// every other server as a peer; the smart host is `hop` (up or not).
struct Service {
    servers: Vec<TransportProcess>,
    /// Each server's shadow channel.
    channels: Vec<SocketAddr>,
    _token_dir: tempfile::TempDir,
}

/// A shadow channel on `bind` with the service's token in `token_file`, offering copies
/// to `peers` (name, channel) in that order.
fn shadow_channel<'a>(
    bind: SocketAddr,
    token_file: &Path,
    peers: impl IntoIterator<Item = (&'a str, SocketAddr)>,
) -> ShadowChannel {
    let peers = peers
        .into_iter()
        .map(|(name, channel)| ShadowPeer { name: name.into(), address: channel.to_string(), leaving: false })
        .collect();
    ShadowChannel { bind, token_file: token_file.to_path_buf(), peers }
}

impl Service {
    fn start(count: usize, hop: SocketAddr) -> Service {
        let names: Vec<String> = (0..count).map(|i| format!("test-{}", (b'a' + i as u8) as char)).collect();
        let channels: Vec<SocketAddr> =
            (0..count).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("peer-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let servers = (0..count)
            .map(|i| {
                let peers = (1..count).map(|step| (i + step) % count).map(|j| (names[j].as_str(), channels[j]));
                let shadow = shadow_channel(channels[i], &token_file, peers);
                start_transport(&TransportSetup {
                    server_name: Some(names[i].clone()),
                    smart_host: Some(hop),
                    admin: true,
                    edit: edit(move |f| {
                        f.retry = retry_every(1);
                        f.transport_config.shadow_heartbeat_frequency = Some(TimeSpan::from_secs(1));
                        f.shadow = Some(shadow.clone());
                    }),
                    ..Default::default()
                })
            })
            .collect();
        Service { servers, channels, _token_dir: token_dir }
    }

    fn queues(server: &TransportProcess) -> Vec<QueueInfo> {
        server.admin(|c| async move { c.queues().await.expect("Get-Queue") })
    }

    /// Shadow copies held over every server, by primary.
    fn shadow_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for s in &self.servers {
            for q in Self::queues(s).into_iter().filter(|q| q.delivery_type == DeliveryType::ShadowRedundancy) {
                *counts.entry(q.next_hop_domain).or_default() += q.message_count;
            }
        }
        counts
    }
}

/// Sends `count` messages to `addr` from `threads` clients; every tenth is
/// large enough to be spooled to a file. Returns the Message-IDs answered 250.
fn send_tracked(addr: SocketAddr, threads: usize, count: usize, tag: &str) -> Vec<String> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (acked, tag) = (acked.clone(), tag.to_string());
            std::thread::spawn(move || {
                let (mut c, _) = SmtpClient::connect(addr).expect("connect");
                c.cmd("EHLO tracker.test").expect("EHLO");
                for n in 0..count / threads {
                    let id = format!("{tag}-{t}-{n}");
                    let lines = if n % 10 == 0 { 8_000 } else { 10 };
                    let reply = c
                        .send_message("tracker@example.org", &["tracked@example.net"], &test_message(&id, lines))
                        .expect("send");
                    assert!(reply.starts_with("250"), "message {id} refused: {reply}");
                    acked.lock().unwrap().push(format!("<{id}@test.invalid>"));
                }
                let _ = c.cmd("QUIT");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("sender");
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn wait_no_shadows(service: &Service, within: Duration) {
    eventually(within, "no shadow copy left on any server", || {
        service.servers.iter().all(|s| s.metric("transport_shadow_messages") == Some(0.0)).then_some(())
    });
}

fn delete_queue(dir: &Path) {
    std::fs::remove_dir_all(dir.join("queue")).expect("delete the queue folder");
}

#[test]
fn a_server_killed_with_its_disk_loses_no_acknowledged_message() {
    // The next hop is down while the mail is taken: it all waits in A's queue.
    let hop_port = free_port();
    let hop: SocketAddr = format!("127.0.0.1:{hop_port}").parse().unwrap();
    let mut service = Service::start(3, hop);
    let acked = send_tracked(service.servers[0].smtp, 4, 120, "lost-disk");
    assert_eq!(acked.len(), 120);

    // Every acknowledged message has one copy on B or C, shown as a shadow
    // queue whose next hop is A; the copies are spread over both peers.
    let counts = service.shadow_counts();
    assert_eq!(counts.get("test-a"), Some(&120), "shadow queues: {counts:?}");
    for peer in &service.servers[1..] {
        let shadows: Vec<_> =
            Service::queues(peer).into_iter().filter(|q| q.delivery_type == DeliveryType::ShadowRedundancy).collect();
        assert_eq!(shadows.len(), 1, "one shadow queue for A on each peer: {shadows:?}");
        assert!(shadows[0].identity.contains("\\Shadow\\"), "Exchange identity: {}", shadows[0].identity);
        assert!(shadows[0].message_count > 0, "copies are spread over the peers: {shadows:?}");
    }
    let a = &mut service.servers[0];
    assert_eq!(a.metric("transport_queue_stored_messages"), Some(120.0));

    // The node dies with its disk; the pod comes back with an empty volume.
    a.kill();
    delete_queue(&a.dir);
    a.spawn();
    let sink = Sink::start_on(hop_port, &[]);

    let arrived = eventually(Duration::from_secs(90), "every acknowledged message at the sink", || {
        let ids = sink.message_ids();
        acked.iter().all(|id| ids.contains_key(id)).then_some(ids)
    });
    // Each was taken over once (A's new queue had none of them): no duplicate.
    let duplicates: Vec<_> = arrived.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered more than once: {duplicates:?}");
    assert_eq!(arrived.len(), acked.len(), "only the acknowledged messages arrive");
    wait_no_shadows(&service, Duration::from_secs(30));
    let resubmitted: f64 =
        service.servers[1..].iter().map(|s| s.metric("transport_shadow_resubmitted_total").unwrap_or(0.0)).sum();
    assert_eq!(resubmitted, 120.0);
    // Each peer's tracking log names what it queued from its copies (HARESUBMIT).
    let haresubmits: usize = service.servers[1..]
        .iter()
        .map(|s| {
            let q = TrackingQuery { event_id: Some(TrackingEvent::HaResubmit), ..Default::default() };
            tracking(s, q).len()
        })
        .sum();
    assert_eq!(haresubmits, 120);
}

#[test]
fn copies_are_dropped_once_the_primary_has_delivered() {
    let sink = Sink::start();
    let service = Service::start(2, sink.addr);
    let acked = send_tracked(service.servers[0].smtp, 2, 40, "steady");
    sink.wait_for(40, Duration::from_secs(60));
    // The shadow asks A at its next heartbeat and drops every copy.
    wait_no_shadows(&service, Duration::from_secs(30));
    assert_eq!(service.servers[1].metric("transport_shadow_discarded_total"), Some(acked.len() as f64));
    assert_eq!(service.servers[1].metric("transport_shadow_resubmitted_total"), Some(0.0));
    let ids = sink.message_ids();
    assert!(ids.values().all(|n| *n == 1), "each delivered once: {ids:?}");

    // The message tracking logs tell it: A received each message, had B copy it
    // (HAREDIRECT) and sent it; B received the copy (HARECEIVE) and discarded it
    // (HADISCARD, by B's number for the copy) once A had delivered.
    let one = &acked[0];
    let (a, b) = (&service.servers[0], &service.servers[1]);
    let on_a = tracking(a, TrackingQuery { message_id: Some(one.clone()), ..Default::default() });
    assert_eq!(kinds(&on_a), [TrackingEvent::Receive, TrackingEvent::HaRedirect, TrackingEvent::Send], "{on_a:?}");
    assert_eq!(on_a[1].server_hostname.as_deref(), Some("test-b"));
    let on_b = tracking(b, TrackingQuery { message_id: Some(one.clone()), ..Default::default() });
    assert_eq!(kinds(&on_b), [TrackingEvent::HaReceive], "{on_b:?}");
    assert_eq!(on_b[0].source, "REDUNDANCY");
    let copy = on_b[0].internal_message_id;
    let discarded = tracking(b, TrackingQuery { internal_message_id: Some(copy), ..Default::default() });
    assert_eq!(kinds(&discarded), [TrackingEvent::HaReceive, TrackingEvent::HaDiscard], "{discarded:?}");
    let a_number = on_a[0].internal_message_id;
    assert_eq!(discarded[1].source_context.as_deref(), Some(format!("test-a message {a_number}").as_str()));
    let all_discards = tracking(
        b,
        TrackingQuery { event_id: Some(TrackingEvent::HaDiscard), result_size: None, ..Default::default() },
    );
    assert_eq!(all_discards.len(), acked.len());
}

fn tracking(server: &TransportProcess, query: TrackingQuery) -> Vec<TrackingRecord> {
    server.admin(|c| async move { c.message_tracking(&query).await.expect("Get-MessageTrackingLog") })
}

fn kinds(records: &[TrackingRecord]) -> Vec<TrackingEvent> {
    records.iter().map(|r| r.event_id).collect()
}

#[test]
fn no_shadow_reachable_is_450_4_5_1_when_asked_and_counted_otherwise() {
    let sink = Sink::start();
    // Both peers of A are down: B and C are never started.
    let dead: Vec<SocketAddr> = (0..2).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("peer-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let start = |reject: bool| {
        start_transport(&TransportSetup {
            server_name: Some("test-a".into()),
            smart_host: Some(sink.addr),
            admin: true,
            edit: {
                let shadow = shadow_channel(free_addr(), &token_file, [("test-b", dead[0]), ("test-c", dead[1])]);
                edit(move |f| {
                    f.transport_config.reject_message_on_shadow_failure = Some(reject);
                    f.shadow = Some(shadow.clone());
                })
            },
            ..Default::default()
        })
    };

    let strict = start(true);
    let (mut c, _) = SmtpClient::connect(strict.smtp).unwrap();
    c.cmd("EHLO client.test").unwrap();
    let reply = c.send_message("a@example.org", &["b@example.net"], &test_message("strict", 3)).unwrap();
    assert!(reply.starts_with("450 4.5.1"), "{reply}");
    // The session goes on; nothing of the refused message stays queued.
    assert!(c.cmd("NOOP").unwrap().starts_with("250"));
    strict.wait_store_empty(Duration::from_secs(10));
    assert!(sink.messages().is_empty(), "a refused message is not delivered");

    let lenient = start(false);
    let (mut c, _) = SmtpClient::connect(lenient.smtp).unwrap();
    c.cmd("EHLO client.test").unwrap();
    let reply = c.send_message("a@example.org", &["b@example.net"], &test_message("lenient", 3)).unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    sink.wait_for(1, Duration::from_secs(30));
    let failed = lenient.metric("transport_shadow_copies_total{result=\"failed\"}");
    assert_eq!(failed, Some(1.0), "the unshadowed message is counted");
    assert!(lenient.log().contains("message accepted without a shadow copy"), "and logged");
}

#[test]
fn a_stranger_cannot_read_inject_or_drop_shadow_copies() {
    let hop: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let service = Service::start(2, hop);
    send_tracked(service.servers[0].smtp, 1, 5, "held");
    assert_eq!(service.shadow_counts().get("test-a"), Some(&5));
    let channel = service.channels[1];

    let http = reqwest::Client::new();
    let copy = |token: Option<&str>| {
        let mut req = http
            .put(format!("http://{channel}/v1/shadow/copies"))
            .header("x-shadow-primary", "test-z")
            .header("x-shadow-incarnation", "1")
            .body(b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00{]".to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        block_on(async move {
            let r = req.send().await.unwrap();
            let (status, www) = (r.status().as_u16(), r.headers().contains_key("www-authenticate"));
            (status, www, r.text().await.unwrap())
        })
    };
    let heartbeat = |token: Option<&str>| {
        let mut req = http
            .post(format!("http://{channel}/v1/shadow/heartbeat"))
            .header("content-type", "application/json")
            .body(r#"{"shadow": "test-z", "ids": [1, 2, 3, 4, 5]}"#);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        block_on(async move { req.send().await.unwrap().status().as_u16() })
    };
    for token in [None, Some("guess"), Some("")] {
        let (status, challenge, _) = copy(token);
        assert_eq!(status, 401, "inject without the credential ({token:?})");
        assert!(challenge, "401 says how to authenticate");
        assert_eq!(heartbeat(token), 401, "ask without the credential ({token:?})");
    }
    // With the credential, garbage is refused with a reason, not stored.
    let (status, _, text) = copy(Some(TOKEN));
    assert_eq!(status, 400);
    assert!(text.contains("does not parse"), "{text}");
    // Nothing was added or dropped.
    assert_eq!(service.shadow_counts().get("test-a"), Some(&5));
    assert_eq!(service.shadow_counts().get("test-z"), None);
}

mod on_a_test_clock {
    //! The time-driven half, in-process on a clock the test moves: hours of
    //! silence from a primary in milliseconds.
    use super::*;
    use crate::support::inproc::{t0, InProc};
    use transport::api::QueueStatus;
    use transport::clock::ManualClock;
    use transport::config::TransportFile;

    /// Server `name` relaying to `hop`, shadowing to `peer` over `channel`.
    fn config(name: &str, hop: SocketAddr, channel: SocketAddr, peer: (&str, SocketAddr), dir: &Path) -> TransportFile {
        let setup = TransportSetup { server_name: Some(name.into()), smart_host: Some(hop), ..Default::default() };
        let mut file =
            setup.config_file(&Placement { dir, smtp: free_addr(), admin: Some(free_addr()), token_file: None });
        file.fqdn = format!("{name}.test.invalid");
        file.log_directory = None;
        file.shadow = Some(shadow_channel(channel, &dir.parent().unwrap().join("peer-token"), [peer]));
        file
    }

    fn shadow_queue(server: &InProc) -> Option<QueueInfo> {
        server.server().queues().into_iter().find(|q| q.delivery_type == DeliveryType::ShadowRedundancy)
    }

    /// Servers A and B on one test clock, each the other's peer, relaying to
    /// `hop_a` and `hop_b`; their config files come back for reloads.
    struct Pair {
        a: InProc,
        b: InProc,
        a_file: TransportFile,
        b_file: TransportFile,
        clock: ManualClock,
        _dir: tempfile::TempDir,
    }

    fn pair(hop_a: SocketAddr, hop_b: SocketAddr) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("peer-token"), TOKEN).unwrap();
        let (ca, cb): (SocketAddr, SocketAddr) = (
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        );
        let clock = ManualClock::new(t0());
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&da).unwrap();
        std::fs::create_dir_all(&db).unwrap();
        let a_file = config("test-a", hop_a, ca, ("test-b", cb), &da);
        let a = InProc::start_file(&a_file, &da, clock.clone());
        let b_file = config("test-b", hop_b, cb, ("test-a", ca), &db);
        let b = InProc::start_file(&b_file, &db, clock.clone());
        Pair { a, b, a_file, b_file, clock, _dir: dir }
    }

    #[test]
    fn shadowing_follows_a_reload_of_the_organisation_settings() {
        let dead_hop: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let Pair { a, b, a_file, _dir, .. } = pair(dead_hop, dead_hop);
        send_tracked(a.smtp, 1, 2, "before");
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(2));

        let mut unshadowed = a_file.clone();
        unshadowed.transport_config.shadow_redundancy_enabled = Some(false);
        a.reload_file(&unshadowed);
        send_tracked(a.smtp, 1, 3, "off");
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(2), "no copy while it is off");

        a.reload_file(&a_file);
        send_tracked(a.smtp, 1, 1, "on-again");
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(3));
    }

    #[test]
    fn a_primary_silent_for_shadow_resubmit_time_span_is_taken_over() {
        let sink = Sink::start();
        let dead_hop: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // A cannot deliver (its hop is down); B can.
        let Pair { mut a, mut b, clock, _dir, .. } = pair(dead_hop, sink.addr);
        let acked = send_tracked(a.smtp, 2, 10, "silent");
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(10));

        // A goes away for good, without a word; B restarts meanwhile, its copies with it.
        a.stop();
        b.restart();
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(10), "the copies survive B's restart");
        // Heartbeats (every 2 minutes by default) fail; for 2 h 59 min B only waits.
        for _ in 0..(179 / 2) {
            clock.advance(Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(5));
        }
        let waiting = eventually(Duration::from_secs(10), "the failed heartbeat on the shadow queue", || {
            shadow_queue(&b).filter(|q| q.last_error.is_some())
        });
        assert_eq!(waiting.status, QueueStatus::Retry);
        assert_eq!(waiting.message_count, 10, "nothing taken over before shadowResubmitTimeSpan");
        assert_eq!(waiting.next_hop_domain, "test-a");
        let error = waiting.last_error.unwrap_or_default();
        assert!(error.contains("cannot reach"), "the reason is shown: {error}");
        assert!(sink.messages().is_empty());

        // Past 3 hours of silence, B delivers A's messages itself.
        clock.advance(Duration::from_secs(240));
        let ids = eventually(Duration::from_secs(60), "A's messages delivered by B", || {
            let ids = sink.message_ids();
            acked.iter().all(|id| ids.contains_key(id)).then_some(ids)
        });
        assert!(ids.values().all(|n| *n == 1), "{ids:?}");
        eventually(Duration::from_secs(10), "B's shadow queue gone", || shadow_queue(&b).is_none().then_some(()));
    }

    /// `POST /v1/shadow/{primary}/heartbeat` on `server`'s admin API.
    fn check_shadows(server: &InProc, primary: &str) -> Result<u64, String> {
        let addr = server.server().admin_addr().expect("an admin API");
        let client = transport::client::AdminClient::new(&format!("http://{addr}"), None).unwrap();
        let primary = primary.to_string();
        server
            .block_on(async move { client.check_shadows(&primary).await })
            .map(|info| info.held_copies)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_drained_primary_s_copies_go_when_asked_and_a_leaving_peer_gets_no_new_one() {
        let sink = Sink::start();
        let dead_hop: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // A delivers at once; B cannot. The clock stands still: no heartbeat is due.
        let Pair { mut a, b, mut b_file, _dir, .. } = pair(sink.addr, dead_hop);
        send_tracked(a.smtp, 1, 6, "drained");
        sink.wait_for(6, Duration::from_secs(60));
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(6), "kept until the next heartbeat");

        // A is being removed (scale-down): B lists it as leaving. B's new mail gets no copy
        // on A, but B still asks A about the copies it holds.
        b_file.shadow.as_mut().expect("shadow").peers[0].leaving = true;
        b.reload_file(&b_file);
        send_tracked(b.smtp, 1, 3, "after");
        assert!(shadow_queue(&a).is_none(), "a leaving peer takes no new copy: {:?}", shadow_queue(&a));

        // A primary that does not answer: a clear error, every copy kept, none taken over.
        a.stop();
        let error = check_shadows(&b, "test-a").unwrap_err();
        assert!(error.contains("cannot ask test-a which of its messages it still holds"), "{error}");
        assert_eq!(shadow_queue(&b).map(|q| q.message_count), Some(6));

        // Back on the same queue, drained: asked now, it holds none of them, and B lets go
        // of every copy (what the operator waits for before it removes A).
        a.restart();
        assert_eq!(check_shadows(&b, "test-a"), Ok(0));
        assert!(shadow_queue(&b).is_none(), "{:?}", shadow_queue(&b));
        assert_eq!(check_shadows(&b, "test-z"), Ok(0), "no copies of an unknown server: nothing to ask");
        let ids = sink.message_ids();
        assert!(ids.len() == 6 && ids.values().all(|n| *n == 1), "delivered once, by A: {ids:?}");
    }
}
