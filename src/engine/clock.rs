//! The stream clock: which instant each stream frame belongs to, filtered.
//!
//! The control half turns an event's arrival instant into a stream frame with the
//! origin the audio half publishes (`EngineShared::origin_ns`). Taken from a single
//! callback's timestamp, that origin moves with whatever made this callback wake a
//! little late — hundreds of microseconds on a busy machine, tens of samples — and every
//! note scheduled from it moves with it. A delay-locked loop (as JACK and PipeWire run
//! against their sound cards; F. Adriaensen, "Using a DLL to filter time", 2005) keeps a
//! running estimate of the time of the next callback and of the length of a frame, and
//! corrects both by a small share of each callback's error: the origin it gives stays
//! within a sample of the callbacks' average timing, follows a device whose crystal runs
//! a few ppm off, and starts again from the raw timestamps after a stall (an xrun, a
//! suspended stream) has shifted the stream against the clock.
//!
//! Everything here is arithmetic on a few `f64`s: it runs in the audio callback, so it
//! does not allocate, lock, block or panic.

/// Bandwidth of the loop just after it locks (Hz): wide, so that it forgets the first
/// callback's timestamp within a second or two.
const BANDWIDTH_START_HZ: f64 = 2.0;
/// Bandwidth once settled (Hz): narrow, so that a callback's lateness moves the origin
/// by a small fraction of itself. At 0.02 Hz, 400 µs of jitter at 256-frame periods
/// moves it by under a sample (see the tests).
const BANDWIDTH_SETTLED_HZ: f64 = 0.02;
/// How fast the bandwidth narrows: it is `start / (1 + t / NARROWING_S)` after `t`
/// seconds, settled after about 25 s.
const NARROWING_S: f64 = 0.25;
/// A callback error larger than this (ns) counts at most this much: one very late
/// wake-up must not pull the loop by its full size.
const ERROR_CLAMP_NS: f64 = 1_000_000.0;
/// An error beyond this (ns), or half a period if longer, is not jitter but a sign that
/// the stream may have moved against the clock (a server that skipped a period moves it
/// by exactly one)…
const RELOCK_MIN_NS: f64 = 500_000.0;
/// …when it persists for this many callbacks in a row without shrinking: the loop then
/// starts afresh. (A callback that was merely late is followed by others in quick
/// succession, each with a smaller error, as the device's buffer is refilled: the
/// stream has not moved, and the loop holds.)
const RELOCK_AFTER: u32 = 3;
/// However jumbled the timestamps (a server that keeps missing its cycles), the rate is
/// never taken further than this from nominal: real clocks are within 100 ppm, and a
/// rate gone astray would move every origin the loop gives between relocks.
const MAX_RATE_ERROR: f64 = 1e-3;

/// A delay-locked loop from callback timestamps to the stream clock's origin.
#[derive(Debug, Clone)]
pub struct StreamClock {
    /// The nominal length of a frame (ns): `1e9 / sample_rate`.
    period_ns: f64,
    locked: bool,
    /// The predicted time (ns) of the callback that will start at `next_frame`.
    next_ns: f64,
    next_frame: u64,
    /// The filtered length of a frame (ns), the device's real rate.
    frame_ns: f64,
    /// The frame at which the loop last locked, to narrow its bandwidth from there.
    locked_at: u64,
    /// Callbacks in a row whose error was too large to be jitter, the last one's error,
    /// and their sum.
    outliers: u32,
    outlier_ns: f64,
    outliers_ns: f64,
    origin_ns: f64,
}

impl StreamClock {
    pub fn new(sample_rate: f64) -> Self {
        let period_ns = 1e9 / sample_rate;
        Self {
            period_ns,
            locked: false,
            next_ns: 0.0,
            next_frame: 0,
            frame_ns: period_ns,
            locked_at: 0,
            outliers: 0,
            outlier_ns: 0.0,
            outliers_ns: 0.0,
            origin_ns: 0.0,
        }
    }

