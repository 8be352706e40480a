//! Crash safety under load: the server is SIGKILLed at random moments, many
//! times in a row, while clients send (kills land during DATA and during the
//! store's fsync), the queue delivers to the sink (during delivery) and an
//! administrator suspends, resumes and retries the queue (during a queue
//! action). After each kill it is started again on the same queue.
//!
//! Every other round the store's `test-hooks` slow-commit flag makes each
//! commit take 100 ms, so that kills land inside commits (data written, the
//! fsync in progress, clients waiting for their 250).
//!
//! At the end every message that got a 250 has reached the sink at least once,
//! the messages that reached it more than once are bounded by what can be in
//! flight at a kill (per outbound connection: the message being sent and the
//! deliveries whose removal was not yet committed), no restart failed and the
//! store never had to quarantine a record.
//!
//! `KT_CRASH_KILLS` raises the number of kills for a longer soak (default
//! [`DEFAULT_KILLS`]); `KT_CRASH_SEED` replays a run's kill timings.

use crate::support::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transport::config::TimeSpan;

/// Kills per CI run (RELIABILITY.md quotes this number).
const DEFAULT_KILLS: usize = 24;
/// Outbound connections to the sink.
const CONNECTIONS: usize = 4;
/// What one connection can deliver twice after a kill: the message it is
/// sending, and the ones delivered whose removal was not committed yet
/// (transport's MAX_UNCONFIRMED_DELIVERIES; checked in the test).
const DUPLICATES_PER_CONNECTION: usize = 5;
const SENDERS: usize = 4;

/// xorshift64*: enough randomness for kill timings, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// Message-ID of every message that got a 250.
    acked: Vec<String>,
    /// Messages whose fate the client could not learn (the server died between
    /// the end of DATA and the reply): they may or may not arrive.
    unknown: Vec<String>,
}

/// A client that keeps sending through restarts; every message has its own
/// Message-ID, and the ledger says which ones were acknowledged.
fn sender(t: usize, addr: SocketAddr, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut c, _)) = SmtpClient::connect(addr) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if !c.cmd("EHLO crash.test").is_ok_and(|r| r.starts_with("250")) {
            continue;
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            let tag = format!("crash-{t}-{n}");
            // Sizes vary so that kills land inside DATA of longer messages too, and
            // inside the writing of spooled bodies (6,000 lines: about 160 KB).
            let lines = [5, 50, 400, 6000][n % 4];
            let reply = c.send_message("sender@example.org", &["rcpt@example.net"], &test_message(&tag, lines));
            let mut ledger = ledger.lock().unwrap();
            match reply {
                Ok(r) if r.starts_with("250") => ledger.acked.push(format!("<{tag}@test.invalid>")),
                Ok(r) => panic!("unexpected refusal of {tag}: {r}"),
                Err(_) => {
                    ledger.unknown.push(format!("<{tag}@test.invalid>"));
                    break;
                }
            }
        }
    }
}

