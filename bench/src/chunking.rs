//! BDAT vs DATA (RFC 3030): the same messages through two transport servers in a
//! row, client → A → B → smtp-sink, as Exchange servers relaying to each other see
//! them. Once with DATA on both legs (the client sends DATA; B's receive connector
//! has `chunkingEnabled: false`, so A sends DATA too), once with BDAT on both (the
//! client sends 64 KB chunks, A sends BDAT to B). B's leg to smtp-sink is DATA in
//! both. The rates are compared with each other, in the same run.
use crate::load;
use crate::transport::{config_named, Transport};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::sink::CountingSink;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkingRun {
    pub size: usize,
    pub messages: u32,
    /// BDAT on both legs (else DATA).
    pub bdat: bool,
    /// Load start to the last 250 at A.
    pub accept_secs: f64,
    /// Load start to the last message at the sink.
    pub delivered_secs: f64,
}

impl ChunkingRun {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.delivered_secs
    }

    /// Megabytes (2^20) a second, end to end.
    pub fn mb_rate(&self) -> f64 {
        self.messages as f64 * self.size as f64 / f64::from(1 << 20) / self.delivered_secs
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Chunking {
    pub sessions: usize,
    pub runs: Vec<ChunkingRun>,
}

impl Chunking {
    /// The BDAT rate over the DATA rate of the same size (mean over repetitions).
    pub fn ratio(&self, size: usize) -> Option<f64> {
        let mean = |bdat: bool| {
            let rates: Vec<f64> =
                self.runs.iter().filter(|r| r.size == size && r.bdat == bdat).map(ChunkingRun::rate).collect();
            (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
        };
        Some(mean(true)? / mean(false)?)
    }
}

/// `loads`: (message size, messages) pairs, each run with DATA then BDAT, `reps` times.
pub fn run(
    tmp: &Path,
    sink: &mut CountingSink,
    loads: &[(usize, u32)],
    sessions: usize,
    reps: u32,
) -> Result<Chunking> {
    let mut out = Chunking { sessions, runs: Vec::new() };
    for &(size, messages) in loads {
        for rep in 1..=reps {
            for bdat in [false, true] {
                let r = one(tmp, sink, size, messages, sessions, bdat)?;
                eprintln!(
                    "chunking: {messages} × {size} B with {} rep {rep}: {:.1} msg/s, {:.1} MB/s",
                    if bdat { "BDAT" } else { "DATA" },
                    r.rate(),
                    r.mb_rate()
                );
                out.runs.push(r);
            }
        }
    }
    Ok(out)
}

fn one(
    tmp: &Path,
    sink: &mut CountingSink,
    size: usize,
    messages: u32,
    sessions: usize,
    bdat: bool,
) -> Result<ChunkingRun> {
    let dir = tmp.join(format!("chunking-{size}-{bdat}"));
    let (a_smtp, a_admin, b_smtp, b_admin) = (
        testkit::port::free_addr(),
        testkit::port::free_addr(),
        testkit::port::free_addr(),
        testkit::port::free_addr(),
    );
    // B offers CHUNKING only in the BDAT run: A uses what its next hop offers.
    let mut b_file = config_named("bench-b", &dir.join("b"), b_smtp, b_admin, Some(sink.addr));
    b_file.receive_connectors[0].settings.chunking_enabled = Some(bdat);
    let a_file = config_named("bench-a", &dir.join("a"), a_smtp, a_admin, Some(b_smtp));
    let mut b = Transport::with_config(&dir.join("b"), b_smtp, b_admin, &b_file)?;
    let mut a = Transport::with_config(&dir.join("a"), a_smtp, a_admin, &a_file)?;
    b.start()?;
    a.start()?;
    let before = sink.count();
    let started = Instant::now();
    let sent = load::send_many(a.smtp, sessions, messages, size, bdat);
    let accept_secs = started.elapsed().as_secs_f64();
    let done = sent.and_then(|()| Ok(sink.wait_for(before + u64::from(messages), Duration::from_secs(900))?));
    let _ = a.stop();
    let _ = b.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let delivered_secs = done?.duration_since(started).as_secs_f64();
    Ok(ChunkingRun { size, messages, bdat, accept_secs, delivered_secs })
}
