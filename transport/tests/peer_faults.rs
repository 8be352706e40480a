//! A broken next hop: it drops the connection mid-DATA or right after the
//! final dot, answers 421 (to the greeting, to RCPT, to the data), stays
//! silent, sends garbage, or accepts the message and then resets. Each case
//! ends in the right retry state (the queue in Retry for a failed connection,
//! a message retry for a 4xx on a working one, nothing for a message the hop
//! took), and once a good hop is back on the same port the message arrives:
//! none is lost.
//!
//! smtp-sink plays the hop where it has the fault (`-q` disconnect, `-Q` 421,
//! `-W` silence); small scripted peers play the rest, because smtp-sink can
//! neither stop in the middle of the data, nor send non-SMTP bytes, nor take a
//! message and then reset the connection.

use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use transport::api::QueueStatus;
use transport::config::TimeSpan;

/// What a scripted peer does wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads part of the message data, then closes.
    DropMidData,
    /// Answers the greeting with non-SMTP bytes.
    Garbage,
    /// Takes the message (250 after the dot), then resets the connection.
    AcceptThenReset,
    /// Accepts the TCP connection and closes it before any banner.
    CloseBeforeBanner,
}

/// A scripted SMTP peer on its own thread; counts the messages it took.
struct Scripted {
    stop: Arc<AtomicBool>,
    taken: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start(port: u16, fault: Fault) -> Scripted {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind scripted peer");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(AtomicUsize::new(0));
        let (stop2, taken2) = (stop.clone(), taken.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = serve(stream, fault, &taken2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Scripted { stop, taken, thread: Some(thread) }
    }

    /// Stops the peer; returns how many messages it took.
    fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.taken.load(Ordering::Relaxed)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn serve(stream: TcpStream, fault: Fault, taken: &AtomicUsize) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    match fault {
        Fault::CloseBeforeBanner => return Ok(()),
        Fault::Garbage => {
            w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n\x00\xff\xfe garbage\r\n")?;
            std::thread::sleep(Duration::from_millis(200));
            return Ok(());
        }
        _ => {}
    }
    w.write_all(b"220 scripted.test ESMTP\r\n")?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => w.write_all(b"250-scripted.test\r\n250 8BITMIME\r\n")?,
            "DATA" => {
                w.write_all(b"354 go ahead\r\n")?;
                if let Fault::DropMidData = fault {
                    let mut some = [0u8; 64];
                    r.read_exact(&mut some)?;
                    return Ok(());
                }
                let mut data = String::new();
                loop {
                    data.clear();
                    if r.read_line(&mut data)? == 0 {
                        return Ok(());
                    }
                    if data == ".\r\n" {
                        break;
                    }
                }
                taken.fetch_add(1, Ordering::Relaxed);
                w.write_all(b"250 2.0.0 taken\r\n")?;
                // Wait for the QUIT to arrive, leave it unread and close: the
                // kernel answers with a reset.
                std::thread::sleep(Duration::from_millis(300));
                return Ok(());
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => w.write_all(b"250 ok\r\n")?,
        }
    }
}

/// The expected state after the fault.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The connection failed: the delivery queue is in Retry with this in its last error.
    QueueRetry(&'static str),
    /// A 4xx on a working connection: the message waits for its own retry.
    MessageRetry(&'static str),
    /// The hop took the message: it is gone from the queue, not sent again.
    Delivered,
}

fn server(hop: SocketAddr) -> TransportProcess {
    let setup = TransportSetup {
        smart_host: Some(hop),
        admin: true,
        // Retries 3 s apart (time to look at the state), a hop silent for 2 s is given up.
        edit: edit(|f| {
            f.retry = retry_every(3);
            f.send_connectors[0].connection_timeout = Some(TimeSpan::from_secs(2));
            f.send_connectors[0].connection_inactivity_timeout = Some(TimeSpan::from_secs(2));
        }),
        ..Default::default()
    };
    start_transport(&setup)
}

fn send(t: &TransportProcess, tag: &str) {
    let (mut c, _) = SmtpClient::connect(t.smtp).expect("connect");
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    let r = c.send_message("alice@example.org", &["bob@example.net"], &test_message(tag, 40)).unwrap();
    assert!(r.starts_with("250 2.6.0"), "{r}");
    let _ = c.cmd("QUIT");
}

/// Sends a message through a faulty hop, checks the state it ends in, then
/// puts a good smtp-sink on the hop's port and checks the message arrives.
/// Returns how many times it arrived (more than once only where the fault
/// leaves its fate unknown).
fn run_case(name: &str, start_fault: impl FnOnce(u16) -> Box<dyn FnOnce() -> usize>, expect: Expect) -> usize {
    // One case at a time: each starts and stops peers on ports picked with
    // free_port(), and a port freed by one case must not be taken by another's
    // peer between free_port() and the server binding it.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let hop: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let stop_fault = start_fault(port);
    let t = server(hop);
    send(&t, name);
    let mut last = String::new();
    let seen = eventually_or(Duration::from_secs(30), || {
        let (queues, messages) =
            t.admin(|c| async move { (c.queues().await.expect("queues"), c.messages(None).await.expect("messages")) });
        last = format!("{queues:?}\n{messages:?}");
        let hop_queue = queues.iter().find(|q| q.next_hop_domain.contains(&port.to_string()));
        match expect {
            Expect::QueueRetry(text) => hop_queue
                .filter(|q| q.status == QueueStatus::Retry)
                .filter(|q| q.last_error.as_deref().is_some_and(|e| e.contains(text)))
                .filter(|q| q.message_count == 1)
                .map(|q| format!("{:?}: {:?}", q.status, q.last_error)),
            Expect::MessageRetry(text) => messages
                .iter()
                .find(|m| m.last_error.as_deref().is_some_and(|e| e.contains(text)) && m.retry_count >= 1)
                .filter(|_| hop_queue.is_some_and(|q| q.status != QueueStatus::Retry))
                .map(|m| format!("{:?}: {:?}", m.status, m.last_error)),
            Expect::Delivered => messages.is_empty().then(|| "queue empty".to_string()),
        }
    })
    .unwrap_or_else(|| panic!("{name}: timed out waiting for {expect:?}; last seen:\n{last}\n{}", t.log()));
    eprintln!("peer fault {name}: {seen}");
    let taken = stop_fault();
    if let Expect::Delivered = expect {
        assert_eq!(taken, 1, "{name}: the hop took the message once");
        // Nothing may be sent again: a good hop on the port gets nothing.
        let sink = Sink::start_on(port, &[]);
        std::thread::sleep(Duration::from_secs(7));
        assert!(sink.messages().is_empty(), "{name}: a message the hop took was sent again");
        return 1;
    }
    let sink = Sink::start_on(port, &[]);
    let want = format!("<{name}@test.invalid>");
    eventually_or(Duration::from_secs(60), || sink.message_ids().contains_key(&want).then_some(())).unwrap_or_else(
        || {
            let state = t.admin(|c| async move { (c.queues().await, c.messages(None).await) });
            panic!("{name}: not delivered once the hop is good\n{state:?}\n{}", t.log());
        },
    );
    eventually(Duration::from_secs(30), &format!("{name}: an empty queue"), || {
        t.admin(|c| async move { c.messages(None).await.expect("messages") }).is_empty().then_some(())
    });
    sink.message_ids()[&want]
}

fn sink_fault(extra: &'static [&'static str]) -> impl FnOnce(u16) -> Box<dyn FnOnce() -> usize> {
    move |port| {
        let mut sink = Sink::start_on(port, extra);
        Box::new(move || {
            sink.stop();
            sink.messages().len()
        })
    }
}

fn scripted(fault: Fault) -> impl FnOnce(u16) -> Box<dyn FnOnce() -> usize> {
    move |port| {
        let mut peer = Scripted::start(port, fault);
        Box::new(move || peer.stop())
    }
}

#[test]
fn hop_that_disconnects_mid_data_or_after_the_dot_leaves_the_queue_in_retry() {
    run_case("drop-mid-data", scripted(Fault::DropMidData), Expect::QueueRetry("broke"));
    run_case("drop-after-dot", sink_fault(&["-q", "."]), Expect::QueueRetry("end of data"));
    run_case("drop-after-rcpt", sink_fault(&["-q", "RCPT"]), Expect::QueueRetry("broke"));
}

#[test]
fn hop_that_answers_421_is_retried() {
    run_case("421-greeting", sink_fault(&["-Q", "CONNECT"]), Expect::QueueRetry("421"));
    run_case("421-rcpt", sink_fault(&["-Q", "RCPT"]), Expect::MessageRetry("421"));
    run_case("421-after-dot", sink_fault(&["-Q", "."]), Expect::MessageRetry("421"));
    run_case("450-rcpt", sink_fault(&["-r", "RCPT"]), Expect::MessageRetry("450"));
}

#[test]
fn hop_that_goes_silent_times_out_into_retry() {
    // smtp-sink waits 60 s before answering: longer than the 2 s the connector allows.
    run_case("silent-banner", sink_fault(&["-W", "CONNECT:60"]), Expect::QueueRetry("did not answer in time"));
    // Without PIPELINING (`-p`) the MAIL command waits for its own reply.
    run_case("silent-mail", sink_fault(&["-p", "-W", "MAIL:60"]), Expect::QueueRetry("did not answer in time (MAIL)"));
    // With it, smtp-sink answers the pipelined RCPT and DATA (`503`, out of
    // order) while it holds the MAIL reply back: a confused hop that then goes
    // silent. Nothing was taken, the queue waits in Retry.
    run_case("silent-pipelined", sink_fault(&["-W", "MAIL:60"]), Expect::QueueRetry("did not answer in time"));
    // Silent after the data: its fate is unknown to us, so it is sent again
    // (at least once; the sink may keep the first copy).
    let copies = run_case(
        "silent-after-dot",
        sink_fault(&["-W", ".:60"]),
        Expect::QueueRetry("did not answer in time (end of data)"),
    );
    assert!((1..=2).contains(&copies), "{copies}");
}

#[test]
fn hop_that_sends_garbage_or_closes_before_the_banner_is_retried() {
    run_case("garbage", scripted(Fault::Garbage), Expect::QueueRetry(""));
    run_case(
        "closed-before-banner",
        scripted(Fault::CloseBeforeBanner),
        Expect::QueueRetry("closed before the banner"),
    );
}

#[test]
fn hop_that_takes_the_message_then_resets_is_not_sent_again() {
    run_case("accept-then-reset", scripted(Fault::AcceptThenReset), Expect::Delivered);
}
