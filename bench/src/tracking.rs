//! The message tracking log (issue 16): what writing it costs the relay, and how fast
//! Get-MessageTrackingLog answers on a log of a million records.
//!
//! Cost: the same relay load through the same build twice per repetition, once with
//! `logging.messageTrackingLogEnabled: false` and once with the log on (the default),
//! end-to-end rates compared in the same run. Search: the records are written with
//! the server's own log writer (the transport library, so the file format is the
//! server's), spread over ten days; then a server is started on that log folder and
//! each query is timed through its admin API (`GET /v1/messagetracking`).
use crate::scale::http_get;
use crate::transport::{config, Transport};
use crate::Load;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use testkit::sink::CountingSink;
use transport::api::TrackingEvent;
use transport::clock::ManualClock;
use transport::config::LoggingSettings;
use transport::envelope::{Address, Envelope, MessageId, Origin, Recipient};
use transport::logs::{LogSettings, TrackingLog, TrackingSettings, TrackingSource};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostRun {
    pub tracking: bool,
    pub rep: u32,
    pub messages: u64,
    pub delivered_secs: f64,
    pub p99_ms: f64,
}

impl CostRun {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.delivered_secs
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRun {
    pub query: String,
    pub rows: usize,
    pub secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tracking {
    pub load: Option<Load>,
    pub cost: Vec<CostRun>,
    pub records: u64,
    /// Writing them with the log's writer, one thread.
    pub write_secs: f64,
    pub log_bytes: u64,
    pub searches: Vec<SearchRun>,
}

impl Tracking {
    /// Mean end-to-end rate with the log on over the rate with it off.
    pub fn cost_ratio(&self) -> Option<f64> {
        let mean = |on: bool| {
            let r: Vec<f64> = self.cost.iter().filter(|c| c.tracking == on).map(CostRun::rate).collect();
            (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
        };
        Some(mean(true)? / mean(false)?)
    }
}

pub fn run(tmp: &Path, sink: &mut CountingSink, load: &Load, reps: u32, records: u64) -> Result<Tracking> {
    let mut out = Tracking { load: Some(*load), ..Default::default() };
    for rep in 1..=reps {
        for tracking in [false, true] {
            let c = cost(tmp, sink, load, rep, tracking)?;
            eprintln!(
                "tracking: relay with the log {} rep {rep}: {:.0} msg/s, p99 {:.1} ms",
                if tracking { "on" } else { "off" },
                c.rate(),
                c.p99_ms
            );
            out.cost.push(c);
        }
    }
    if records > 0 {
        search(tmp, records, &mut out)?;
    }
    Ok(out)
}

fn cost(tmp: &Path, sink: &mut CountingSink, load: &Load, rep: u32, tracking: bool) -> Result<CostRun> {
    let dir = tmp.join(format!("tracking-cost-{tracking}-{rep}"));
    let (smtp, admin) = (testkit::port::free_addr(), testkit::port::free_addr());
    let mut file = config(&dir, smtp, admin, sink.addr);
    if !tracking {
        file.logging = Some(LoggingSettings { message_tracking_log_enabled: Some(false), ..Default::default() });
    }
    let mut server = Transport::with_config(&dir, smtp, admin, &file)?;
    let (pid, _) = server.start()?;
    let run = crate::measure(sink, server.smtp, load, crate::Target::Transport, rep, Some(pid));
    server.stop()?;
    let written = dir.join("log/MessageTracking");
    let has_log = std::fs::read_dir(&written).map(|d| d.count() > 0).unwrap_or(false);
    let _ = std::fs::remove_dir_all(&dir);
    let run = run?;
    anyhow::ensure!(has_log == tracking, "the tracking log was {} written", if has_log { "" } else { "not" });
    Ok(CostRun { tracking, rep, messages: run.accepted, delivered_secs: run.delivered_secs, p99_ms: run.p99_ms })
}

/// `records` rows over ten days, three a message as a relay's log has them: RECEIVE,
/// DEFER, then SEND (FAIL for every 50th).
fn search(tmp: &Path, records: u64, out: &mut Tracking) -> Result<()> {
    let dir = tmp.join("tracking-search");
    let log_dir = dir.join("log");
    let start_secs = 1_796_000_000; // 2026-11-30T01:33:20Z
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(start_secs));
    let settings = TrackingSettings {
        retention: LogSettings {
            directory: log_dir.clone(),
            max_age: Duration::ZERO,
            max_directory_size: u64::MAX,
            max_file_size: 10 << 20,
        },
        subjects: false,
    };
    let log = TrackingLog::open(&settings, Arc::new(clock.clone())).context("open the tracking log")?;
    let messages = records.div_ceil(3);
    let step = Duration::from_millis(10 * 86_400_000 / records.max(1));
    eprintln!("tracking: writing {records} records ({messages} messages over ten days)");
    let started = Instant::now();
    let mut written = 0u64;
    for n in 0..messages {
        let env = envelope(n);
        log.record(TrackingEvent::Receive, TrackingSource::Smtp, &env).all_recipients().connector("Default").write();
        clock.advance(step);
        let (event, status) = if n % 50 == 7 {
            (TrackingEvent::Fail, "550 5.1.1 no such user")
        } else {
            (TrackingEvent::Send, "250 2.0.0 Ok: queued")
        };
        log.record(TrackingEvent::Defer, TrackingSource::Smtp, &env)
            .recipients([(0, "451 4.7.1 try again later".into())])
            .connector("Internet")
            .write();
        clock.advance(step);
        log.record(event, TrackingSource::Smtp, &env).recipients([(0, status.into())]).connector("Internet").write();
        clock.advance(step);
        written += 3;
    }
    out.records = written;
    out.write_secs = started.elapsed().as_secs_f64();
    out.log_bytes = dir_size(&log_dir.join("MessageTracking"));
    drop(log);

    let (smtp, admin) = (testkit::port::free_addr(), testkit::port::free_addr());
    let discard = "127.0.0.1:9".parse().expect("an address");
    let mut server = Transport::with_config(&dir, smtp, admin, &config(&dir, smtp, admin, discard))?;
    server.start()?;
    let middle = messages / 2;
    let queries = [
        ("the first 1000 (no filter)".to_string(), "/v1/messagetracking".to_string()),
        (
            format!("one message by Message-ID (message {middle})"),
            format!("/v1/messagetracking?messageId=%3Cm{middle}%40bench.test%3E"),
        ),
        (
            format!("one recipient (rcpt{middle}@example.net)"),
            format!("/v1/messagetracking?recipients=rcpt{middle}%40example.net"),
        ),
        (
            "FAIL of one sender, unlimited".to_string(),
            "/v1/messagetracking?sender=sender7%40example.org&eventId=FAIL&resultSize=Unlimited".to_string(),
        ),
        (
            "one hour on the fifth day, unlimited".to_string(),
            "/v1/messagetracking?start=2026-12-04T12:00:00Z&end=2026-12-04T13:00:00Z&resultSize=Unlimited".to_string(),
        ),
    ];
    for (name, path) in queries {
        let t = Instant::now();
        let (_, body) = http_get(server.admin, &path)?;
        let secs = t.elapsed().as_secs_f64();
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&body).with_context(|| format!("{path}: not JSON"))?;
        anyhow::ensure!(!rows.is_empty(), "{name}: no record found");
        eprintln!("tracking: {name}: {} rows in {secs:.3} s", rows.len());
        out.searches.push(SearchRun { query: name, rows: rows.len(), secs });
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn envelope(n: u64) -> Envelope {
    let origin = Origin {
        connector: "Default".into(),
        client_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        helo: "client.bench.test".into(),
        tls: false,
        source: Default::default(),
    };
    let address = |text: String| Address::parse(&text).expect("a generated address parses");
    let from = address(format!("sender{}@example.org", n % 1000));
    let recipients = vec![Recipient::new(address(format!("rcpt{n}@example.net")))];
    Envelope {
        internet_message_id: Some(format!("<m{n}@bench.test>").into()),
        ..Envelope::new(MessageId(n + 1), Some(from), recipients, 2048, origin, 0)
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
