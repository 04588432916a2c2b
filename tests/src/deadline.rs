//! Waiting for something to happen without fixed sleeps.

use std::time::{Duration, Instant};

/// Calls `probe` every few milliseconds until it returns `Some`, and returns
/// that. Panics naming `what` when `timeout` passes first.
pub fn poll_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
