//! The stream clock: which instant each stream frame belongs to, filtered.
//!
//! The control half turns an event's arrival instant into a stream frame with the
//! origin the audio half publishes (`EngineShared::origin_ns`). Taken from a single
//! callback's timestamp, that origin moves with whatever made this callback wake a
//! little late — hundreds of microseconds on a busy machine, tens of samples — and every
//! note scheduled from it moves with it. A delay-locked loop (as JACK and PipeWire run
//! against their sound cards; F. Adriaensen, "Using a DLL to filter time", 2005) keeps a
//! running estimate of the time of a frame and of the length of a frame, and corrects
//! both by a small share of each error: the origin it gives follows a device whose
//! crystal runs a few ppm off, and starts again from the timestamps after a stall (an
//! xrun, a suspended stream) has shifted the stream against the clock.
//!
//! A callback can wake late but never early: its lateness is the machine's, and how
//! late callbacks come on average moves with the load (two busy processes beside it
//! move that average by tens of microseconds over seconds, a sample or two), while the
//! earliest callbacks, on time but for the shortest wake-up the machine allows, stay
//! within a few microseconds of the device's clock. So the loop is fed, every tenth of a
//! second, the earliest callback of that window rather than each callback: the origin
//! lies on that lower edge. For the same reason a stream that has moved is found again
//! from the earliest of the callbacks that showed it moved, not from their mean, which the
//! late ones among them would pull later. The loop locks on a first callback, as late as
//! any other; its first window only finds where the on-time ones lie, moving the loop's
//! time there without touching its rate, which a correction of that size would throw
//! off for seconds. And what counts as a moved stream scales with how closely the
//! windows usually keep to the loop, so that on a quiet machine an xrun that moves the
//! stream by two samples is found within a third of a second.
//!
//! Everything here is arithmetic on a few `f64`s: it runs in the audio callback, so it
//! does not allocate, lock, block or panic.

/// How many seconds of callbacks make one window, whose earliest callback is one
/// observation of the loop: enough callbacks (18 at 256 frames, 75 at 64) for one of
/// them to be on time, short enough to find a moved stream within a fraction of a second.
const WINDOW_S: f64 = 0.1;
/// Bandwidth of the loop just after it locks (Hz): wide, so that it forgets the first
/// window within a second or two, and narrow enough against one observation per window
/// (2π × 0.5 Hz × 0.1 s ≈ 0.3) for the loop to stay well damped.
const BANDWIDTH_START_HZ: f64 = 0.5;
/// Bandwidth once settled (Hz): narrow, so that a device a few ppm off is followed
/// without the windows' own scatter moving the origin.
const BANDWIDTH_SETTLED_HZ: f64 = 0.02;
/// How fast the bandwidth narrows: it is `start / (1 + t / NARROWING_S)` after `t`
/// seconds, settled after about 25 s.
const NARROWING_S: f64 = 1.0;
/// A callback error larger than this (ns), or half a period if longer, is not jitter
/// but a sign that the stream may have moved against the clock (a server that skipped a
/// period moves it by exactly one)…
const RELOCK_MIN_NS: f64 = 500_000.0;
/// …when it persists for this many callbacks in a row without shrinking: the loop then
/// starts afresh. (A callback that was merely late is followed by others in quick
/// succession, each with a smaller error, as the device's buffer is refilled: the
/// stream has not moved, and the loop holds.) The same count of windows in a row whose
/// earliest callback is off by more than the step (see [`STEP_NS`]) shows a smaller
/// move.
const RELOCK_AFTER: u32 = 3;
/// A window whose earliest callback is further from the loop's time than its windows
/// usually are is not the loop's scatter but a stream that moved by less than a
/// relock's worth: a JACK server that restarts its cycle after waking late, or an xrun,
/// moves it by a sample or a few. How far is `STEP_SCATTERS` times the windows' mean
/// distance from the loop, within `STEP_MIN_NS` (one sample at 48 kHz) and `STEP_NS`
/// (five), which is also where a newly locked loop starts from: on a quiet machine the
/// earliest callbacks lie within a few microseconds of the loop, and a move of two
/// samples is found in three windows, where the loop alone would take seconds.
const STEP_NS: f64 = 100_000.0;
const STEP_MIN_NS: f64 = 20_000.0;
const STEP_SCATTERS: f64 = 8.0;
/// The share of each window's distance that goes into the mean distance.
const SCATTER_WEIGHT: f64 = 0.05;
/// The mean distance a newly locked loop assumes: its step starts at `STEP_NS`.
const SCATTER_START_NS: f64 = STEP_NS / STEP_SCATTERS;
/// However jumbled the timestamps (a server that keeps missing its cycles), the rate is
/// never taken further than this from nominal: real clocks are within 100 ppm, and a
/// rate gone astray would move every origin the loop gives between relocks.
const MAX_RATE_ERROR: f64 = 1e-3;

