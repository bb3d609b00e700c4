//! How long the daemon leaves a failing instance alone: exponential backoff per instance,
//! capped, forgotten when the instance succeeds or its spec changes. Pure: the caller passes
//! the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::hash::SpecHash;
use crate::instance::InstanceId;

/// The wait after the first failure; it doubles after each one.
pub const FIRST_WAIT: Duration = Duration::from_secs(10);
/// The longest wait between two tries of a failing instance.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Failing {
    spec: SpecHash,
    failures: u32,
    until: Instant,
}

/// Instances that failed, and until when each is left alone.
#[derive(Debug, Default)]
pub struct Retry {
    failing: BTreeMap<InstanceId, Failing>,
}

impl Retry {
    /// Records a failure of `id` (with spec `spec`) at `now`; returns how long it now waits.
    pub fn failed(&mut self, id: &InstanceId, spec: SpecHash, now: Instant) -> Duration {
        let failures = self
            .failing
            .get(id)
            .filter(|f| f.spec == spec)
            .map_or(1, |f| f.failures.saturating_add(1));
        let wait = wait_after(failures);
        self.failing.insert(
            id.clone(),
            Failing {
                spec,
                failures,
                until: now + wait,
            },
        );
        wait
    }

    /// Forgets `id`: it succeeded (or went away).
    pub fn succeeded(&mut self, id: &InstanceId) {
        self.failing.remove(id);
    }

    /// Whether `id` with spec `spec` is still being left alone at `now`; an edited spec is
    /// tried at once.
    pub fn waiting(&self, id: &InstanceId, spec: SpecHash, now: Instant) -> Option<Duration> {
        let failing = self.failing.get(id).filter(|f| f.spec == spec)?;
        failing
            .until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// When the next instance that waits may be tried again.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.failing
            .values()
            .map(|f| f.until)
            .filter(|u| *u > now)
            .min()
    }
}

/// `FIRST_WAIT × 2^(failures − 1)`, at most `MAX_WAIT`.
fn wait_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_until_the_cap_and_an_edit_resets_them() {
        let id = InstanceId::parse("h/w/t").unwrap();
        let spec = SpecHash::from_bytes([1; 32]);
        let edited = SpecHash::from_bytes([2; 32]);
        let t0 = tokio::time::Instant::now().into_std();
        let mut retry = Retry::default();
        let waits: Vec<u64> = (0..7)
            .map(|_| retry.failed(&id, spec, t0).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert!(retry.waiting(&id, spec, t0).is_some());
        assert!(retry.waiting(&id, spec, t0 + MAX_WAIT).is_none());
        assert!(
            retry.waiting(&id, edited, t0).is_none(),
            "an edited task is tried at once"
        );
        assert_eq!(
            retry.failed(&id, edited, t0).as_secs(),
            10,
            "and starts over"
        );
        retry.succeeded(&id);
        assert!(retry.waiting(&id, edited, t0).is_none());
        assert!(retry.next_due(t0).is_none());
    }
}