    /// A callback at `now_ns` that renders `frames` frames from stream frame `frame`.
    /// Returns the origin: the instant (ns, on the same clock as `now_ns`) at which
    /// stream frame 0 would have been rendered, so that frame `f` belongs to
    /// `origin + f × 1e9 / sample_rate` around now.
    pub fn update(&mut self, now_ns: f64, frame: u64, frames: usize) -> f64 {
        if frames == 0 || !now_ns.is_finite() {
            return self.origin_ns;
        }
        let n = frames as f64;
        if !self.locked || frame != self.next_frame {
            return self.lock(now_ns, frame, frames);
        }
        let error = now_ns - self.next_ns;
        // This callback's filtered time is the loop's prediction for it.
        let mut filtered = self.next_ns;
        let period = n * self.frame_ns;
        if error.abs() > RELOCK_MIN_NS.max(0.5 * period) {
            // Catching up (the error shrinking by most of a period a callback) is a late
            // callback being made good, not a moved stream.
            let catching_up =
                self.outliers > 0 && error.abs() < self.outlier_ns.abs() - 0.5 * period;
            if catching_up || self.outliers == 0 {
                self.outliers = 0;
                self.outliers_ns = 0.0;
            }
            self.outliers += 1;
            self.outliers_ns += error;
            self.outlier_ns = error;
            if self.outliers >= RELOCK_AFTER {
                // The stream has moved: by the errors' mean, which is steadier than any
                // one of them. The rate holds; the bandwidth widens again to settle.
                filtered += self.outliers_ns / f64::from(self.outliers);
                self.outliers = 0;
                self.locked_at = frame;
            }
            // Otherwise, a lone late wake-up: the callbacks after it come back on time,
            // so the prediction stands.
            self.next_ns = filtered + period;
        } else {
            self.outliers = 0;
            let error = error.clamp(-ERROR_CLAMP_NS, ERROR_CLAMP_NS);
            let settled_s = (frame - self.locked_at) as f64 * self.period_ns * 1e-9;
            let bandwidth =
                (BANDWIDTH_START_HZ / (1.0 + settled_s / NARROWING_S)).max(BANDWIDTH_SETTLED_HZ);
            // A critically damped second-order loop: ω = 2π B T for a period T.
            let omega = 2.0 * std::f64::consts::PI * bandwidth * period * 1e-9;
            let b = std::f64::consts::SQRT_2 * omega;
            let c = omega * omega;
            self.next_ns = filtered + b * error + period;
            self.frame_ns = (self.frame_ns + c * error / n).clamp(
                self.period_ns * (1.0 - MAX_RATE_ERROR),
                self.period_ns * (1.0 + MAX_RATE_ERROR),
            );
        }
        self.next_frame = frame + frames as u64;
        self.origin_ns = filtered - frame as f64 * self.period_ns;
        self.origin_ns
    }

    /// Start again from this callback's own timestamp.
    fn lock(&mut self, now_ns: f64, frame: u64, frames: usize) -> f64 {
        self.locked = true;
        self.frame_ns = self.period_ns;
        self.next_ns = now_ns + frames as f64 * self.period_ns;
        self.next_frame = frame + frames as u64;
        self.locked_at = frame;
        self.outliers = 0;
        self.outliers_ns = 0.0;
        self.origin_ns = now_ns - frame as f64 * self.period_ns;
        self.origin_ns
    }
}

#[cfg(test)]
mod tests {
    use super::StreamClock;

    const SR: f64 = 48_000.0;
    const PERIOD_NS: f64 = 1e9 / SR;

