//! carillon measuring itself: `bench render` (the engine alone, on a null output),
//! `bench silence` (what the engine spends when nothing plays) and `bench latency`
//! (the whole path, in real time, on the audio device).

pub mod latency;
pub mod render;
pub mod silence;

use std::time::Duration;

use serde::Serialize;

/// Median, p99 and maximum of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    pub median_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Timing {
    pub fn of(mut samples: Vec<Duration>) -> Timing {
        if samples.is_empty() {
            return Timing {
                median_us: 0.0,
                p99_us: 0.0,
                max_us: 0.0,
            };
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        Timing {
            median_us: at(0.5),
            p99_us: at(0.99),
            max_us: samples.last().map_or(0.0, |d| us(*d)),
        }
    }
}
