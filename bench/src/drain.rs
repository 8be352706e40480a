//! Drain: Redirect-Message of N messages queued on one server (its hop dead) to a
//! sibling that relays them to the sink, as maintenance, node drains, rolling upgrades
//! and scale-downs do. The rate is compared with the same build's relay rate in the
//! same run (a drain does about 1.5 times a relay's work per message: read, send,
//! remove on the first server, then a relay on the second).
use crate::load;
use crate::scale::http;
use crate::transport::Transport;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::sink::CountingSink;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Drain {
    pub messages: u64,
    pub size: usize,
    /// Time to queue them on the first server.
    pub queue_secs: f64,
    /// `POST /v1/redirect` to the last message counted at the sink.
    pub drain_secs: f64,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.drain_secs
    }
}

pub fn run(tmp: &Path, sink: &mut CountingSink, messages: u64, size: usize) -> Result<Drain> {
    let dead_hop = testkit::port::free_addr();
    let mut first =
        Transport::create(&tmp.join("drain-first"), testkit::port::free_addr(), testkit::port::free_addr(), dead_hop)?;
    let mut sibling = Transport::create(
        &tmp.join("drain-sibling"),
        testkit::port::free_addr(),
        testkit::port::free_addr(),
        sink.addr,
    )?;
    first.start()?;
    sibling.start()?;
    eprintln!("drain: queueing {messages} messages of {size} bytes, then redirecting them to a sibling");
    let started = Instant::now();
    load::smtp_source(first.smtp, size, 20, messages as u32, true)?;
    let queue_secs = started.elapsed().as_secs_f64();
    let before = sink.count();
    let started = Instant::now();
    let target = format!("{{\"target\": \"{}\"}}", sibling.smtp);
    http(first.admin, "POST", "/v1/redirect", Some(&target))?;
    let done = sink.wait_for(before + messages, Duration::from_secs(900))?;
    let drain = Drain { messages, size, queue_secs, drain_secs: done.duration_since(started).as_secs_f64() };
    eprintln!("drain: {messages} messages moved in {:.2} s ({:.0} msg/s)", drain.drain_secs, drain.rate());
    first.stop()?;
    sibling.stop()?;
    let _ = std::fs::remove_dir_all(tmp.join("drain-first"));
    let _ = std::fs::remove_dir_all(tmp.join("drain-sibling"));
    Ok(drain)
}
