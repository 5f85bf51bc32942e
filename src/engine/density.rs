//! Calm at any rate: each new note's gain follows a slow estimate of how many notes a
//! second are starting, so that a busy stream is heard as more notes rather than as a
//! louder room.
//!
//! Overlapping notes add up in power: twice the notes, 3 dB more. Scaling each new
//! note by `(reference / rate) ^ exponent` (0.5 keeps the summed power steady) undoes
//! that once notes overlap, and leaves a sparse stream, whose notes ring alone, at
//! full gain. Only gains at note start are touched, never a sounding note: there is
//! nothing to pump. It runs on the control side, on stream time (the notes' start
//! frames), so a render and a live play of the same notes get the same gains.

use crate::config::DensityConfig;

/// A running estimate of notes per second, and the gain it asks of the next note.
#[derive(Debug, Clone)]
pub struct Density {
    enabled: bool,
    reference: f64,
    exponent: f64,
    /// Time constant of the estimate (s).
    tau: f64,
    /// Notes a second, as of `last`.
    rate: f64,
    /// Stream time (s) of the last note counted.
    last: f64,
}

impl Density {
    pub fn new(config: &DensityConfig) -> Self {
        Self {
            enabled: config.enabled,
            reference: config.reference_rate,
            exponent: config.exponent,
            tau: config.time_s,
            rate: 0.0,
            last: 0.0,
        }
    }

    /// Count a note starting at stream time `at` (seconds) and return the gain it gets.
    ///
    /// The estimate is a leaky count: every note adds `1 / tau`, which leaks away with
    /// time constant `tau`, so a steady rate `r` reads `r` on average. A note is counted
    /// before its own gain is read, so the first note of a burst already starts
    /// to calm the ones after it, and at a steady rate the gain wobbles by no more than
    /// the estimate does (about `1 / (r·tau)`).
    pub fn note_at(&mut self, at: f64) -> f32 {
        // Notes from several sources can arrive slightly out of start order; time
        // never runs back for the estimate.
        let dt = (at - self.last).max(0.0);
        self.rate = self.rate * (-dt / self.tau).exp() + 1.0 / self.tau;
        self.last = self.last.max(at);
        self.gain()
    }

    /// The gain a note would get now, without counting it.
    pub fn gain(&self) -> f32 {
        if !self.enabled || self.rate <= self.reference {
            return 1.0;
        }
        (self.reference / self.rate).powf(self.exponent) as f32
    }

    /// The current estimate of notes a second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn density(enabled: bool) -> Density {
        Density::new(&DensityConfig {
            enabled,
            reference_rate: 0.5,
            exponent: 0.5,
            time_s: 5.0,
        })
    }

    /// The mean gain of notes arriving at a steady `rate` for `seconds`, after a warm-up.
    fn steady(d: &mut Density, rate: f64, from: f64, seconds: f64) -> f64 {
        let n = (rate * seconds) as usize;
        let gains: Vec<f32> = (0..n).map(|i| d.note_at(from + i as f64 / rate)).collect();
        let settled = &gains[gains.len() / 2..];
        settled.iter().map(|&g| g as f64).sum::<f64>() / settled.len() as f64
    }

    #[test]
    fn a_sparse_stream_keeps_its_full_gain() {
        let mut d = density(true);
        assert_eq!(steady(&mut d, 0.2, 0.0, 300.0), 1.0);
    }

    #[test]
    fn a_steady_rate_reads_as_itself_and_power_stays_steady() {
        for rate in [2.0, 8.0, 50.0] {
            let mut d = density(true);
            let g = steady(&mut d, rate, 0.0, 120.0);
            // rate · gain² is the summed power of overlapping notes: it should not
            // grow with the rate.
            let power = rate * g * g;
            assert!(
                (power - 0.5).abs() < 0.05,
                "at {rate} notes/s the mean gain is {g:.3}: power {power:.3}, not 0.5"
            );
            assert!((d.rate() - rate).abs() / rate < 0.15, "{}", d.rate());
        }
    }

    #[test]
    fn a_change_of_rate_is_followed_over_seconds() {
        let mut d = density(true);
        steady(&mut d, 1.0, 0.0, 60.0);
        // The stream jumps to 20 notes a second: a second in, the gain has only
        // begun to fall; 15 s in (three time constants) it is close to where a
        // steady 20 notes/s puts it.
        let mut at = 60.0;
        let mut gain_after = |seconds: f64, at: &mut f64| {
            let mut g = 1.0;
            while *at < 60.0 + seconds {
                g = d.note_at(*at);
                *at += 0.05;
            }
            g
        };
        let after_one = gain_after(1.0, &mut at);
        let after_fifteen = gain_after(15.0, &mut at);
        let settled = (0.5f32 / 20.0).sqrt();
        assert!(after_one > 0.3, "{after_one}: the gain fell in one second");
        assert!(
            (after_fifteen - settled).abs() < 0.03,
            "{after_fifteen} against {settled}"
        );
    }

    #[test]
    fn disabled_every_note_keeps_its_gain() {
        let mut d = density(false);
        assert_eq!(steady(&mut d, 50.0, 0.0, 60.0), 1.0);
    }
}
