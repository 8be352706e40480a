//! `make bench`: on loopback, the same smtp-source load (plus the bench's own
//! latency probes) against
//! 1. smtp-sink directly (the ceiling: no relay, no disk),
//! 2. a private Postfix instance relaying to that smtp-sink,
//! 3. the transport server (release build) relaying to that smtp-sink,
//!
//! then the transport server with a large queue for a dead next hop. Writes
//! `bench/results/<date>.{md,json,png}`. See bench/README.md.
mod chart;
mod chunking;
mod destinations;
mod drain;
mod load;
mod postfix;
mod procs;
mod report;
mod scale;
mod tracking;
mod transport;

use anyhow::{Context, Result};
use load::Load;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::sink::CountingSink;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Ceiling,
    Postfix,
    Transport,
    /// The transport relay with shadow redundancy: a second server holds a copy of
    /// every message before the first answers 250.
    Shadowed,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Ceiling, Target::Postfix, Target::Transport, Target::Shadowed];

    pub fn label(self) -> &'static str {
        match self {
            Target::Ceiling => "smtp-source → smtp-sink (ceiling)",
            Target::Postfix => "Postfix relay",
            Target::Transport => "transport relay",
            Target::Shadowed => "transport relay, shadowed (2 servers)",
        }
    }
}

/// One load against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub target: Target,
    pub load: Load,
    pub rep: u32,
    pub accepted: u64,
    /// Load start to the last client done.
    pub accept_secs: f64,
    /// Load start to the last message at the sink.
    pub delivered_secs: f64,
    pub latency_samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Peak over samples of the sum of VmHWM of the target's processes (none for the ceiling).
    pub peak_rss_kb: Option<u64>,
    /// The same with Pss (shared pages divided among the processes sharing them).
    #[serde(default)]
    pub peak_pss_kb: Option<u64>,
    /// CPU seconds of the target's processes during the run (children included).
    pub cpu_secs: Option<f64>,
    pub probe_errors: Vec<String>,
}

impl Run {
    pub fn accepted_rate(&self) -> f64 {
        self.accepted as f64 / self.accept_secs
    }
    pub fn delivered_rate(&self) -> f64 {
        self.accepted as f64 / self.delivered_secs
    }
}

/// Everything one `make bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub postfix_version: String,
    pub reps: u32,
    pub runs: Vec<Run>,
    pub failures: Vec<String>,
    pub scale: Option<scale::Scale>,
    #[serde(default)]
    pub drain: Option<drain::Drain>,
    #[serde(default)]
    pub destinations: Option<destinations::Destinations>,
    #[serde(default)]
    pub chunking: Option<chunking::Chunking>,
    #[serde(default)]
    pub tracking: Option<tracking::Tracking>,
    pub postfix_main_cf: String,
    pub postfix_master_cf: String,
    pub transport_config: String,
    pub wall_secs: f64,
}

struct Options {
    reps: u32,
    messages: u32,
    large_messages: u32,
    huge_messages: u32,
    scale_messages: u64,
    drain_messages: u64,
    destination_messages: u64,
    /// Messages of 100 KB for BDAT vs DATA (a tenth of them, at least 4, of 9 MB).
    chunking_messages: u32,
    /// Records of the message tracking log search (0: no tracking runs at all).
    tracking_records: u64,
    out: PathBuf,
    baseline: Option<PathBuf>,
    only: Option<Vec<Target>>,
    loads: Option<Vec<usize>>,
    label: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench [--reps N] [--messages N] [--large-messages N] [--huge-messages N]\n\
         \x20            [--scale-messages N (0: skip)] [--drain-messages N (0: skip)]\n\
         \x20            [--destination-messages N (to N/10 domains by MX; 0: skip)]\n\
         \x20            [--chunking-messages N (BDAT vs DATA, 100 KB; N/10 of 9 MB; 0: skip)]\n\
         \x20            [--out DIR] [--label NAME] [--baseline FILE.json] [--targets ceiling,postfix,transport,shadowed]\n\
         \x20            [--loads 1,2,...] [--quick]\n\
         \x20      bench report FILE.json [--baseline FILE.json]   (rewrite the .md and .png of a result)"
    );
    std::process::exit(2)
}