/// Errors of the same sign in a row, too large to be jitter: how many, and the earliest
/// of them (the least, signed), which is where the stream has moved to.
#[derive(Debug, Clone, Copy, Default)]
struct Outliers {
    count: u32,
    earliest_ns: f64,
}

impl Outliers {
    /// Count `error`, and say whether it makes `RELOCK_AFTER` in a row.
    fn count(&mut self, error: f64) -> bool {
        if self.count > 0 && (error > 0.0) == (self.earliest_ns > 0.0) {
            self.count += 1;
            self.earliest_ns = self.earliest_ns.min(error);
        } else {
            self.count = 1;
            self.earliest_ns = error;
        }
        self.count >= RELOCK_AFTER
    }
}

/// A delay-locked loop from callback timestamps to the stream clock's origin.
#[derive(Debug, Clone)]
pub struct StreamClock {
    /// The nominal length of a frame (ns): `1e9 / sample_rate`.
    period_ns: f64,
    /// Frames in a window.
    window_frames: u64,
    locked: bool,
    /// The loop's time (ns) of stream frame `window_frame`, where the current window
    /// began.
    window_ns: f64,
    window_frame: u64,
    /// The earliest callback's error in the current window (ns), if any callback in it
    /// was not an outlier.
    window_least_ns: f64,
    /// The frame the next callback must start at for the stream to be continuous.
    next_frame: u64,
    /// The filtered length of a frame (ns), the device's real rate.
    frame_ns: f64,
    /// The frame at which the loop last locked, to narrow its bandwidth from there.
    locked_at: u64,
    /// Callbacks in a row too far off to be jitter.
    late: Outliers,
    /// The first window after a lock is still finding where the device's on-time
    /// callbacks lie: its earliest error moves the loop's time by all of it, and
    /// leaves the rate alone.
    first_window: bool,
    /// Windows in a row whose earliest callback was off by more than the step.
    moved: Outliers,
    /// The mean distance (ns) of the windows' earliest callbacks from the loop's time.
    scatter_ns: f64,
    origin_ns: f64,
}

