//! Waiting for a condition a test cannot be told about: polled, with a bound.
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`eventually_or`] look.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` every `interval` until it holds; `None` after `within` (the caller says
/// what it saw). `check` runs at least once.
pub fn poll_every<T>(interval: Duration, within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Polls `check` until it holds; `None` after `within` (the caller says what it saw).
pub fn eventually_or<T>(within: Duration, check: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(INTERVAL, within, check)
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
pub fn eventually<T>(within: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(within, check).unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_the_check_gives() {
        let mut calls = 0;
        let got = poll_every(Duration::ZERO, Duration::from_secs(60), || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(got, Some(30));
    }

    #[test]
    fn gives_up_after_the_bound_having_looked() {
        let mut calls = 0;
        let got: Option<()> = poll_every(Duration::ZERO, Duration::ZERO, || {
            calls += 1;
            None
        });
        assert_eq!(got, None);
        assert!(calls >= 1, "{calls}");
    }

    #[test]
    #[should_panic(expected = "waiting for the answer")]
    fn eventually_names_what_never_came() {
        eventually::<()>(Duration::ZERO, "the answer", || None);
    }
}
