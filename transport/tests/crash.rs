//! SIGKILL the server while smtp-source and tracked clients are sending; after
//! a restart every message that got a 250 reaches the sink.

use crate::support::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::config::TimeSpan;

#[test]
fn every_acknowledged_message_survives_sigkill() {
    let source = tool("smtp-source", "postfix");
    let sink = Sink::start();
    let mut server = start_transport(&TransportSetup {
        smart_host: Some(sink.addr),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_secs(1))),
        ..Default::default()
    });

    // Background load from Postfix's smtp-source, killed along with the server.
    let mut load = Command::new(source)
        .args(["-s", "10", "-m", "100000", "-l", "1024", "-f", "load@example.org", "-t", "load@example.net"])
        .arg(server.smtp.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smtp-source");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), server.smtp);
        senders.push(std::thread::spawn(move || {
            let mut n = 0;
            'sessions: while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = SmtpClient::connect(addr) else { break };
                if c.cmd("EHLO tracker.test").is_err() {
                    break;
                }
                for _ in 0..10 {
                    n += 1;
                    let id = format!("crash-{t}-{n}");
                    // One sender sends messages large enough to be spooled to files.
                    let lines = if t == 0 { 10_000 } else { 20 };
                    match c.send_message("tracker@example.org", &["tracked@example.net"], &test_message(&id, lines)) {
                        Ok(reply) if reply.starts_with("250") => {
                            acked.lock().unwrap().push(format!("<{id}@test.invalid>"))
                        }
                        Ok(reply) => panic!("unexpected refusal {reply}"),
                        Err(_) => break 'sessions,
                    }
                }
                let _ = c.cmd("QUIT");
            }
        }));
    }
    // Let acknowledged mail pile up in the queue and in delivery, then cut power.
    eventually(Duration::from_secs(60), "200 acknowledged messages", || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    });
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().expect("sender thread");
    }
    let _ = load.kill();
    let _ = load.wait();
    let acked = acked.lock().unwrap().clone();

    server.spawn();
    eventually(Duration::from_secs(120), "every acknowledged message at the sink", || {
        let ids = sink.message_ids();
        acked.iter().all(|id| ids.contains_key(id)).then_some(())
    });
    let ids = sink.message_ids();
    let duplicates: usize = acked.iter().map(|id| ids[id] - 1).sum();
    eprintln!("acknowledged {} tracked messages, all delivered; {duplicates} delivered twice", acked.len());
    // At least once, and duplicates only from what was in flight at the kill: 20
    // connections to the hop, each with the message it sends and the deliveries
    // whose removal was not committed yet.
    let bound = 20 * (1 + transport::queue::manager::MAX_UNCONFIRMED_DELIVERIES);
    assert!(duplicates <= bound, "too many duplicates: {duplicates} (bound {bound})");
}
