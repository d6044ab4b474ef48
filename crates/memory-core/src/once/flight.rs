//! A flight: one key being computed in this process, which its followers wait for.

use std::pin::pin;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use futures::future;
use tokio::sync::Notify;

use super::Landing;
use crate::rt;

/// One key being computed in this process.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// Led by an async caller (which a synchronous caller blocking a current-thread runtime
    /// could starve).
    pub(super) async_leader: bool,
    landing: Mutex<Landed>,
    /// Wakes synchronous followers.
    landed: Condvar,
    /// Wakes async followers.
    notify: Notify,
}

/// How a flight landed, and how many synchronous followers wait for it (none, mostly: a
/// landing then makes no system call).
#[derive(Debug, Default)]
struct Landed {
    landing: Option<Landing>,
    waiting: usize,
}

impl Flight {
    /// A flight just started, led by an async caller when `async_leader`.
    pub(super) fn new(async_leader: bool) -> Flight {
        Flight {
            async_leader,
            ..Flight::default()
        }
    }

    pub(super) fn landing(&self) -> Option<Landing> {
        self.landing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .landing
    }

    pub(super) fn land(&self, landing: Landing) {
        let mut landed = self.landing.lock().unwrap_or_else(PoisonError::into_inner);
        landed.landing = Some(landing);
        let waiting = landed.waiting > 0;
        drop(landed);
        if waiting {
            self.landed.notify_all();
        }
        self.notify.notify_waiters();
    }

    /// Blocks until the flight lands, or until `deadline` (`None`).
    pub(super) fn wait(&self, deadline: Instant) -> Option<Landing> {
        let mut landed = self.landing.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(landing) = landed.landing {
                return Some(landing);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Counted under the lock the landing takes: it sees this follower, or this
            // follower sees the landing.
            landed.waiting += 1;
            landed = self
                .landed
                .wait_timeout(landed, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            landed.waiting -= 1;
        }
    }

    /// [`wait`](Self::wait), for async callers: the runtime is never blocked.
    pub(super) async fn wait_async(&self, deadline: Instant) -> Option<Landing> {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(landing) = self.landing() {
                return Some(landing);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let timer = pin!(rt::pause_async(deadline - now));
            future::select(notified, timer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Flight, Landing};

    /// A synchronous follower waiting when the flight lands is woken; one that comes after
    /// sees the landing at once.
    #[test]
    fn followers_see_the_landing() {
        let flight = Arc::new(Flight::new(false));
        let follower = std::thread::spawn({
            let flight = flight.clone();
            move || flight.wait(Instant::now() + Duration::from_secs(60))
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while flight.landing.lock().unwrap().waiting == 0 {
            assert!(Instant::now() < deadline, "the follower never waits");
            std::thread::sleep(Duration::from_millis(1));
        }
        flight.land(Landing::Stored);
        assert!(matches!(follower.join().unwrap(), Some(Landing::Stored)));
        assert_eq!(flight.landing.lock().unwrap().waiting, 0);
        assert!(matches!(
            flight.wait(Instant::now() + Duration::from_secs(60)),
            Some(Landing::Stored)
        ));
    }
}