impl StreamClock {
    pub fn new(sample_rate: f64) -> Self {
        let period_ns = 1e9 / sample_rate;
        Self {
            period_ns,
            window_frames: (WINDOW_S * sample_rate).max(1.0) as u64,
            locked: false,
            window_ns: 0.0,
            window_frame: 0,
            window_least_ns: f64::INFINITY,
            next_frame: 0,
            frame_ns: period_ns,
            locked_at: 0,
            late: Outliers::default(),
            first_window: false,
            moved: Outliers::default(),
            scatter_ns: SCATTER_START_NS,
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
        if !self.locked || frame != self.next_frame {
            return self.lock(now_ns, frame, frames);
        }
        self.next_frame = frame + frames as u64;
        let predicted = self.time_of(frame);
        let error = now_ns - predicted;
        let period = frames as f64 * self.frame_ns;
        if error.abs() > RELOCK_MIN_NS.max(0.5 * period) {
            // Catching up (the error shrinking by most of a period a callback) is a late
            // callback being made good, not a moved stream.
            let catching_up =
                self.late.count > 0 && error > 0.0 && error < self.late.earliest_ns - 0.5 * period;
            if catching_up {
                self.late = Outliers::default();
            } else if self.late.count(error) {
                // The stream has moved: to where its earliest callback since says.
                return self.relock(frame, self.late.earliest_ns);
            }
            // Otherwise, a lone late wake-up: the callbacks after it come back on time,
            // so the prediction stands.
        } else {
            self.late = Outliers::default();
            self.window_least_ns = self.window_least_ns.min(error);
        }
        if self.next_frame - self.window_frame >= self.window_frames {
            self.close_window(frame);
        }
        self.origin_ns = self.time_of(frame) - frame as f64 * self.period_ns;
        self.origin_ns
    }

    /// The loop's time (ns) of stream frame `frame`.
    fn time_of(&self, frame: u64) -> f64 {
        self.window_ns + (frame as f64 - self.window_frame as f64) * self.frame_ns
    }

    /// Correct the loop by the current window's earliest error, and start the next
    /// window where this callback ends.
    fn close_window(&mut self, frame: u64) {
        let error = self.window_least_ns;
        let frames = (self.next_frame - self.window_frame) as f64;
        if !error.is_finite() {
            // Every callback of the window was an outlier: nothing to correct by.
        } else if std::mem::take(&mut self.first_window) {
            self.window_ns += error;
        } else {
            let step = (STEP_SCATTERS * self.scatter_ns).clamp(STEP_MIN_NS, STEP_NS);
            if error.abs() > step {
                if self.moved.count(error) {
                    let earliest = self.moved.earliest_ns;
                    self.relock(frame, earliest);
                    return;
                }
            } else {
                self.moved = Outliers::default();
                self.scatter_ns += SCATTER_WEIGHT * (error.abs() - self.scatter_ns);
                let settled_s = (frame - self.locked_at) as f64 * self.period_ns * 1e-9;
                let bandwidth = (BANDWIDTH_START_HZ / (1.0 + settled_s / NARROWING_S))
                    .max(BANDWIDTH_SETTLED_HZ);
                // A critically damped second-order loop: ω = 2π B T for a window of T.
                let omega = 2.0 * std::f64::consts::PI * bandwidth * frames * self.frame_ns * 1e-9;
                self.window_ns += std::f64::consts::SQRT_2 * omega * error;
                self.frame_ns = (self.frame_ns + omega * omega * error / frames).clamp(
                    self.period_ns * (1.0 - MAX_RATE_ERROR),
                    self.period_ns * (1.0 + MAX_RATE_ERROR),
                );
            }
        }
        self.window_ns = self.time_of(self.next_frame);
        self.window_frame = self.next_frame;
        self.window_least_ns = f64::INFINITY;
    }

    /// The stream has moved by `shift_ns`: the loop moves its time, and keeps its rate
    /// and its bandwidth (the device has not changed, and the move is measured by the
    /// earliest callback, as the windows are: widening the loop again would only let
    /// their scatter in). The callback at `frame` opens a new window.
    fn relock(&mut self, frame: u64, shift_ns: f64) -> f64 {
        self.restart_at(frame, self.time_of(frame) + shift_ns)
    }

    /// Start again from this callback's own timestamp.
    fn lock(&mut self, now_ns: f64, frame: u64, frames: usize) -> f64 {
        self.locked = true;
        self.frame_ns = self.period_ns;
        self.next_frame = frame + frames as u64;
        self.locked_at = frame;
        let origin = self.restart_at(frame, now_ns);
        self.first_window = true;
        self.scatter_ns = SCATTER_START_NS;
        origin
    }

    /// Open a window at the callback at `frame`, which the loop now puts at `time_ns`
    /// (that callback counting as on time), with no outliers remembered; the origin
    /// that follows.
    fn restart_at(&mut self, frame: u64, time_ns: f64) -> f64 {
        self.window_ns = time_ns;
        self.window_frame = frame;
        self.window_least_ns = 0.0;
        self.late = Outliers::default();
        self.moved = Outliers::default();
        self.origin_ns = time_ns - frame as f64 * self.period_ns;
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
    /// periods and `stall_ns` later at `stall_at_s`. Its first callback comes
    /// `first_late_ns` late (a stream starting up). Under `load`, seven callbacks in ten
    /// wake up to `load_ns` late, more than the jitter, and `load_ns` itself grows and
    /// shrinks again every eight seconds: how late callbacks are on average moves with
    /// the load, while the ones that wake on time do not. For each callback, an event arrives at a random
    /// instant of the period; `deviation` receives, after `from_s`, how far in samples
    /// the frame the control half would compute for it (`ControlHalf::frame_at`) is from
    /// the frame a perfect clock would give (the true frame, plus the mean lateness).
    struct Device {
        buffer: usize,
        jitter_ns: f64,
        rate_ppm: f64,
        stall_at_s: Option<f64>,
        stall_periods: u64,
        stall_ns: f64,
        first_late_ns: f64,
        load_ns: f64,
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
                stall_ns: 0.0,
                first_late_ns: 0.0,
                load_ns: 0.0,
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
                    shift_ns += (self.stall_periods * self.buffer as u64) as f64 * true_frame_ns
                        + self.stall_ns;
                }
                let true_ns = start_ns + frame as f64 * true_frame_ns + shift_ns;
                let mut late = rng.unit() * self.jitter_ns;
                if frame == 0 {
                    late += self.first_late_ns;
                }
                let t = frame as f64 / SR;
                if rng.unit() < 0.7 {
                    let phase = (t / 8.0 * std::f64::consts::TAU).sin();
                    late += rng.unit() * self.load_ns * (1.0 + phase);
                }
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
    /// narrows from 0.5 Hz), learning the device's rate; from then on it holds.
    const SETTLED_S: f64 = 10.0;
    /// On a device at its nominal rate, it is within a sample sooner.
    const LOCKED_S: f64 = 2.0;

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
                    // The origin lies on the earliest callbacks, the ones on time.
                    let deviation = (origin - 1e6) / PERIOD_NS;
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
    fn starts_land_within_a_sample_two_seconds_after_a_first_callback_milliseconds_late() {
        for buffer in [64, 128, 256] {
            let run = Device {
                first_late_ns: 8e6,
                ..Device::at(buffer)
            }
            .run();
            let early = spread(&run, LOCKED_S);
            assert!(
                early <= 1.0,
                "{buffer} frames: starts wander by {early:.2} samples from {LOCKED_S} s"
            );
        }
    }

    #[test]
    fn load_that_makes_callbacks_later_on_average_does_not_move_the_clock() {
        for buffer in [64, 128, 256] {
            let run = Device {
                jitter_ns: 100_000.0,
                load_ns: 200_000.0,
                seconds: 30.0,
                ..Device::at(buffer)
            }
            .run();
            let loaded = spread(&run, LOCKED_S);
            assert!(
                loaded <= 1.0,
                "{buffer} frames: starts wander by {loaded:.2} samples under a changing load"
            );
        }
    }

    #[test]
    fn a_stream_moved_by_a_few_samples_is_followed_within_a_second() {
        // A JACK server that woke 150 µs late and took up its cycle from there.
        for buffer in [64, 256] {
            let run = Device {
                stall_at_s: Some(20.0),
                stall_ns: 150_000.0,
                ..Device::at(buffer)
            }
            .run();
            let after = spread(&run, 21.0);
            assert!(
                after <= 1.0,
                "{buffer} frames: {after:.2} samples from a second after a move of 150 µs"
            );
        }
    }

    #[test]
    fn on_a_quiet_machine_starts_land_within_half_a_sample_from_a_quarter_second_in() {
        // The first callback, which the loop locks on, is up to 100 µs late like any
        // other: the first window finds where the on-time ones lie, and the loop's rate
        // is not disturbed by having been locked off them.
        for buffer in [64, 128, 256] {
            let run = Device {
                jitter_ns: 100_000.0,
                seconds: 20.0,
                ..Device::at(buffer)
            }
            .run();
            let early = spread(&run, 0.25);
            assert!(
                early <= 0.5,
                "{buffer} frames: starts wander by {early:.2} samples from 0.25 s"
            );
        }
    }

    #[test]
    fn a_stream_moved_by_two_or_three_samples_is_followed_within_a_second() {
        // An xrun, or a JACK server taking up its cycle from a late wake-up, that moves
        // the stream by a few samples: on a quiet machine, more than the windows'
        // scatter. (A move of one sample is within the step's floor, and the loop
        // itself follows it.)
        for buffer in [64, 256] {
            for samples in [2.0, 3.0] {
                let run = Device {
                    jitter_ns: 100_000.0,
                    stall_at_s: Some(20.0),
                    stall_ns: samples * PERIOD_NS,
                    seconds: 30.0,
                    ..Device::at(buffer)
                }
                .run();
                let after = spread(&run, 21.0);
                assert!(
                    after <= 0.5,
                    "{buffer} frames: {after:.2} samples from a second after a move of {samples} samples"
                );
            }
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
