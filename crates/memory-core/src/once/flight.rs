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
    landing: Mutex<Option<Landing>>,
    /// Wakes synchronous followers.
    landed: Condvar,
    /// Wakes async followers.
    notify: Notify,
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
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn land(&self, landing: Landing) {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = Some(landing);
        self.landed.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks until the flight lands, or until `deadline` (`None`).
    pub(super) fn wait(&self, deadline: Instant) -> Option<Landing> {
        let mut landing = self.landing.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(landing) = *landing {
                return Some(landing);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            landing = self
                .landed
                .wait_timeout(landing, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
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
