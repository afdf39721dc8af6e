//! Bounded polling.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long [`wait_for`] polls before it gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often [`wait_for`] polls.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Calls `f` every 100 ms until it returns `Ok(value)`, for at most 15 s, and
/// returns that value. `Err(observation)` means "not yet": when time is up the
/// test panics with `what` and the last observation, so a failure says what
/// was seen instead of just "timed out".
pub fn wait_for<T, O: Debug>(what: &str, mut f: impl FnMut() -> Result<T, O>) -> T {
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= DEFAULT_TIMEOUT {
                    panic!(
                        "timed out after {:?} ({tries} polls) waiting for {what}; last observed: {last:#?}",
                        start.elapsed()
                    );
                }
            }
        }
        std::thread::sleep(DEFAULT_POLL);
    }
}

/// [`wait_for`] for a closure that returns `Option`; the panic message can only
/// say that nothing was observed.
pub fn wait_some<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for(what, || f().ok_or("None"))
}
