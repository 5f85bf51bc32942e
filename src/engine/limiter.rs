//! The master bus's look-ahead peak limiter: no sample leaves it above the ceiling, and
//! the gain glides down before a peak instead of jumping at it.
//!
//! It works on sub-blocks of 16 frames. Each sub-block entering the look-ahead window
//! says the gain it needs (ceiling / its peak). The audio comes out delayed by the
//! window, and over each sub-block the gain moves in a straight line to the highest
//! value from which every sub-block in the window can still be reached by a straight
//! descent in time, and never above the gain the sub-block itself needs; so the ceiling
//! holds exactly, with the planning done once per sub-block and a multiply per sample.
//! Released, the gain recovers towards 1 with the release time constant.
//!
//! It replaced fundsp's `limiter_stereo`, which keeps a sliding maximum and a follower
//! per sample and cost as much as the reverb. Allocates only in [`Limiter::new`].

use super::peak_bits;
use crate::simd::{dispatch_by_width, Width};

/// Frames per sub-block: the limiter's gain resolution.
const SUB: usize = 16;

pub struct Limiter {
    ceiling: f32,
    /// Sub-blocks of look-ahead.
    window: usize,
    /// The audio on its way out, `window * SUB` frames long.
    delay_l: Vec<f32>,
    delay_r: Vec<f32>,
    pos: usize,
    /// The gain each sub-block in the window needs: `window + 1` entries, oldest (the
    /// sub-block being output) at `head`.
    needs: Vec<f32>,
    head: usize,
    /// Gain at the end of the last sub-block output.
    gain: f32,
    /// Per sub-block, the share of the distance to 1 the gain keeps when released.
    release_keep: f32,
    /// Frames of silent input in a row: once they fill the look-ahead and the gain is
    /// back at 1, silence comes out of silence and there is nothing to compute.
    quiet: usize,
    /// Sub-blocks for which a need under 1 is still in the window. While there is none
    /// and the gain is at 1, the plan is known without making it: the gain stays at 1,
    /// and the audio only passes through the delay. That is nearly always, under a
    /// ceiling only the loudest moments reach.
    pressed: usize,
    /// Sub-blocks whose gain was planned (not passed through): for tests.
    planned: u64,
    /// Plan every sub-block, the pass-through never taken: for the test that compares
    /// the two.
    #[cfg(test)]
    always_plan: bool,
    width: Width,
}

/// The look-ahead, in frames, of a limiter with this attack: the attack rounded up to
/// whole sub-blocks. Every note is heard this much later than it is scheduled.
pub fn lookahead_frames(attack_ms: f64, sample_rate: f64) -> usize {
    window(attack_ms, sample_rate) * SUB
}

fn window(attack_ms: f64, sample_rate: f64) -> usize {
    (attack_ms.max(0.0) / 1000.0 * sample_rate / SUB as f64).ceil() as usize
}

impl Limiter {
    pub fn new(attack_ms: f64, release_ms: f64, ceiling: f32, sample_rate: f64) -> Self {
        let window = window(attack_ms, sample_rate);
        let release_sub_blocks = (release_ms.max(1.0) / 1000.0 * sample_rate / SUB as f64).max(1.0);
        Limiter {
            ceiling,
            window,
            delay_l: vec![0.0; window * SUB],
            delay_r: vec![0.0; window * SUB],
            pos: 0,
            needs: vec![1.0; window + 1],
            head: 0,
            gain: 1.0,
            release_keep: (-1.0 / release_sub_blocks).exp() as f32,
            quiet: usize::MAX,
            pressed: 0,
            planned: 0,
            #[cfg(test)]
            always_plan: false,
            width: Width::detect(),
        }
    }

    /// Run the hot loops at `width` if the CPU has it (the baseline otherwise): for
    /// tests and benchmarks that compare the two builds.
    pub fn set_width(&mut self, width: Width) {
        self.width = width.supported();
    }