    /// A small deterministic generator (xorshift), so that every run sees the same jitter.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A device at `rate_ppm` off nominal, calling back every `buffer` frames at the
    /// true time of its frame plus a lateness of up to `jitter_ns` (and, one callback in
    /// 500, one to three milliseconds more), with the stream moved `stall_periods`
    /// periods later at `stall_at_s`. For each callback, an event arrives at a random
    /// instant of the period; `deviation` receives, after `from_s`, how far in samples
    /// the frame the control half would compute for it (`ControlHalf::frame_at`) is from
    /// the frame a perfect clock would give (the true frame, plus the mean lateness).
    struct Device {
        buffer: usize,
        jitter_ns: f64,
        rate_ppm: f64,
        stall_at_s: Option<f64>,
        stall_periods: u64,
        seconds: f64,
        raw: bool,
    }

    impl Device {
        fn at(buffer: usize) -> Self {
            Device {
                buffer,
                jitter_ns: 400_000.0,
                rate_ppm: 0.0,
                stall_at_s: None,
                stall_periods: 0,
                seconds: 45.0,
                raw: false,
            }
        }

        /// (time in seconds, deviation in samples) for every callback.
        fn run(&self) -> Vec<(f64, f64)> {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut clock = StreamClock::new(SR);
            let true_frame_ns = PERIOD_NS * (1.0 + self.rate_ppm * 1e-6);
            let start_ns = 5e6;
            let mut shift_ns = 0.0;
            let mut frame = 0u64;
            let mut out = Vec::new();
            let stall_frame = self
                .stall_at_s
                .map(|s| (s * SR) as u64 / self.buffer as u64 * self.buffer as u64);
            while (frame as f64) < self.seconds * SR {
                if Some(frame) == stall_frame {
                    shift_ns += (self.stall_periods * self.buffer as u64) as f64 * true_frame_ns;
                }
                let true_ns = start_ns + frame as f64 * true_frame_ns + shift_ns;
                let mut late = rng.unit() * self.jitter_ns;
                if rng.unit() < 0.002 {
                    late += 1e6 + 2e6 * rng.unit();
                }
                let now = true_ns + late;
                let origin = if self.raw {
                    now - frame as f64 * PERIOD_NS
                } else {
                    clock.update(now, frame, self.buffer)
                };
                let arrival = true_ns + rng.unit() * self.buffer as f64 * true_frame_ns;
                let computed = (arrival - origin) / PERIOD_NS;
                let perfect =
                    (arrival - start_ns - shift_ns - self.jitter_ns / 2.0) / true_frame_ns;
                out.push((frame as f64 / SR, computed - perfect));
                frame += self.buffer as u64;
            }
            out
        }
    }

    /// The largest deviation from `from_s` on, around the median deviation (a constant
    /// offset is part of the scheduling latency, not an error).
    fn spread(run: &[(f64, f64)], from_s: f64) -> f64 {
        let mut devs: Vec<f64> = run
            .iter()
            .filter(|(t, _)| *t >= from_s)
            .map(|(_, d)| *d)
            .collect();
        devs.sort_by(f64::total_cmp);
        let median = devs[devs.len() / 2];
        devs.iter().map(|d| (d - median).abs()).fold(0.0, f64::max)
    }

    /// The loop settles within about ten seconds of its first callback (its bandwidth
    /// narrows from 2 Hz); from then on it holds.
    const SETTLED_S: f64 = 10.0;

    #[test]
    fn starts_land_within_a_sample_while_callbacks_jitter_by_hundreds_of_microseconds() {
        for buffer in [64, 128, 256] {
            let filtered = spread(&Device::at(buffer).run(), SETTLED_S);
            assert!(
                filtered <= 1.0,
                "{buffer} frames: starts wander by {filtered:.2} samples"
            );
            // The same callbacks taken one at a time, as before the loop.
            let raw = spread(
                &Device {
                    raw: true,
                    ..Device::at(buffer)
                }
                .run(),
                SETTLED_S,
            );
            assert!(raw > 10.0, "{buffer} frames: raw spread {raw:.2}");
        }
    }

    #[test]
    fn follows_a_device_fifty_ppm_off_its_nominal_rate() {
        for rate_ppm in [50.0, -50.0] {
            for buffer in [64, 256] {
                let run = Device {
                    rate_ppm,
                    seconds: 120.0,
                    ..Device::at(buffer)
                }
                .run();
                let drift = spread(&run, SETTLED_S);
                assert!(
                    drift <= 1.0,
                    "{rate_ppm} ppm at {buffer} frames: starts wander by {drift:.2} samples"
                );
            }
        }
    }