/// Suspends, resumes and retries the delivery queue now and then; the persisted
/// queue state is written while the server may be killed.
fn administrator(
    t: &TransportProcess,
    stop: Arc<AtomicBool>,
    actions: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let addr = t.admin.expect("admin");
    std::thread::spawn(move || {
        let client = transport::client::AdminClient::new(&format!("http://{addr}"), None).expect("client");
        let mut flip = false;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(150));
            let (client, actions) = (&client, &actions);
            block_on(async move {
                let Ok(Ok(queues)) = tokio::time::timeout(Duration::from_secs(2), client.queues()).await else {
                    return;
                };
                let hop = transport::api::DeliveryType::SmartHostConnectorDelivery;
                for q in queues.iter().filter(|q| q.delivery_type == hop) {
                    let action = if flip {
                        transport::client::QueueAction::Resume
                    } else {
                        transport::client::QueueAction::Suspend
                    };
                    if let Ok(Ok(())) =
                        tokio::time::timeout(Duration::from_secs(2), client.queue_action(&q.id, action)).await
                    {
                        actions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            flip = !flip;
        }
    })
}

#[test]
fn random_sigkills_under_load_lose_no_acknowledged_message() {
    let kills: usize = std::env::var("KT_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_KILLS);
    let seed: u64 = std::env::var("KT_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1
    });
    eprintln!("crash harness: {kills} kills, KT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let sink = Sink::start();
    let setup = TransportSetup {
        smart_host: Some(sink.addr),
        admin: true,
        edit: edit(|f| {
            f.retry = retry_every(1);
            // Without the Safety Net, which would keep delivered bodies: the spool folder
            // must empty once the queue has (transport/tests/safety_net.rs covers it).
            f.transport_config.safety_net_hold_time = Some(TimeSpan::from_secs(0));
            // Bound the outbound connections: the duplicate bound below depends on it.
            f.send_connectors[0].max_concurrent_connections = Some(CONNECTIONS as u32);
        }),
        ..Default::default()
    };
    let mut server = start_transport(&setup);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (ledger, stop, addr) = (ledger.clone(), stop.clone(), server.smtp);
            std::thread::spawn(move || sender(t, addr, ledger, stop))
        })
        .collect();
    let admin = administrator(&server, stop.clone(), actions.clone());

    let started = Instant::now();
    let slow_flag = server.dir.join("queue").join("test-hook-slow-commit");
    for kill in 0..kills {
        // Every other round the disk is slow (the test-hooks store takes 100 ms
        // per commit): the kill then most likely lands inside a commit, with
        // data written and clients still waiting for their 250.
        if kill % 2 == 1 {
            std::fs::write(&slow_flag, "").expect("slow-commit flag");
        } else {
            let _ = std::fs::remove_file(&slow_flag);
        }
        // Let it run a random while (the first kills come early, before the
        // queue is busy; later ones with deliveries and queue actions going on).
        std::thread::sleep(Duration::from_millis(100 + rng.below(1400)));
        server.kill();
        if kill % 6 == 5 {
            // Now and then stay down a moment, so clients pile up on reconnect.
            std::thread::sleep(Duration::from_millis(rng.below(500)));
        }
        server.spawn();
    }
    let _ = std::fs::remove_file(&slow_flag);
    // Stop the load, then let the restarted server deliver everything.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().expect("sender");
    }
    admin.join().expect("administrator");
    // A kill between Suspend and Resume leaves the queue suspended (as it
    // should: the state is persisted). Resume what is suspended.
    server.admin(|c| async move {
        for q in c.queues().await.expect("queues") {
            if q.status == transport::api::QueueStatus::Suspended {
                c.queue_action(&q.id, transport::client::QueueAction::Resume).await.expect("resume");
            }
        }
    });

    let (acked, unknown) = {
        let l = ledger.lock().unwrap();
        (l.acked.clone(), l.unknown.clone())
    };
    assert!(acked.len() >= kills * 5, "the load was too light to prove anything: {} acknowledged", acked.len());
    eventually(Duration::from_secs(180), "every acknowledged message delivered", || {
        let ids = sink.message_ids();
        acked.iter().all(|id| ids.contains_key(id)).then_some(())
    });
    // Let stragglers (redeliveries of in-flight messages) arrive before counting.
    std::thread::sleep(Duration::from_secs(3));
    let ids: BTreeMap<String, usize> = sink.message_ids();
    let duplicates: usize = ids.values().map(|n| n - 1).sum();
    let unacked_delivered = unknown.iter().filter(|id| ids.contains_key(*id)).count();
    let foreign: Vec<&String> = ids.keys().filter(|id| !acked.contains(id) && !unknown.contains(id)).take(5).collect();
    eprintln!(
        "crash harness: {kills} kills survived in {:?}; {} acknowledged, all delivered; {duplicates} duplicate \
         deliveries; {} of {} unanswered messages delivered; {} queue actions",
        started.elapsed(),
        acked.len(),
        unacked_delivered,
        unknown.len(),
        actions.load(Ordering::Relaxed),
    );
    assert!(foreign.is_empty(), "the sink got messages nobody sent: {foreign:?}");
    assert_eq!(DUPLICATES_PER_CONNECTION, 1 + transport::queue::manager::MAX_UNCONFIRMED_DELIVERIES);
    let bound = kills * CONNECTIONS * DUPLICATES_PER_CONNECTION;
    assert!(duplicates <= bound, "{duplicates} duplicates after {kills} kills (bound {bound})");
    // Spool files of bodies cut off by a kill were swept at the restart; those of
    // delivered messages went with them: nothing is left once the queue is empty.
    server.wait_store_empty(Duration::from_secs(60));
    let spool = server.dir.join("queue").join("spool");
    eventually(Duration::from_secs(10), "an empty spool folder", || {
        (std::fs::read_dir(&spool).expect("spool folder").count() == 0).then_some(())
    });
    let log = server.log();
    assert!(!log.contains("quarantining"), "a SIGKILL left an unreadable record behind");
    assert!(!log.contains("panicked"), "something panicked");
}

