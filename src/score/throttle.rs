//! Density control: at most N notes start in any sliding window of time.

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
