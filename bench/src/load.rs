//! The load: Postfix's smtp-source for most sessions, and the bench's own
//! probe client for the rest (about one session in ten), which sends the same
//! messages the same way and times each one from the end of DATA (the final
//! `.` written) to the 250. Every target gets exactly the same load: the same
//! sessions and the same number of messages, split between smtp-source and the
//! probes in proportion to their sessions.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FROM: &str = "load@example.org";
pub const TO: &str = "sink@example.net";
pub const HELO: &str = "client.bench.invalid";
/// Sessions per smtp-source process when sessions carry several messages.
const SOURCE_GROUP: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Payload bytes per message (smtp-source -l).
    pub size: usize,
    /// Concurrent sessions, probes included.
    pub sessions: u32,
    /// Messages per session before QUIT.
    pub per_session: u32,
    /// Messages in the run.
    pub messages: u32,
}

impl Load {
    pub fn name(&self) -> String {
        let size = match self.size {
            s if s >= 1 << 20 => format!("{} MB", s >> 20),
            s if s >= 1024 => format!("{} KB", s / 1024),
            s => format!("{s} B"),
        };
        format!("{size}, {} sessions, {} msg/session", self.sessions, self.per_session)
    }

    pub fn short(&self) -> String {
        format!("{}K/{}s/{}m", self.size / 1024, self.sessions, self.per_session)
    }

    /// Probe sessions out of `sessions`.
    pub fn probes(&self) -> u32 {
        (self.sessions / 10).max(2).min(self.sessions)
    }
}

/// What the clients saw.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Messages answered 250 (smtp-source's and the probes').
    pub accepted: u64,
    /// From the first connection to the last client finishing.
    pub elapsed: Duration,
    /// Acceptance latency of each probe message, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Refusals and broken sessions of the probes (smtp-source stops at its first).
    pub errors: Vec<String>,
}

