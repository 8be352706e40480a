//! What a process tree costs, read from /proc: CPU seconds (utime + stime,
//! reaped children included) and resident memory (VmHWM / VmRSS), summed over
//! the tree (Postfix is a master and its children; the transport server is one
//! process).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Clock ticks per second of /proc/<pid>/stat times.
fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// (ppid, utime + stime + cutime + cstime in ticks) of a live process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = (11..15).filter_map(|i| fields.get(i)?.parse::<u64>().ok()).sum();
    Some((ppid, ticks))
}

/// A `VmXxx:` line of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/status"), key)
}

/// The `key   1234 kB` line of a /proc file, in kB.
fn kb_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// `root` and every live descendant.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some((ppid, _)) = stat(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// CPU seconds used so far by a process tree: the root with its reaped
/// children, plus each live descendant with its own reaped children. A child
/// that exits moves its time into its parent's cutime, so nothing is lost or
/// counted twice between two snapshots.
pub fn cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root).into_iter().filter_map(stat).map(|(_, t)| t).sum();
    ticks as f64 / clk_tck() as f64
}

/// Proportional set size of one process in kB (shared pages divided among
/// the processes sharing them: sums over a process tree without counting a
/// shared library once per process).
fn pss_kb(pid: u32) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// Samples a process tree's memory until stopped: the peak over samples of
/// the sum of VmHWM, and of Pss, over the processes alive at that sample.
pub struct MemorySampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    peak_pss_kb: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl MemorySampler {
    pub fn start(root: u32, every: Duration) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let peak_pss_kb = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak, peak_pss) = (stop.clone(), peak_kb.clone(), peak_pss_kb.clone());
            std::thread::spawn(move || loop {
                let pids = tree(root);
                let sum: u64 = pids.iter().filter_map(|p| status_kb(*p, "VmHWM:")).sum();
                peak.fetch_max(sum, Ordering::Relaxed);
                let pss: u64 = pids.iter().filter_map(|p| pss_kb(*p)).sum();
                peak_pss.fetch_max(pss, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(every);
            })
        };
        MemorySampler { stop, peak_kb, peak_pss_kb, thread: Some(thread) }
    }

    /// Stops sampling (after one last sample); the peaks (VmHWM sum, Pss sum) in kB.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.peak_kb.load(Ordering::Relaxed), self.peak_pss_kb.load(Ordering::Relaxed))
    }
}

impl Drop for MemorySampler {
    /// A sampler given up on an error path stops too (it would read /proc
    /// until the bench exits, competing with the runs after it).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Current resident set of one process, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0)
}

/// Peak resident set of one process, in kB.
pub fn hwm_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:").unwrap_or(0)
}

pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && stat(pid).is_some()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}
