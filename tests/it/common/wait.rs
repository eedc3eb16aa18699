//! Polling until something holds.

use std::time::{Duration, Instant};

/// Check `cond` every `every` until it holds (true) or `within` has passed (false).
pub fn until(within: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t.elapsed() > within {
            return false;
        }
        std::thread::sleep(every);
    }
}
