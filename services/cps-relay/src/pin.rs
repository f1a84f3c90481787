//! PIN safety (issue 13): three wrong PINs block a CPS card and only its PUK unblocks it, so
//! the relay slows guessing down. After the n-th wrong PIN in a row the next attempt may come
//! no sooner than 2^n seconds later (at most 60 s); earlier attempts are refused before the
//! card is asked (RESOURCE_EXHAUSTED with the delay). The PIN is card-global, so the throttle
//! is too. A right PIN clears it. Malformed PINs are refused before the throttle: they never
//! reach the card and cost no try.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::RelayError;

const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    failures: u32,
    not_before: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct PinThrottle {
    state: Mutex<State>,
}

impl PinThrottle {
    /// Refuses an attempt that comes too early after a wrong PIN.
    pub(crate) fn check(&self, now: Instant) -> Result<(), RelayError> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.not_before {
            Some(t) if t > now => Err(RelayError::PinThrottled {
                failures: s.failures,
                retry_after: t - now,
            }),
            _ => Ok(()),
        }
    }

    /// Records what the card said about an attempt that reached it.
    pub(crate) fn record<T>(&self, outcome: &Result<T, RelayError>, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(_) => *s = State::default(),
            Err(RelayError::WrongPin { .. }) => {
                s.failures = s.failures.saturating_add(1);
                s.not_before = Some(now + delay(s.failures));
            }
            // Refused before a try was spent, or a device error: nothing learnt about the PIN.
            Err(_) => {}
        }
    }
}

/// 2^failures seconds, at most a minute.
fn delay(failures: u32) -> Duration {
    if failures >= 6 {
        MAX_DELAY
    } else {
        Duration::from_secs(1 << failures).min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_a_minute_and_resets_on_success() {
        assert_eq!(delay(1), Duration::from_secs(2));
        assert_eq!(delay(3), Duration::from_secs(8));
        assert_eq!(delay(6), MAX_DELAY);
        assert_eq!(delay(40), MAX_DELAY);

        let t = PinThrottle::default();
        let start = Instant::now();
        assert!(t.check(start).is_ok());
        t.record(&Err::<(), _>(RelayError::WrongPin { tries_left: None }), start);
        match t.check(start + Duration::from_millis(500)) {
            Err(RelayError::PinThrottled {
                failures,
                retry_after,
            }) => {
                assert_eq!(failures, 1);
                assert_eq!(retry_after, Duration::from_millis(1500));
            }
            other => panic!("expected a throttle, got {other:?}"),
        }
        assert!(t.check(start + Duration::from_secs(2)).is_ok());
        t.record(&Err::<(), _>(RelayError::WrongPin { tries_left: None }), start);
        assert!(
            t.check(start + Duration::from_secs(3)).is_err(),
            "4 s after the second"
        );
        t.record(&Err::<(), _>(RelayError::FinalTryUnconfirmed), start);
        t.record(&Ok::<(), RelayError>(()), start);
        assert!(t.check(start).is_ok());
    }
}