/// Runs `load` against `addr`; returns when every client is done.
pub fn run(addr: SocketAddr, load: &Load) -> Result<LoadResult> {
    let probes = load.probes();
    let src_sessions = load.sessions - probes;
    let per = load.per_session.max(1);
    // smtp-source's share of the messages, a whole number of sessions.
    let src_messages =
        (u64::from(load.messages) * u64::from(src_sessions) / u64::from(load.sessions)) as u32 / per * per;
    let accepted = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();

    // The probes' share: the messages smtp-source does not send, taken one at a
    // time, so every target gets the same number of messages over the same sessions.
    let probe_quota = Arc::new(AtomicU64::new(u64::from(load.messages - src_messages)));
    let probe_threads: Vec<_> = (0..probes)
        .map(|n| {
            let (quota, accepted, latencies, errors) =
                (probe_quota.clone(), accepted.clone(), latencies.clone(), errors.clone());
            let load = *load;
            std::thread::spawn(move || {
                let mut seq = 0u64;
                let mut failures = 0;
                while quota.load(Ordering::Relaxed) > 0 && failures < 100 {
                    match probe_session(addr, &load, n, &mut seq, &quota) {
                        Ok(times) => {
                            accepted.fetch_add(times.len() as u64, Ordering::Relaxed);
                            latencies.lock().unwrap().extend(times);
                        }
                        Err((times, e)) => {
                            failures += 1;
                            accepted.fetch_add(times.len() as u64, Ordering::Relaxed);
                            latencies.lock().unwrap().extend(times);
                            errors.lock().unwrap().push(format!("{e:#}"));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect();

    let source_result = if per == 1 {
        smtp_source(addr, load.size, src_sessions, src_messages, false)
    } else {
        // smtp-source -d keeps each session for as many messages as the process
        // has: a process with g sessions and g × per messages gives about `per`
        // messages per session. Groups of up to 6 sessions keep the cost of
        // starting processes low (it competes with the target for the CPU).
        let quota = Arc::new(AtomicU64::new(u64::from(src_messages)));
        let groups: Vec<u32> =
            (0..src_sessions).step_by(SOURCE_GROUP as usize).map(|g| (src_sessions - g).min(SOURCE_GROUP)).collect();
        let workers: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let quota = quota.clone();
                let size = load.size;
                std::thread::spawn(move || -> Result<()> {
                    let take = u64::from(g * per);
                    while let Ok(left) = quota.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                        q.checked_sub(q.min(take)).filter(|_| q > 0)
                    }) {
                        let n = left.min(take) as u32;
                        smtp_source(addr, size, g.min(n.div_ceil(per)), n, true)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for w in workers {
            let r = w.join().map_err(|_| anyhow::anyhow!("smtp-source worker panicked")).and_then(|r| r);
            if result.is_ok() {
                result = r;
            }
        }
        result
    };
    for t in probe_threads {
        let _ = t.join();
    }
    let elapsed = started.elapsed();
    source_result?;
    let accepted = u64::from(src_messages) + accepted.load(Ordering::Relaxed);
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    Ok(LoadResult { accepted, elapsed, latencies_ms, errors })
}

/// One smtp-source run; an error when it did not finish cleanly (it stops at
/// the first unexpected reply).
pub fn smtp_source(addr: SocketAddr, size: usize, sessions: u32, messages: u32, keep: bool) -> Result<()> {
    let mut cmd = Command::new(testkit::peer::find_tool("smtp-source", "postfix")?);
    cmd.args(["-s", &sessions.to_string(), "-m", &messages.to_string(), "-l", &size.to_string()]);
    cmd.args(["-f", FROM, "-t", TO, "-M", HELO]);
    if keep {
        cmd.arg("-d");
    }
    let out = cmd.arg(addr.to_string()).output().context("run smtp-source")?;
    if !out.status.success() {
        bail!("smtp-source failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The probe's message: a few headers and `size` bytes of body in 78-byte lines.
pub fn message(size: usize, id: &str) -> Vec<u8> {
    let mut m =
        format!("From: <{FROM}>\r\nTo: <{TO}>\r\nSubject: bench probe\r\nMessage-ID: <{id}@bench.invalid>\r\n\r\n")
            .into_bytes();
    let mut left = size;
    while left > 0 {
        let n = left.min(78);
        m.extend(std::iter::repeat_n(b'x', n.saturating_sub(2)));
        m.extend_from_slice(if n >= 2 { b"\r\n" } else { b"x" });
        left -= n;
    }
    if !m.ends_with(b"\r\n") {
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// Sends one message to each recipient over `sessions` connections (plain
/// MAIL, RCPT, DATA, each awaited), the recipients dealt out in turn.
pub fn send_each(addr: SocketAddr, sessions: usize, recipients: &[String], size: usize) -> Result<()> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..sessions)
            .map(|s| {
                scope.spawn(move || -> Result<()> {
                    let mut c = Client::open(addr)?;
                    for (n, to) in recipients.iter().enumerate().skip(s).step_by(sessions) {
                        c.cmd(&format!("MAIL FROM:<{FROM}>"), '2')?;
                        c.cmd(&format!("RCPT TO:<{to}>"), '2')?;
                        c.cmd("DATA", '3')?;
                        c.writer.write_all(&message(size, &format!("e{n}")))?;
                        c.expect('2')?;
                    }
                    c.cmd("QUIT", '2')
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a sending thread panicked"))?)
    })
}

/// Sends `count` messages of `size` bytes over `sessions` connections, with DATA
/// or in BDAT chunks of 64 KB (RFC 3030; each chunk's reply awaited, the last
/// one marked LAST).
pub fn send_many(addr: SocketAddr, sessions: usize, count: u32, size: usize, bdat: bool) -> Result<()> {
    const CHUNK: usize = 64 << 10;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..sessions)
            .map(|s| {
                scope.spawn(move || -> Result<()> {
                    let mut c = Client::open(addr)?;
                    for n in (s..count as usize).step_by(sessions) {
                        c.cmd(&format!("MAIL FROM:<{FROM}>"), '2')?;
                        c.cmd(&format!("RCPT TO:<{TO}>"), '2')?;
                        let body = message(size, &format!("c{n}"));
                        if !bdat {
                            c.cmd("DATA", '3')?;
                            c.writer.write_all(&body)?;
                            c.expect('2')?;
                            continue;
                        }
                        // The message without DATA's terminating dot line.
                        let data = &body[..body.len() - 3];
                        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
                        for (i, chunk) in chunks.iter().enumerate() {
                            let last = if i + 1 == chunks.len() { " LAST" } else { "" };
                            c.writer.write_all(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes())?;
                            c.writer.write_all(chunk)?;
                            c.expect('2')?;
                        }
                    }
                    c.cmd("QUIT", '2')
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a sending thread panicked"))?)
    })
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects, reads the banner and says EHLO.
    fn open(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(30))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        let mut c = Client { reader: BufReader::new(stream.try_clone()?), writer: stream };
        c.expect('2')?;
        c.cmd(&format!("EHLO {HELO}"), '2')?;
        Ok(c)
    }

    fn reply(&mut self) -> Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed (after {all:?})");
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    fn expect(&mut self, code: char) -> Result<()> {
        let r = self.reply()?;
        if !r.starts_with(code) {
            bail!("unexpected reply {:?}", r.trim_end());
        }
        Ok(())
    }

    fn cmd(&mut self, line: &str, code: char) -> Result<()> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        self.expect(code)
    }
}

/// One probe session of up to `per_session` messages; the latencies of the
/// messages accepted (also when the session then failed).
fn probe_session(
    addr: SocketAddr,
    load: &Load,
    probe: u32,
    seq: &mut u64,
    quota: &AtomicU64,
) -> Result<Vec<f64>, (Vec<f64>, anyhow::Error)> {
    let mut times = Vec::new();
    let result = (|| -> Result<()> {
        let mut c = Client::open(addr)?;
        for _ in 0..load.per_session {
            // A message that fails is not retried: it stays counted as taken.
            if quota.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1)).is_err() {
                break;
            }
            *seq += 1;
            c.cmd(&format!("MAIL FROM:<{FROM}>"), '2')?;
            c.cmd(&format!("RCPT TO:<{TO}>"), '2')?;
            c.cmd("DATA", '3')?;
            let body = message(load.size, &format!("p{probe}-{seq}"));
            c.writer.write_all(&body)?;
            let sent = Instant::now();
            c.expect('2')?;
            times.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        c.cmd("QUIT", '2')?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(times),
        Err(e) => Err((times, e)),
    }
}