fn parse_args(args: &[String]) -> Options {
    let mut o = Options {
        reps: 3,
        messages: 5000,
        large_messages: 1000,
        huge_messages: 60,
        scale_messages: 100_000,
        drain_messages: 20_000,
        destination_messages: 20_000,
        chunking_messages: 400,
        tracking_records: 1_000_000,
        out: PathBuf::from("bench/results"),
        baseline: None,
        only: None,
        loads: None,
        label: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage()),
            "--messages" => o.messages = value().parse().unwrap_or_else(|_| usage()),
            "--large-messages" => o.large_messages = value().parse().unwrap_or_else(|_| usage()),
            "--huge-messages" => o.huge_messages = value().parse().unwrap_or_else(|_| usage()),
            "--scale-messages" => o.scale_messages = value().parse().unwrap_or_else(|_| usage()),
            "--drain-messages" => o.drain_messages = value().parse().unwrap_or_else(|_| usage()),
            "--destination-messages" => o.destination_messages = value().parse().unwrap_or_else(|_| usage()),
            "--chunking-messages" => o.chunking_messages = value().parse().unwrap_or_else(|_| usage()),
            "--tracking-records" => o.tracking_records = value().parse().unwrap_or_else(|_| usage()),
            "--out" => o.out = PathBuf::from(value()),
            "--label" => o.label = Some(value()),
            "--baseline" => o.baseline = Some(PathBuf::from(value())),
            "--targets" => {
                let list = value()
                    .split(',')
                    .map(|t| match t.trim() {
                        "ceiling" => Target::Ceiling,
                        "postfix" => Target::Postfix,
                        "transport" => Target::Transport,
                        "shadowed" => Target::Shadowed,
                        _ => usage(),
                    })
                    .collect();
                o.only = Some(list);
            }
            "--loads" => {
                o.loads = Some(value().split(',').map(|n| n.trim().parse().unwrap_or_else(|_| usage())).collect())
            }
            "--quick" => {
                o.reps = 1;
                o.messages = 1000;
                o.large_messages = 200;
                o.huge_messages = 20;
                o.scale_messages = 10_000;
                o.drain_messages = 5_000;
                o.destination_messages = 5_000;
                o.chunking_messages = 100;
                o.tracking_records = 100_000;
            }
            _ => usage(),
        }
    }
    o
}