    /// Forget everything heard: an empty look-ahead and unity gain, as when new.
    pub fn reset(&mut self) {
        self.delay_l.fill(0.0);
        self.delay_r.fill(0.0);
        self.needs.fill(1.0);
        self.gain = 1.0;
        self.quiet = usize::MAX;
        self.pressed = 0;
    }

    /// Whether a block of silence would leave the limiter as silence and leave it as
    /// it is: its look-ahead holds nothing and its gain is back at 1. The engine then
    /// does not call it.
    pub fn idle(&self) -> bool {
        self.quiet > self.window * SUB && self.gain == 1.0
    }

    dispatch_by_width!(
    /// Limit a stereo block in place (any length that is a multiple of 16 frames).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) => process_body, process_wide);

    #[inline(always)]
    fn process_body(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.chunks_exact_mut(SUB).zip(right.chunks_exact_mut(SUB)) {
            self.sub_block(l, r);
        }
    }

    #[inline(always)]
    fn sub_block(&mut self, l: &mut [f32], r: &mut [f32]) {
        let peak = peak(l).max(peak(r));
        self.quiet = if peak == 0.0 {
            self.quiet.saturating_add(SUB)
        } else {
            0
        };
        let need = if peak > self.ceiling {
            self.ceiling / peak
        } else {
            1.0
        };
        if need < 1.0 {
            // It is planned for from now until it leaves the window, once output.
            self.pressed = self.window + 1;
        }
        // The newest sub-block joins the window; the oldest is the one output now.
        let n = self.needs.len();
        self.needs[wrap(self.head + self.window, n)] = need;
        if self.window > 0 {
            for i in 0..SUB {
                let p = self.pos + i;
                std::mem::swap(&mut l[i], &mut self.delay_l[p]);
                std::mem::swap(&mut r[i], &mut self.delay_r[p]);
            }
            self.pos += SUB;
            if self.pos == self.delay_l.len() {
                self.pos = 0;
            }
        }
        let pass_through = self.pressed == 0 && self.gain == 1.0;
        #[cfg(test)]
        let pass_through = pass_through && !self.always_plan;
        if !pass_through {
            self.plan(l, r);
            self.pressed = self.pressed.saturating_sub(1);
        }
        self.head = wrap(self.head + 1, n);
    }

    /// Move the gain over the sub-block being output, and apply it. With every need in
    /// the window at 1 and the gain at 1 this would keep the gain at exactly 1 and
    /// change no sample, which is why [`Limiter::sub_block`] may skip it.
    #[inline(always)]
    fn plan(&mut self, l: &mut [f32], r: &mut [f32]) {
        self.planned += 1;
        let n = self.needs.len();
        let now = self.needs[self.head];
        // Without look-ahead the gain can only drop at once; with it, the previous
        // sub-block already brought it down to at most `now`.
        let start = self.gain.min(now);
        let mut released = 1.0 - (1.0 - start) * self.release_keep;
        if released > 1.0 - 1e-6 || released == start {
            // A millionth short of 1 (-0.00001 dB) is 1: the release ends, where f32
            // rounding alone would take seconds more to get there, or never: each step
            // is rounded back to where it was once it is under half of 1's spacing
            // (with a 100 ms release, 9e-6 short of 1). Left there, the limiter would
            // plan every sub-block for good and never let the bus sleep; it lands, by
            // an inaudible step (under -80 dB for releases up to a second).
            released = 1.0;
        }
        let mut end = released.min(now);
        for i in 1..=self.window {
            let need = self.needs[wrap(self.head + i, n)];
            if need < start {
                // A straight descent reaching `need` in `i` sub-blocks.
                end = end.min(start + (need - start) / i as f32);
            }
        }
        let step = (end - start) / SUB as f32;
        let mut g = start;
        for (a, b) in l.iter_mut().zip(r.iter_mut()) {
            g += step;
            // Between `start` and `end`, both at most `now`: never over the ceiling.
            let gain = g.min(now);
            *a *= gain;
            *b *= gain;
        }
        self.gain = end;
    }
}

/// `i` (under `2 n`) brought into `0..n`: a comparison, where `%` divides.
#[inline(always)]
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

/// The largest magnitude in `x` ([`peak_bits`]). A NaN needs no care here: the engine
/// resets a bus that turns non-finite, limiter and all, right after it.
#[inline(always)]
fn peak(x: &[f32]) -> f32 {
    f32::from_bits(peak_bits(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const SR: f64 = 48_000.0;

    /// Run `signal` (mono, on both channels) through a limiter in 64-frame blocks.
    fn limit(limiter: &mut Limiter, signal: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(signal.len());
        for block in signal.chunks(64) {
            let (mut l, mut r) = (block.to_vec(), block.to_vec());
            limiter.process(&mut l, &mut r);
            assert_eq!(l, r);
            out.extend_from_slice(&l);
        }
        out
    }

    fn bursts(seed: u64, frames: usize) -> Vec<f32> {
        // Loud bursts of noise of random length and level (up to 8× the ceiling)
        // between quiet stretches.
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(frames);
        while out.len() < frames {
            let len = 1 + rng.below(2000) as usize;
            let level = (rng.next_f64() * 8.0) as f32;
            for _ in 0..len {
                out.push(level * (rng.next_f64() as f32 * 2.0 - 1.0));
            }
        }
        out.truncate(frames - frames % 64);
        out
    }

    #[test]
    fn the_avx2_build_limits_as_the_baseline_to_the_bit() {
        let signal = bursts(4, 96_000);
        let mut wide = Limiter::new(5.0, 80.0, 0.9, SR);
        let mut baseline = Limiter::new(5.0, 80.0, 0.9, SR);
        wide.set_width(crate::simd::tests::wide_for_test());
        baseline.set_width(Width::Baseline);
        let (a, b) = (limit(&mut wide, &signal), limit(&mut baseline, &signal));
        assert!(
            a.iter().zip(&signal).any(|(y, x)| y != x),
            "nothing was limited"
        );
        let differ = crate::simd::tests::samples_differing(&a, &b);
        assert_eq!(differ, 0, "{differ} samples differ between the two builds");
    }

    #[test]
    fn never_lets_a_sample_over_the_ceiling_with_or_without_look_ahead() {
        for attack_ms in [5.0, 1.0, 0.0] {
            for seed in 0..8 {
                let mut limiter = Limiter::new(attack_ms, 300.0, 0.9, SR);
                let out = limit(&mut limiter, &bursts(seed, 96_000));
                let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                assert!(
                    peak <= 0.9 * (1.0 + 1e-6),
                    "attack {attack_ms} ms, seed {seed}: peak {peak} over 0.9"
                );
                assert!(
                    peak > 0.8,
                    "the limiter should not crush everything: {peak}"
                );
            }
        }
    }

    #[test]
    fn quiet_signals_pass_untouched_after_the_look_ahead() {
        let mut limiter = Limiter::new(5.0, 300.0, 0.9, SR);
        let delay = lookahead_frames(5.0, SR);
        assert_eq!(delay, 240);
        let signal: Vec<f32> = (0..4800).map(|i| 0.5 * (i as f32 * 0.05).sin()).collect();
        let out = limit(&mut limiter, &signal);
        assert!(out[..delay].iter().all(|&x| x == 0.0));
        assert_eq!(&out[delay..], &signal[..signal.len() - delay]);
    }

    #[test]
    fn the_gain_glides_down_before_a_peak_and_recovers_after_it() {
        let mut limiter = Limiter::new(5.0, 100.0, 0.5, SR);
        // A steady tone at 0.4, then a 1.0 peak, then the tone again.
        let mut signal = vec![0.4f32; 24_000];
        for x in &mut signal[4800..4816] {
            *x = 1.0;
        }
        let out = limit(&mut limiter, &signal);
        let delay = 240;
        let peak_at = 4800 + delay;
        assert!(
            (out[peak_at] - 0.5).abs() < 1e-3,
            "the peak is brought to the ceiling"
        );
        // Before the peak the gain falls gradually over the look-ahead, not in one step.
        let gains: Vec<f32> = out[peak_at - delay..peak_at]
            .iter()
            .map(|x| x / 0.4)
            .collect();
        let biggest_step = gains
            .windows(2)
            .map(|w| (w[0] - w[1]).abs())
            .fold(0.0, f32::max);
        assert!(biggest_step < 0.01, "the gain jumps by {biggest_step}");
        assert!(gains[0] > 0.99 && gains[gains.len() - 1] < 0.55);
        // 300 ms after the peak (three time constants), the tone is back near its level.
        let later = out[peak_at + 14_400];
        assert!(later > 0.38, "the gain has not recovered: {later}");
    }

    #[test]
    fn passing_audio_through_unplanned_changes_no_sample_of_the_planned_result() {
        // Bursts under the ceiling for four seconds, three over it in the first half
        // second, through look-aheads of 5, 1 and 0 ms and releases from 5 to 120 ms:
        // skipping the plan, once the gain is back at 1, must be invisible.
        for (attack_ms, release_ms) in [(5.0, 80.0), (1.0, 20.0), (0.0, 120.0), (5.0, 5.0)] {
            for seed in 0..4 {
                let mut signal: Vec<f32> = bursts(seed, 192_000).iter().map(|x| x * 0.11).collect();
                for at in [2_000, 9_000, 20_000] {
                    for x in &mut signal[at..at + 300] {
                        *x *= 20.0;
                    }
                }
                let mut skipping = Limiter::new(attack_ms, release_ms, 0.9, SR);
                let mut planning = Limiter::new(attack_ms, release_ms, 0.9, SR);
                planning.always_plan = true;
                let (a, b) = (limit(&mut skipping, &signal), limit(&mut planning, &signal));
                assert!(
                    skipping.planned > 0 && skipping.planned < planning.planned / 2,
                    "attack {attack_ms} ms, release {release_ms} ms, seed {seed}: planned {} \
                     of {} sub-blocks, where it limits only in the first two seconds",
                    skipping.planned,
                    planning.planned
                );
                assert!(peak(&signal) > 1.5 && peak(&a) <= 0.9 * (1.0 + 1e-6));
                let differ = crate::simd::tests::samples_differing(&a, &b);
                assert_eq!(
                    differ, 0,
                    "attack {attack_ms} ms, release {release_ms} ms, seed {seed}: \
                     {differ} samples differ"
                );
            }
        }
    }

    #[test]
    fn audio_under_the_ceiling_is_never_planned() {
        let mut limiter = Limiter::new(5.0, 100.0, 0.9, SR);
        let tone: Vec<f32> = (0..48_000)
            .map(|i| 0.85 * (i as f32 * 0.05).sin())
            .collect();
        limit(&mut limiter, &tone);
        assert_eq!(
            limiter.planned, 0,
            "a second just under the ceiling was planned"
        );
        // One loud sub-block: planned while in the window, then while the gain
        // recovers (from 0.5, to within a millionth of 1: 13 time constants, 1.3 s),
        // then not again.
        let mut signal: Vec<f32> = tone.iter().chain(&tone).copied().collect();
        signal[1600..1616].fill(1.8);
        limit(&mut limiter, &signal);
        let after_peak = limiter.planned;
        assert!(
            after_peak > 15,
            "only {after_peak} sub-blocks planned around a peak"
        );
        limit(&mut limiter, &tone);
        assert_eq!(
            limiter.planned, after_peak,
            "planned long after the peak had gone"
        );
        assert_eq!(limiter.gain, 1.0);
        // And once silence fills the look-ahead, the limiter has nothing left to do.
        limit(&mut limiter, &[0.0; 512]);
        assert!(
            limiter.idle(),
            "silence after a limited peak leaves the limiter busy"
        );
    }
}
