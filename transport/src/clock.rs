//! The one time source of the server. Everything time-driven (retry schedules,
//! delay DSNs, expiry, resubmit, idle queues) asks a [`Clock`] for the time and
//! sleeps through it, so tests can run days of queue time in seconds with
//! [`ManualClock`].
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Wall-clock time as the server sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()>;
}

/// Milliseconds since the Unix epoch (what envelopes and the store record).
pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 UTC with milliseconds (`2026-11-23T13:36:28.123Z`), as the admin
/// API and the logs show times.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = to_millis(t) as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time, any offset (the times an
/// administrator gives the admin API: a resubmit window, a tracking log search).
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("\"{text}\" is not an RFC 3339 time (2026-12-07T08:00:00Z): {e}"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("\"{text}\" is before 1970"))
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()> {
        let wait = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when a test tells it to. Sleepers wake when it is
/// advanced past their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
    tick: watch::Sender<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        let (tick, _) = watch::channel(start);
        Self { now: Arc::new(Mutex::new(start)), tick }
    }

    pub fn advance(&self, by: Duration) {
        let now = {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now += by;
            *now
        };
        self.tick.send_replace(now);
    }

    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.tick.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()> {
        let mut rx = self.tick.subscribe();
        let now = self.now.clone();
        Box::pin(async move {
            loop {
                if *now.lock().unwrap_or_else(|e| e.into_inner()) >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever advance it.
                    futures::future::pending::<()>().await;
                }
            }
        })
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc_with_milliseconds() {
        assert_eq!(rfc3339(from_millis(1_372_367_317_520)), "2013-06-27T21:08:37.52Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[tokio::test]
    async fn manual_sleep_wakes_only_after_advance() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1000));
        let deadline = clock.now() + Duration::from_secs(3600);
        let sleeper = tokio::spawn(clock.sleep_until(deadline));
        clock.advance(Duration::from_secs(1800));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1800));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("woke").expect("joined");
    }
}