fn loads(o: &Options) -> Vec<Load> {
    let all = vec![
        Load { size: 2048, sessions: 20, per_session: 1, messages: o.messages },
        Load { size: 2048, sessions: 20, per_session: 10, messages: o.messages },
        Load { size: 2048, sessions: 100, per_session: 1, messages: o.messages },
        Load { size: 2048, sessions: 100, per_session: 10, messages: o.messages },
        Load { size: 100 * 1024, sessions: 20, per_session: 1, messages: o.large_messages },
        // Memory per message in flight: 20 senders of 9 MB at once.
        Load { size: 9 << 20, sessions: 20, per_session: 1, messages: o.huge_messages },
    ];
    match &o.loads {
        None => all,
        Some(pick) => pick.iter().filter_map(|&i| all.get(i.wrapping_sub(1)).copied()).collect(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("report") {
        let Some(file) = args.get(1) else { usage() };
        let o = parse_args(&args[2..]);
        rewrite_report(Path::new(file), o.baseline.as_deref())
    } else {
        run_all(parse_args(&args))
    };
    if let Err(e) = result {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

fn rewrite_report(file: &Path, baseline: Option<&Path>) -> Result<()> {
    let results: Results = serde_json::from_slice(&std::fs::read(file)?)?;
    let baseline = baseline.map(read_results).transpose()?;
    write_outputs(&results, baseline.as_ref(), &file.with_extension(""))
}

fn read_results(path: &Path) -> Result<Results> {
    serde_json::from_slice(&std::fs::read(path).with_context(|| format!("read {}", path.display()))?)
        .with_context(|| format!("parse {}", path.display()))
}

fn write_outputs(results: &Results, baseline: Option<&Results>, stem: &Path) -> Result<()> {
    let png = stem.with_extension("png");
    chart::draw(results, &png)?;
    let md = report::markdown(results, baseline, png.file_name().and_then(|n| n.to_str()).unwrap_or(""));
    std::fs::write(stem.with_extension("md"), md)?;
    std::fs::write(stem.with_extension("json"), serde_json::to_vec_pretty(results)?)?;
    eprintln!("bench: wrote {}.{{md,png,json}}", stem.display());
    Ok(())
}

fn run_all(o: Options) -> Result<()> {
    let wall = Instant::now();
    for t in ["smtp-source", "smtp-sink", "postfix"] {
        testkit::peer::find_tool(t, "postfix")?;
    }
    transport::Transport::binary()?;
    let baseline = o.baseline.as_deref().map(read_results).transpose()?;
    let tmp = tempfile::Builder::new().prefix("kt-bench-").tempdir_in(std::env::temp_dir())?;
    let sink_addr = testkit::port::free_addr();
    let mut sink = CountingSink::start(sink_addr)?;
    let postfix_smtp = testkit::port::free_addr();
    let mut pf = postfix::Postfix::create(&tmp.path().join("postfix"), postfix_smtp, sink_addr)?;
    let targets = o.only.clone().unwrap_or_else(|| Target::ALL.to_vec());

    let now = time::OffsetDateTime::now_utc();
    let date = format!("{:04}-{:02}-{:02}", now.year(), now.month() as u8, now.day());
    let mut results = Results {
        date: date.clone(),
        commit: match std::env::var("BENCH_TRANSPORT_BIN") {
            Ok(bin) => format!("{}, transport binary {bin}", git_commit()),
            Err(_) => git_commit(),
        },
        machine: machine(),
        postfix_version: postfix::Postfix::version(),
        reps: o.reps,
        runs: Vec::new(),
        failures: Vec::new(),
        scale: None,
        drain: None,
        destinations: None,
        chunking: None,
        tracking: None,
        postfix_main_cf: postfix::main_cf(Path::new("$TMP/postfix"), sink_addr),
        postfix_master_cf: postfix::master_cf(postfix_smtp),
        // Every address the sink's: the placeholder below then stands for each
        // (the ports change per run).
        transport_config: testkit::config_file::config_text(&transport::config(
            Path::new("$TMP/transport"),
            sink_addr,
            sink_addr,
            sink_addr,
        )),
        wall_secs: 0.0,
    };
    // Placeholders for ports that change per run.
    results.transport_config = results.transport_config.replace(&sink_addr.to_string(), "127.0.0.1:SINK");
    results.postfix_main_cf = results.postfix_main_cf.replace(&sink_addr.port().to_string(), "SINK");

    for load in loads(&o) {
        for rep in 1..=o.reps {
            for &target in &targets {
                eprint!("bench: {} rep {rep}/{}: {} ... ", load.name(), o.reps, target.label());
                let outcome = match target {
                    Target::Ceiling => measure(&mut sink, sink_addr, &load, target, rep, None),
                    Target::Postfix => run_postfix(&mut pf, &mut sink, &load, rep),
                    Target::Transport => run_transport(tmp.path(), &mut sink, &load, rep),
                    Target::Shadowed => run_shadowed(tmp.path(), &mut sink, &load, rep),
                };
                match outcome {
                    Ok(run) => {
                        eprintln!(
                            "{:.0} msg/s accepted, {:.0} msg/s delivered, p50 {:.1} ms, p99 {:.1} ms",
                            run.accepted_rate(),
                            run.delivered_rate(),
                            run.p50_ms,
                            run.p99_ms
                        );
                        results.runs.push(run);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        results.failures.push(format!("{} / {} / rep {rep}: {e:#}", load.name(), target.label()));
                        // Let whatever is still in flight drain before the next run.
                        settle(&sink);
                    }
                }
            }
        }
    }
    drop(pf);
    if o.drain_messages > 0 && targets.contains(&Target::Transport) {
        match drain::run(tmp.path(), &mut sink, o.drain_messages, 2048) {
            Ok(d) => results.drain = Some(d),
            Err(e) => results.failures.push(format!("drain: {e:#}")),
        }
    }
    if o.destination_messages > 0 && targets.contains(&Target::Transport) {
        let domains = (o.destination_messages / 10).max(10);
        match destinations::run(tmp.path(), &mut sink, o.destination_messages, domains, 2048) {
            Ok(d) => results.destinations = Some(d),
            Err(e) => results.failures.push(format!("destinations: {e:#}")),
        }
    }
    if o.chunking_messages > 0 && targets.contains(&Target::Transport) {
        let loads = [(100 << 10, o.chunking_messages), (9 << 20, (o.chunking_messages / 10).max(4))];
        match chunking::run(tmp.path(), &mut sink, &loads, 4, o.reps) {
            Ok(c) => results.chunking = Some(c),
            Err(e) => results.failures.push(format!("chunking: {e:#}")),
        }
    }
    if o.tracking_records > 0 && targets.contains(&Target::Transport) {
        // The 2 KB load of 20 sessions sending 10 messages each, four times the relay
        // runs' count: the difference looked for is a few percent.
        let load = Load { size: 2048, sessions: 20, per_session: 10, messages: o.messages * 4 };
        match tracking::run(tmp.path(), &mut sink, &load, o.reps, o.tracking_records) {
            Ok(t) => results.tracking = Some(t),
            Err(e) => results.failures.push(format!("tracking: {e:#}")),
        }
    }
    if o.scale_messages > 0 && targets.contains(&Target::Transport) {
        match scale::run(tmp.path(), o.scale_messages, 2048) {
            Ok(s) => results.scale = Some(s),
            Err(e) => results.failures.push(format!("scale: {e:#}")),
        }
    }
    results.wall_secs = wall.elapsed().as_secs_f64();
    std::fs::create_dir_all(&o.out)?;
    let stem = o.out.join(match &o.label {
        Some(l) => format!("{date}-{l}"),
        None => date,
    });
    write_outputs(&results, baseline.as_ref(), &stem)?;
    print!("{}", report::summary_text(&results));
    Ok(())
}

fn run_postfix(pf: &mut postfix::Postfix, sink: &mut CountingSink, load: &Load, rep: u32) -> Result<Run> {
    let master = pf.start()?;
    let run = measure(sink, pf.smtp, load, Target::Postfix, rep, Some(master));
    pf.stop()?;
    run
}

fn run_transport(tmp: &Path, sink: &mut CountingSink, load: &Load, rep: u32) -> Result<Run> {
    let dir = tmp.join(format!("transport-{}-{rep}", load.short().replace('/', "-")));
    let mut server =
        transport::Transport::create(&dir, testkit::port::free_addr(), testkit::port::free_addr(), sink.addr)?;
    let (pid, _) = server.start()?;
    let run = measure(sink, server.smtp, load, Target::Transport, rep, Some(pid));
    finish(std::slice::from_mut(&mut server), &dir, run)
}

/// Stops `servers`, shows their log tails when the run failed, removes `dir`.
fn finish(servers: &mut [transport::Transport], dir: &Path, run: Result<Run>) -> Result<Run> {
    let stopped: Result<Vec<()>> = servers.iter_mut().map(|s| s.stop()).collect();
    if run.is_err() {
        for s in servers.iter() {
            let log = s.log();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            eprintln!("transport log tail: {}", tail.join(" | "));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let run = run?;
    stopped?;
    Ok(run)
}

/// The load through server A of two that shadow each other's mail (B takes A's copies;
/// both relay to the sink). Memory and CPU are A's: B's work is on top of them.
fn run_shadowed(tmp: &Path, sink: &mut CountingSink, load: &Load, rep: u32) -> Result<Run> {
    let dir = tmp.join(format!("shadowed-{}-{rep}", load.short().replace('/', "-")));
    std::fs::create_dir_all(&dir)?;
    let token = dir.join("peer-token");
    std::fs::write(&token, "bench-peers")?;
    let channels = [testkit::port::free_addr(), testkit::port::free_addr()];
    let mut servers = Vec::new();
    for (i, name) in ["bench-a", "bench-b"].into_iter().enumerate() {
        let (peer, peer_channel) = if i == 0 { ("bench-b", channels[1]) } else { ("bench-a", channels[0]) };
        let server_dir = dir.join(name);
        let (smtp, admin) = (testkit::port::free_addr(), testkit::port::free_addr());
        let mut file = transport::config_named(name, &server_dir, smtp, admin, Some(sink.addr));
        file.shadow = Some(::transport::config::ShadowChannel {
            bind: channels[i],
            token_file: token.clone(),
            peers: vec![::transport::config::ShadowPeer {
                name: peer.into(),
                address: peer_channel.to_string(),
                leaving: false,
            }],
        });
        servers.push(transport::Transport::with_config(&server_dir, smtp, admin, &file)?);
    }
    servers[1].start()?;
    let (pid, _) = servers[0].start()?;
    let run = measure(sink, servers[0].smtp, load, Target::Shadowed, rep, Some(pid));
    finish(&mut servers, &dir, run)
}

/// Runs the load against `addr` and waits for all of it at the sink; `pid` is
/// the process tree to account (None for the ceiling).
fn measure(
    sink: &mut CountingSink,
    addr: SocketAddr,
    load: &Load,
    target: Target,
    rep: u32,
    pid: Option<u32>,
) -> Result<Run> {
    let before = sink.count();
    let cpu_before = pid.map(procs::cpu_seconds);
    let sampler = pid.map(|p| procs::MemorySampler::start(p, Duration::from_millis(200)));
    let started = Instant::now();
    // On an error the sampler is dropped, which stops it.
    let result = load::run(addr, load)?;
    // Every accepted message must reach the sink (at least once).
    let delivered_at = sink.wait_for(before + result.accepted, Duration::from_secs(600))?;
    let cpu_secs = pid.zip(cpu_before).map(|(p, b)| procs::cpu_seconds(p) - b);
    let peaks = sampler.map(|s| s.finish());
    let mut lat = result.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        target,
        load: *load,
        rep,
        accepted: result.accepted,
        accept_secs: result.elapsed.as_secs_f64(),
        delivered_secs: delivered_at.duration_since(started).as_secs_f64(),
        latency_samples: lat.len(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        peak_rss_kb: peaks.map(|p| p.0),
        peak_pss_kb: peaks.map(|p| p.1),
        cpu_secs,
        probe_errors: result.errors,
    })
}

/// Nearest-rank percentile of sorted values (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Waits until the sink count stops moving (after a failed run).
fn settle(sink: &CountingSink) {
    let mut last = sink.count();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        let now = sink.count();
        if now == last {
            return;
        }
        last = now;
    }
}

fn git_commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let hash = out(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash} (with uncommitted changes)")
    } else {
        hash
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(String::from("?"), |kb| format!("{} GiB", kb / 1024 / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    format!("{cpus} CPUs ({model}), {mem} RAM, Linux {kernel}")
}