    #[test]
    fn locks_again_after_a_stall_instead_of_drifting_off() {
        // A server that skips one period, and a stream suspended for fifty.
        for (buffer, stall_periods) in [(64, 1), (256, 1), (64, 50), (256, 50)] {
            let run = Device {
                stall_at_s: Some(20.0),
                stall_periods,
                ..Device::at(buffer)
            }
            .run();
            let before = spread(
                &run.iter()
                    .copied()
                    .filter(|(t, _)| *t < 20.0)
                    .collect::<Vec<_>>(),
                SETTLED_S,
            );
            assert!(
                before <= 1.0,
                "{buffer} frames: {before:.2} before the stall"
            );
            // Within a few callbacks the error is back under half a millisecond…
            let period_s = buffer as f64 / SR;
            let soon: f64 = run
                .iter()
                .filter(|(t, _)| *t >= 20.0 + 4.0 * period_s && *t < 21.0)
                .map(|(_, d)| d.abs())
                .fold(0.0, f64::max);
            assert!(
                soon < 24.0,
                "{buffer} frames: {soon:.1} samples off just after a stall of {stall_periods} periods"
            );
            // …and once settled again, within a sample.
            let after = spread(&run, 20.0 + SETTLED_S);
            assert!(
                after <= 1.0,
                "{buffer} frames: {after:.2} after a stall of {stall_periods} periods"
            );
        }
    }

    #[test]
    fn a_late_callback_made_good_by_a_burst_is_not_a_stall() {
        for buffer in [64usize, 256] {
            let period_ns = buffer as f64 * PERIOD_NS;
            let mut clock = StreamClock::new(SR);
            let mut rng = Rng(7);
            let mut worst: f64 = 0.0;
            for k in 0..20_000u64 {
                let frame = k * buffer as u64;
                let true_ns = 1e6 + frame as f64 * PERIOD_NS;
                // Every 1000th callback wakes 15 ms late; the ones it held up follow at
                // once, 50 µs apart, until the device's buffer is full again.
                let k_in = k % 1000;
                let held = (15e6 / period_ns) as u64;
                let now = if (500..=500 + held).contains(&k_in) {
                    let late = 1e6 + ((k - k_in + 500) * buffer as u64) as f64 * PERIOD_NS + 15e6;
                    (late + (k_in - 500) as f64 * 50e3).max(true_ns)
                } else {
                    true_ns + rng.unit() * 100e3
                };
                let origin = clock.update(now, frame, buffer);
                if frame as f64 / SR >= SETTLED_S {
                    let deviation = (origin - (1e6 + 50e3)) / PERIOD_NS;
                    worst = worst.max(deviation.abs());
                }
            }
            assert!(
                worst <= 1.0,
                "{buffer} frames: a late callback moved the clock by {worst:.1} samples"
            );
        }
    }

    #[test]
    fn a_caller_that_skips_frames_restarts_the_loop_from_its_timestamp() {
        let mut clock = StreamClock::new(SR);
        for k in 0..1000u64 {
            clock.update(1e6 + k as f64 * 64.0 * PERIOD_NS, k * 64, 64);
        }
        // A new stream continuing the clock elsewhere (say, after a device was lost).
        let origin = clock.update(9e9, 1_000_000, 64);
        assert_eq!(origin, 9e9 - 1_000_000.0 * PERIOD_NS);
    }

    #[test]
    fn an_empty_callback_or_a_broken_timestamp_changes_nothing() {
        let mut clock = StreamClock::new(SR);
        let origin = clock.update(1e6, 0, 64);
        assert_eq!(clock.update(5e6, 64, 0), origin);
        assert_eq!(clock.update(f64::NAN, 64, 64), origin);
    }
}
