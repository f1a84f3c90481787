//! The audit store's circuit breaker (SPEC.md §4 "fail closed", issue 19 "fail fast"): once a
//! writer turn has failed because the store could not be used (unreachable, shut down, out of
//! space, no commit within `write_timeout` — anything but a refused value), the store is taken
//! for down. New writes and jti registrations then fail at once with
//! [`AuditError::StoreDown`](crate::AuditError::StoreDown) instead of queueing behind turns
//! that cannot commit, and a background probe tries the store every `breaker_probe_interval`;
//! its first success closes the breaker.
//!
//! **Decision — one failed turn opens it, only the probe closes it.** A turn fails only after
//! the store refused or hung, so there is nothing to gain by letting more callers wait for the
//! same outcome; and no caller's write is used as the test that the store is back, so no caller
//! waits for a probe. The open/closed state is published on a watch channel, which the services
//! follow to answer gRPC health NOT_SERVING while it is open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::AuditError;
use crate::writer::AuditMetrics;

pub(crate) struct Breaker {
    open: AtomicBool,
    /// `true` while the store is usable (the breaker is closed).
    available: watch::Sender<bool>,
    retry_after: Duration,
    metrics: AuditMetrics,
}

impl Breaker {
    pub(crate) fn new(probe_interval: Duration, metrics: AuditMetrics) -> Breaker {
        Breaker {
            open: AtomicBool::new(false),
            available: watch::Sender::new(true),
            retry_after: retry_after(probe_interval),
            metrics,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The error of work refused while the breaker is open; `what` names the operation.
    pub(crate) fn refusal(&self, what: &'static str) -> AuditError {
        AuditError::StoreDown {
            what,
            retry_after: self.retry_after,
        }
    }

    /// Opens the breaker (no effect when it is open); `reason` is logged.
    pub(crate) fn trip(&self, reason: &dyn std::fmt::Display) {
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                %reason,
                "audit store unusable: writes fail at once until a background probe reaches it again"
            );
            self.metrics.breaker_trips.inc();
            self.metrics.breaker_open.set(1);
            self.available.send_replace(false);
        }
    }

    /// Closes the breaker (no effect when it is closed).
    pub(crate) fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("audit store reachable again: writes resume");
            self.metrics.breaker_open.set(0);
            self.available.send_replace(true);
        }
    }

    /// `true` while the store is usable; changes as the breaker opens and closes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.available.subscribe()
    }
}

/// What callers are told to wait: the probe interval in whole seconds, at least 1 (the unit of
/// HTTP `Retry-After`).
fn retry_after(probe_interval: Duration) -> Duration {
    let secs = probe_interval.as_secs() + u64::from(probe_interval.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        assert_eq!(retry_after(Duration::from_millis(250)), Duration::from_secs(1));
        assert_eq!(retry_after(Duration::from_millis(1001)), Duration::from_secs(2));
        assert_eq!(retry_after(Duration::from_secs(3)), Duration::from_secs(3));
    }

    #[test]
    fn trips_and_closes_once_each_and_publishes_the_state() {
        let metrics = AuditMetrics::default();
        let breaker = Breaker::new(Duration::from_millis(250), metrics.clone());
        let state = breaker.subscribe();
        assert!(*state.borrow() && !breaker.is_open());
        breaker.trip(&"down");
        breaker.trip(&"still down");
        assert!(breaker.is_open() && !*state.borrow());
        assert_eq!(metrics.breaker_trips.get(), 1);
        assert_eq!(metrics.breaker_open.get(), 1);
        let AuditError::StoreDown { what, retry_after } = breaker.refusal("audit write") else {
            panic!("a refusal is StoreDown");
        };
        assert_eq!((what, retry_after), ("audit write", Duration::from_secs(1)));
        breaker.close();
        assert!(!breaker.is_open() && *state.borrow());
        assert_eq!(metrics.breaker_open.get(), 0);
    }
}