/// Damage done to the queue database between two runs.
fn damage(db: &std::path::Path, how: &str) {
    let bytes = std::fs::read(db).expect("read db");
    let damaged = match how {
        "truncated" => bytes[..bytes.len() / 3].to_vec(),
        "garbage" => (0..bytes.len()).map(|i| (i * 7919 % 251) as u8).collect(),
        "flipped" => {
            // Scribble over the middle of the file (pages, not the header).
            let mut b = bytes.clone();
            let (start, end) = (b.len() / 3, b.len() / 3 + 64 * 1024.min(b.len() / 3));
            for x in &mut b[start..end] {
                *x ^= 0xa5;
            }
            b
        }
        "empty" => Vec::new(),
        other => panic!("unknown damage {other}"),
    };
    std::fs::write(db, damaged).expect("write db");
}

/// A queue database damaged behind the server's back (a disk error, a bad
/// restore, a truncated copy) never keeps the server down: the file is moved
/// aside with a log line naming it, and the server takes and delivers mail.
#[test]
fn a_damaged_queue_database_is_quarantined_and_the_server_serves() {
    for how in ["truncated", "garbage", "flipped", "empty"] {
        let sink_port = free_port();
        let sink_addr: SocketAddr = format!("127.0.0.1:{sink_port}").parse().expect("addr");
        let mut server = start_transport(&TransportSetup { smart_host: Some(sink_addr), ..Default::default() });
        for i in 0..3 {
            let (mut c, _) = SmtpClient::connect(server.smtp).expect("connect");
            c.cmd("EHLO damage.test").expect("ehlo");
            let r = c.send_message("a@example.org", &["b@example.net"], &test_message(&format!("{how}-{i}"), 200));
            assert!(r.expect("reply").starts_with("250"));
        }
        server.kill();
        let queue = server.dir.join("queue");
        damage(&queue.join("queue.redb"), how);
        server.spawn();
        let log = server.log();
        let sink = Sink::start_on(sink_port, &[]);
        let (mut c, _) = SmtpClient::connect(server.smtp).expect("connect");
        c.cmd("EHLO damage.test").expect("ehlo");
        let r = c.send_message("a@example.org", &["b@example.net"], &test_message(&format!("{how}-after"), 2));
        assert!(r.expect("reply").starts_with("250 2.6.0"), "{how}: the server takes mail");
        sink.wait_for(1, Duration::from_secs(60));
        let aside: Vec<_> = std::fs::read_dir(&queue)
            .expect("queue dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("queue.redb.corrupt-"))
            .collect();
        let quarantined = !aside.is_empty();
        // Damage redb's own repair can handle is repaired instead (records it
        // cannot read are quarantined inside the database).
        assert!(quarantined || log.contains("repairing"), "{how}: neither quarantined nor repaired:\n{log}");
        if quarantined {
            assert!(log.contains("quarantined"), "{how}: the log says where the damaged file went:\n{log}");
            assert!(log.contains(&aside[0]), "{how}: the log names {}:\n{log}", aside[0]);
        }
        eprintln!("damaged database ({how}): {}", if quarantined { "quarantined" } else { "repaired" });
    }
}
