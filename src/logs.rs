//! Log lines that can repeat: at most one per interval, saying how many occurrences it
//! stands for, so that a device that glitches fifty times a second or a feed that
//! sends junk all day cannot fill a disk or drown the one line that matters.

use std::time::{Duration, Instant};

/// Counts occurrences of one kind of event and says when a line about them is due.
#[derive(Debug)]
pub struct Repeated {
    interval: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl Repeated {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: 0,
        }
    }

    /// Count `n` occurrences at `now`. Returns how many to report if a line is due: the
    /// first occurrence is reported at once, later ones at most once per interval, each
    /// report covering everything counted since the previous one.
    pub fn count(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.pending += n;
        if self.pending == 0 {
            return None;
        }
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_at_once_then_one_line_per_interval_with_the_count() {
        let t0 = Instant::now();
        let mut r = Repeated::new(Duration::from_secs(10));
        assert_eq!(r.count(0, t0), None, "nothing to report");
        assert_eq!(r.count(1, t0), Some(1));
        // Fifty a second for nine seconds: held back.
        for i in 1..450u64 {
            assert_eq!(r.count(1, t0 + Duration::from_millis(20 * i)), None);
        }
        // Ten seconds on, one line for all of them.
        assert_eq!(r.count(1, t0 + Duration::from_secs(10)), Some(450));
        assert_eq!(r.count(3, t0 + Duration::from_secs(11)), None);
        assert_eq!(r.count(0, t0 + Duration::from_secs(20)), Some(3));
    }
}
