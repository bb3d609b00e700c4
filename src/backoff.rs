//! `Backoff`: the delays between retries of an attempt, as a plain iterator.
//!
//! Delay k is `min(max, initial × 2^k)` scaled by a jitter factor in [0.5, 1.0], so that
//! hosts failing together do not retry in lockstep. The randomness comes from a seed the
//! caller injects (splitmix64), so the same seed gives the same delays; nothing here sleeps,
//! reads a clock or decides how many retries there are (the caller `take`s what it needs).

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// An endless sequence of retry delays. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// How many delays have been produced; the exponent of the next one.
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// `min(max, initial × 2^attempt)`, before jitter.
    fn ceiling(&self) -> Duration {
        let grown = 1u32
            .checked_shl(self.attempt)
            .map_or(Duration::MAX, |factor| self.initial.saturating_mul(factor));
        grown.min(self.max)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        Some(jitter(ceiling, self.rng.next_u32()))
    }
}

/// Scales `delay` by `1 - r / 2^33`, a factor in (0.5, 1.0], in integer nanoseconds so that
/// no float rounding can overflow `Duration`.
fn jitter(delay: Duration, r: u32) -> Duration {
    let nanos = delay.as_nanos();
    // `nanos` < 2^95 (Duration::MAX), so the product stays below 2^127.
    let cut = nanos.saturating_mul(u128::from(r)) >> 33;
    from_nanos(nanos.saturating_sub(cut))
}

fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

/// splitmix64 (Steele, Lea and Flood): tiny, fast and well mixed even for seeds 0, 1, 2…
#[derive(Debug, Clone, PartialEq, Eq)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        // The high bits are the best mixed.
        u32::try_from(self.next_u64() >> 32).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn delays(initial: Duration, max: Duration, seed: u64, n: usize) -> Vec<Duration> {
        Backoff::new(initial, max, seed).take(n).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        assert_eq!(
            delays(ms(100), ms(10_000), 7, 20),
            delays(ms(100), ms(10_000), 7, 20)
        );
        assert_ne!(
            delays(ms(100), ms(10_000), 7, 20),
            delays(ms(100), ms(10_000), 8, 20)
        );
    }

    #[test]
    fn delays_double_within_the_jitter_band_then_cap() {
        for seed in 0..50 {
            for (k, delay) in delays(ms(100), ms(5_000), seed, 12).into_iter().enumerate() {
                let ceiling = ms(100 << k).min(ms(5_000));
                assert!(
                    delay <= ceiling,
                    "seed {seed}, delay {k}: {delay:?} > {ceiling:?}"
                );
                assert!(
                    delay >= ceiling / 2,
                    "seed {seed}, delay {k}: {delay:?} < half"
                );
            }
        }
    }

    #[test]
    fn the_envelope_grows_then_stays_at_the_cap() {
        let ceilings: Vec<Duration> = (0..8)
            .map(|k| {
                let mut backoff = Backoff::new(ms(100), ms(1_000), 0);
                backoff.attempt = k;
                backoff.ceiling()
            })
            .collect();
        assert_eq!(
            ceilings,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_000),
                ms(1_000),
                ms(1_000),
                ms(1_000)
            ]
        );
    }

    #[test]
    fn jitter_spreads_over_the_band() {
        // Over many seeds the first delay is not a constant: both halves of [0.5, 1.0] occur.
        let firsts: Vec<Duration> = (0..200)
            .map(|seed| delays(ms(1_000), ms(1_000), seed, 1)[0])
            .collect();
        assert!(firsts.iter().any(|d| *d < ms(750)));
        assert!(firsts.iter().any(|d| *d > ms(750)));
        assert!(firsts.iter().all(|d| *d >= ms(500) && *d <= ms(1_000)));
    }

    #[test]
    fn jitter_bounds_are_exact() {
        assert_eq!(jitter(ms(1_000), 0), ms(1_000));
        let lowest = jitter(ms(1_000), u32::MAX);
        assert!(lowest > ms(500) && lowest < ms(501));
        assert_eq!(jitter(Duration::ZERO, u32::MAX), Duration::ZERO);
    }

    #[test]
    fn huge_values_saturate_instead_of_panicking() {
        let all = delays(Duration::MAX, Duration::MAX, u64::MAX, 100);
        assert!(all.iter().all(|d| *d >= Duration::MAX / 2));
        let mut backoff = Backoff::new(ms(1), Duration::MAX, 3);
        backoff.attempt = u32::MAX;
        assert!(backoff.nth(3).is_some_and(|d| d >= Duration::MAX / 2));
        assert_eq!(jitter(Duration::MAX, 0), Duration::MAX);
    }

    #[test]
    fn a_max_below_initial_caps_from_the_start() {
        assert!(
            delays(ms(500), ms(100), 1, 5)
                .iter()
                .all(|d| *d <= ms(100) && *d >= ms(50))
        );
    }
}
