//! Exponential backoff with jitter, for everything that reconnects: the network
//! sources, and the audio device when it comes back.

use std::time::Duration;

use crate::rng::Rng;

/// No retry comes sooner than this, whatever the configuration says: a zero delay
/// would spin on a server that refuses at once.
pub const FLOOR: Duration = Duration::from_millis(50);

pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(FLOOR);
        Self {
            initial,
            max: max.max(initial),
            next: initial,
            rng: Rng::new(seed),
        }
    }

    /// The delay before the next attempt: the current step, less up to half of it at
    /// random so that many clients dropped together do not all return together.
    pub fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(1.0 - 0.5 * self.rng.next_f64()).max(FLOOR)
    }

    /// After a healthy connection: start again from the first step.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 1);
        let delays: Vec<Duration> = (0..8).map(|_| b.delay()).collect();
        let steps = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (d, step) in delays.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *d <= step && *d >= step / 2,
                "{d:?} not within jitter of {step:?}"
            );
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }

    #[test]
    fn never_retries_sooner_than_the_floor() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 3);
        for _ in 0..20 {
            assert!(b.delay() >= FLOOR);
        }
    }
}
