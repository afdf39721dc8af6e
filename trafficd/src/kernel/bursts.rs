//! Waking the drain for a burst of new flows.
//!
//! Between drains the drain thread sleeps on FLOW_BURSTS, a ring buffer the programs write to
//! once every [`BURST_FLOWS`] new flows, and on the daemon's stop signal. A burst is drained
//! before the interval ends, in bites of about that many flows; a host without bursts pays no
//! wake-up at all (polling the flow count several times a second cost an idle daemon more than
//! its drains).
//!
//! [`BURST_FLOWS`]: trafficd_common::BURST_FLOWS

use std::{
    os::fd::{AsRawFd, BorrowedFd},
    time::Instant,
};

use aya::maps::{MapData, RingBuf};

/// Why [`Bursts::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The deadline passed (or a signal interrupted the wait: the caller checks the time).
    Deadline,
    /// The programs reported a burst of new flows.
    Burst,
    /// The stop signal became readable.
    Stop,
}

pub struct Bursts {
    ring: RingBuf<MapData>,
}

impl Bursts {
    pub fn new(ring: RingBuf<MapData>) -> Bursts {
        Bursts { ring }
    }

    /// Sleeps until `deadline`, a burst, or `stop` becomes readable, whichever comes first.
    pub fn wait(&mut self, deadline: Instant, stop: BorrowedFd<'_>) -> Woken {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up: waking a fraction of a millisecond early would only sleep again.
        let millis = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let watch = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [watch(self.ring.as_raw_fd()), watch(stop.as_raw_fd())];
        // SAFETY: two valid pollfds, for the length given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if ready <= 0 {
            return Woken::Deadline;
        }
        if fds[1].revents != 0 {
            return Woken::Stop;
        }
        // The records only wake us: what waits is counted in FLOW_CLAIMS.
        while self.ring.next().is_some() {}
        Woken::Burst
    }
}
