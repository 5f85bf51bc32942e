//! Density control: at most N notes start in any sliding window of time, shared fairly
//! between sources.

use std::collections::VecDeque;

/// Admits at most `max_notes` starts in any window of `window` seconds.
pub struct Throttle {
    starts: VecDeque<f64>,
    max_notes: usize,
    window: f64,
}

impl Throttle {
    pub fn new(max_notes: usize, window_ms: u64) -> Self {
        Self {
            starts: VecDeque::with_capacity(max_notes.saturating_add(1).min(1024)),
            max_notes,
            window: window_ms as f64 / 1000.0,
        }
    }

    /// Whether a note may start at time `at` (seconds); if so it is counted.
    pub fn admit(&mut self, at: f64) -> bool {
        while self.starts.front().is_some_and(|&t| at - t >= self.window) {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.max_notes {
            return false;
        }
        self.starts.push_back(at);
        true
    }
}

/// A [`Throttle`] shared by several sources, fairly: a source alone may use the whole
/// limit, but while others are playing, a source past its share (the limit divided by
/// the sources heard in the window) only takes a note if that leaves room for what the
/// others' shares still allow them. A busy wiki cannot silence a quiet one.
pub struct FairThrottle {
    starts: VecDeque<(f64, usize)>,
    counts: Vec<usize>,
    max_notes: usize,
    window: f64,
}

impl FairThrottle {
    pub fn new(max_notes: usize, window_ms: u64, sources: usize) -> Self {
        Self {
            starts: VecDeque::with_capacity(max_notes.saturating_add(1).min(1024)),
            counts: vec![0; sources.max(1)],
            max_notes,
            window: window_ms as f64 / 1000.0,
        }
    }

    /// Whether a note of `source` may start at time `at` (seconds); if so it is counted.
    pub fn admit(&mut self, at: f64, source: usize) -> bool {
        while let Some(&(t, s)) = self.starts.front() {
            if at - t < self.window {
                break;
            }
            self.starts.pop_front();
            self.counts[s] -= 1;
        }
        if source >= self.counts.len() {
            self.counts.resize(source + 1, 0);
        }
        if self.starts.len() >= self.max_notes {
            return false;
        }
        let active = self
            .counts
            .iter()
            .enumerate()
            .filter(|&(i, &c)| c > 0 || i == source)
            .count();
        if active > 1 {
            let share = self.max_notes.div_ceil(active);
            if self.counts[source] >= share {
                // Past its share: only from room the others' shares leave free.
                let reserved: usize = self
                    .counts
                    .iter()
                    .enumerate()
                    .filter(|&(i, &c)| i != source && c > 0)
                    .map(|(_, &c)| share.saturating_sub(c))
                    .sum();
                if self.starts.len() + reserved >= self.max_notes {
                    return false;
                }
            }
        }
        self.starts.push_back((at, source));
        self.counts[source] += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_alone_uses_the_whole_limit() {
        let mut t = FairThrottle::new(10, 1000, 2);
        let admitted = (0..20).filter(|i| t.admit(*i as f64 * 0.001, 0)).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_busy_source_leaves_a_quiet_one_its_share() {
        let mut t = FairThrottle::new(10, 1000, 2);
        // The quiet source plays once, then the busy one floods: it gets what is left
        // after the quiet one's share, and the quiet one still gets its share.
        assert!(t.admit(0.0, 1));
        let busy = (0..100)
            .filter(|i| t.admit(0.001 + *i as f64 * 1e-5, 0))
            .count();
        assert_eq!(busy, 5, "10 notes, shares of 5: the busy source keeps 5");
        let quiet = (0..10)
            .filter(|i| t.admit(0.01 + *i as f64 * 1e-5, 1))
            .count();
        assert_eq!(
            quiet, 4,
            "the quiet source still gets the rest of its share"
        );
        // A new window: the limit is whole again.
        assert!(t.admit(2.0, 0));
    }
}
