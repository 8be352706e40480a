//! Helpers of the abuse tests (hostile.rs, relay_abuse.rs): connections from
//! other loopback sources, raw byte clients, and a good client that keeps
//! sending while the abuse goes on.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A TCP connection to `addr` from the loopback address `source` (the whole
/// 127.0.0.0/8 is local on Linux), so per-source limits see distinct clients.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
        let std = stream.into_std()?;
        std.set_nonblocking(false)?;
        std.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(std)
    })
}

/// Reads one reply (all its lines) from a raw stream without reading past it (the test
/// kit's reader). `None` at EOF or on a timeout.
pub fn read_reply(s: &mut TcpStream) -> Option<String> {
    testkit::smtp_client::read_reply(s).ok()
}

/// Sends `line` + CRLF and reads the reply.
pub fn cmd(s: &mut TcpStream, line: &str) -> Option<String> {
    s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    read_reply(s)
}

/// Reads until the server closes (bounded by the stream's read timeout).
pub fn rest(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn assert_reply(reply: Option<String>, code: &str) -> String {
    let r = reply.unwrap_or_else(|| panic!("expected `{code}`, got nothing (connection closed)"));
    assert!(r.starts_with(code), "expected `{code}`, got `{r}`");
    r
}

/// A client from 127.0.0.1 that sends a small message every 100 ms while the
/// abuse goes on; each must be accepted. [`GoodClient::finish`] stops it and
/// waits for every one of its messages at the sink.
pub struct GoodClient {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl GoodClient {
    pub fn start(addr: SocketAddr, tag: &str) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (stop2, sent2, tag) = (stop.clone(), sent.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            // At least a few messages, and on until told to stop.
            while n < 3 || !stop2.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("good-{tag}-{n}");
                let (mut c, banner) = SmtpClient::connect(addr).expect("the good client connects");
                assert!(banner.starts_with("220"), "good client got banner {banner}");
                assert!(c.cmd("EHLO good.test").expect("ehlo").starts_with("250"));
                let reply = c.send_message("good@example.org", &["good@example.net"], &test_message(&id, 3));
                let reply = reply.expect("the good client's message is answered");
                assert!(reply.starts_with("250 2.6.0"), "the good client was refused: {reply}");
                let _ = c.cmd("QUIT");
                sent2.lock().unwrap().push(format!("<{id}@test.invalid>"));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        GoodClient { stop, sent, thread: Some(thread) }
    }

    /// Stops the client; every message it sent reaches `sink`.
    pub fn finish(mut self, sink: &Sink) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the good client was served throughout");
        }
        let sent = self.sent.lock().unwrap().clone();
        eventually(Duration::from_secs(60), "the good client's messages at the sink", || {
            let ids = sink.message_ids();
            sent.iter().all(|id| ids.contains_key(id)).then_some(())
        });
        sent.len()
    }
}
