//! Memory and scale: the transport server with N messages queued for a dead
//! next hop: its RSS, the restart (recovery) time of that queue, and the time
//! to list it through the admin API.
use crate::load;
use crate::transport::Transport;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scale {
    pub messages: u64,
    pub size: usize,
    /// Time to queue them (smtp-source, 20 sessions, one session each for many messages).
    pub load_secs: f64,
    /// RSS with the queue held, and the process's peak so far.
    pub rss_queued_kb: u64,
    pub hwm_queued_kb: u64,
    /// Size of the queue database file.
    pub db_bytes: u64,
    /// GET /v1/queues and GET /v1/messages?resultSize=Unlimited (all of them) with the queue held.
    pub list_queues_secs: f64,
    pub list_messages_secs: f64,
    pub list_messages_count: u64,
    pub list_messages_bytes: u64,
    /// GET /v1/messages as Get-Message by default: the first page (1000 rows).
    #[serde(default)]
    pub first_page_secs: f64,
    #[serde(default)]
    pub first_page_count: u64,
    /// SIGTERM to exit.
    pub stop_secs: f64,
    /// Process start to SMTP listening (the queue is recovered before the listeners open).
    pub restart_secs: f64,
    /// What the restarted server said it recovered.
    pub recovered: u64,
    pub rss_after_restart_kb: u64,
    pub hwm_after_restart_kb: u64,
}

pub fn run(tmp: &Path, messages: u64, size: usize) -> Result<Scale> {
    let dead_hop = testkit::port::free_addr(); // nothing listens there: connections are refused
    let mut server =
        Transport::create(&tmp.join("scale"), testkit::port::free_addr(), testkit::port::free_addr(), dead_hop)?;
    let (pid, _) = server.start()?;
    eprintln!("scale: queueing {messages} messages of {size} bytes for a dead next hop");
    let started = Instant::now();
    // 20 sessions, each sending its share over one connection.
    load::smtp_source(server.smtp, size, 20, messages as u32, true)?;
    let load_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss_queued_kb = crate::procs::rss_kb(pid);
    let hwm_queued_kb = crate::procs::hwm_kb(pid);
    let db_bytes = std::fs::metadata(server.dir.join("queue/queue.redb")).map(|m| m.len()).unwrap_or(0);

    let t = Instant::now();
    let (_, queues) = http_get(server.admin, "/v1/queues")?;
    let list_queues_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (_, page) = http_get(server.admin, "/v1/messages")?;
    let first_page_secs = t.elapsed().as_secs_f64();
    let page: serde_json::Value = serde_json::from_slice(&page).context("GET /v1/messages: not JSON")?;
    let first_page_count = page.as_array().map_or(0, |a| a.len() as u64);
    let t = Instant::now();
    let (_, body) = http_get(server.admin, "/v1/messages?resultSize=Unlimited")?;
    let list_messages_secs = t.elapsed().as_secs_f64();
    let list: serde_json::Value = serde_json::from_slice(&body).context("GET /v1/messages: not JSON")?;
    let list_messages_count = list.as_array().map_or(0, |a| a.len() as u64);
    let listed_queues: serde_json::Value = serde_json::from_slice(&queues).context("GET /v1/queues: not JSON")?;
    eprintln!(
        "scale: {list_messages_count} messages listed in {list_messages_secs:.2} s; queues: {}",
        listed_queues.as_array().map_or(0, |a| a.len())
    );

    let t = Instant::now();
    server.stop()?;
    let stop_secs = t.elapsed().as_secs_f64();
    let (pid, restart) = server.start()?;
    let recovered = server
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("queue opened"))
        .and_then(|l| l.split("recovered=").nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    let scale = Scale {
        messages,
        size,
        load_secs,
        rss_queued_kb,
        hwm_queued_kb,
        db_bytes,
        list_queues_secs,
        list_messages_secs,
        list_messages_count,
        list_messages_bytes: body.len() as u64,
        first_page_secs,
        first_page_count,
        stop_secs,
        restart_secs: restart.as_secs_f64(),
        recovered,
        rss_after_restart_kb: crate::procs::rss_kb(pid),
        hwm_after_restart_kb: crate::procs::hwm_kb(pid),
    };
    server.stop()?;
    let _ = std::fs::remove_dir_all(tmp.join("scale"));
    Ok(scale)
}

/// A plain HTTP/1.1 GET (loopback, no token); returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    http(addr, "GET", path, None)
}

/// A plain HTTP/1.1 request with an optional JSON body; a status other than 200 is an error.
pub fn http(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n")?;
    match json {
        Some(body) => write!(s, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())?,
        None => write!(s, "\r\n")?,
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("HTTP reply without a header end")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("HTTP status")?;
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    if status != 200 {
        bail!("{method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
