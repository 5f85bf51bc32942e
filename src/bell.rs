//! The célesta's voice: a sine-FM bell (a carrier whose modulation index dies fast,
//! plus one overtone partial) as one fundsp node that renders a whole block at a time,
//! and stops computing each part once it has died away.
//!
//! Built from stock fundsp parts (three `sine` nodes and three `lfo` envelopes) this
//! voice spent half of a dense render in fundsp's sine oscillators, for a sound that
//! after its first few tenths of a second is a plain decaying sine. Here a sine of
//! fixed frequency and its exponential decay are one complex number turned and shrunk
//! each sample (a complex multiply). Its state is kept in f64 and moved on a whole
//! block at a time, so that it neither drifts nor fades over a long ring; within a
//! block the samples are computed from it in f32, eight lanes to an AVX2 vector. The
//! carrier needs a sine function only while its modulation can still be heard, and
//! even then no running sum of its phase: the modulation's deviation summed up to any
//! sample is a geometric series, the difference of two points of the modulation's own
//! decaying spiral. The overtone stops when it has fallen 100 dB. The envelopes are
//! the recipe's, exactly: a raised-cosine strike, then exponential decays, and the
//! damper's raised-cosine fade, which is half a turn of one more phasor.
//!
//! A block is rendered part by part, each by a loop with no branch, which the compiler
//! vectorizes; the attack's end and the damper's fall split the block rather than
//! being tested at every sample. Phasors and decays run as eight interleaved chains
//! (each sample computed from the one eight back), so that their multiplies do not
//! each wait for the previous sample's.

use std::f64::consts::TAU;

use fundsp::prelude::AudioNode;

use crate::block_node::mono_block_node;

use crate::instrument::FmBell;
use crate::simd::{dispatch_by_width, Width};

/// -60 dB as a natural-log amplitude ratio.
const T60_LN: f64 = 6.907_755_278_982_137;

/// Below this the carrier's frequency modulation moves its phase by less than a
/// millionth of a cycle: it is a plain sine from then on.
const FM_GONE_CYCLES: f64 = 1e-6;

/// The overtone is dropped once 100 dB under the note's full level.
const PARTIAL_GONE: f64 = 1e-5;

/// Taylor coefficients of `sin(y)` from `y³` to `y¹¹`: multiplied by, where dividing
/// by 6, 20, 42… in turn would cost a division each (the compiler may not turn a
/// division into a multiplication by a rounded reciprocal).
const SIN_C3: f32 = -1.0 / 6.0;
const SIN_C5: f32 = 1.0 / 120.0;
const SIN_C7: f32 = -1.0 / 5040.0;
const SIN_C9: f32 = 1.0 / 362_880.0;
const SIN_C11: f32 = -1.0 / 39_916_800.0;

/// Adding and subtracting this rounds an f32 under 2^22 to the nearest whole number
/// (halves to even), in two additions the compiler can vectorize, where `round` is a
/// library call on a baseline x86-64 target.
const ROUNDER: f32 = 12_582_912.0;

/// `sin(2π·x)` for a phase `x` in cycles (under 2^21 either side of zero), to 2e-7:
/// the phase folded onto a quarter cycle either side of zero, then the sine's Taylor
/// series to its 11th power (whose error there is under 6e-8). Several times cheaper
/// than the library's `sin`, which cares for any argument and the last bit, and with
/// no branch, so that a block's worth of them vectorizes, eight to an AVX2 vector.
#[inline(always)]
fn sin_cycles(x: f32) -> f32 {
    // Within half a cycle of zero (exactly: the difference of two close floats), then
    // mirrored about ±0.25 onto -0.25..0.25.
    let x = x - ((x + ROUNDER) - ROUNDER);
    let x = (0.25 - (0.25 - x.abs()).abs()).copysign(x);
    let y = std::f32::consts::TAU * x;
    let y2 = y * y;
    y * (1.0 + y2 * (SIN_C3 + y2 * (SIN_C5 + y2 * (SIN_C7 + y2 * (SIN_C9 + y2 * SIN_C11)))))
}

/// The most frames rendered in one pass: the engine's block. The per-block buffers
/// are this long, on the stack; a longer call is rendered in pieces.
const SPAN: usize = 64;

/// Samples computed side by side by a phasor or a decay: each sample depends on the
/// one this many before it, not on the previous one, so that consecutive samples'
/// multiplies overlap instead of each waiting for the last, and eight f32 lanes are
/// one AVX2 vector.
const LANES: usize = 8;

/// A sine of fixed frequency as a unit phasor turned by a fixed angle each sample. Its
/// state is f64 and moves on a whole span at a time ([`Phasor::advance`]); the samples
/// within a span are computed from it in f32 ([`Phasor::fill_spiral`]).
#[derive(Clone, Copy, Debug)]
struct Phasor {
    cos: f64,
    sin: f64,
    turn_cos: f64,
    turn_sin: f64,
    /// The turn of [`LANES`] samples.
    lanes_cos: f64,
    lanes_sin: f64,
    /// The angle turned each sample (radians), and the turn of a whole [`SPAN`].
    angle: f64,
    span_cos: f64,
    span_sin: f64,
}

impl Phasor {
    fn new(phase_cycles: f64, hz: f64, sample_rate: f64) -> Self {
        let (sin, cos) = (TAU * phase_cycles).sin_cos();
        let angle = TAU * hz / sample_rate;
        let (turn_sin, turn_cos) = angle.sin_cos();
        let (lanes_sin, lanes_cos) = (LANES as f64 * angle).sin_cos();
        let (span_sin, span_cos) = (SPAN as f64 * angle).sin_cos();
        Phasor {
            cos,
            sin,
            turn_cos,
            turn_sin,
            lanes_cos,
            lanes_sin,
            angle,
            span_cos,
            span_sin,
        }
    }

    /// Moved on by `n` samples in one turn, without computing them.
    #[inline(always)]
    fn advance(&mut self, n: usize) {
        let (t_s, t_c) = if n == SPAN {
            (self.span_sin, self.span_cos)
        } else {
            (n as f64 * self.angle).sin_cos()
        };
        let (c, s) = (self.cos, self.sin);
        self.cos = c * t_c - s * t_s;
        self.sin = s * t_c + c * t_s;
    }

    /// Back to unit length: rounding would otherwise slowly grow or shrink it.
    fn renormalize(&mut self) {
        let scale = 1.0 / (self.cos * self.cos + self.sin * self.sin).sqrt();
        self.cos *= scale;
        self.sin *= scale;
    }

    /// The sines of the next `out.len()` samples, times a decay starting at `amp` and
    /// multiplied by `keep` every sample; nothing moved on.
    #[inline(always)]
    fn fill_decaying(&self, amp: f64, keep: f64, out: &mut [f32]) {
        self.fill_spiral((amp * self.cos, amp * self.sin), keep, out);
    }

    /// The imaginary parts of `start`, turned by this phasor's angle and multiplied by
    /// `keep` each sample, over the next `out.len()` samples: a sine and its decay as
    /// one complex number that turns and shrinks, [`LANES`] of them side by side, in
    /// f32. They start from f64 values at most a span before the state moves on
    /// exactly, so f32's rounding has a span's few [`LANES`]-sample steps to gather in
    /// (under 1e-6 of the level, -120 dB), and never accumulates over a ring.
    #[inline(always)]
    fn fill_spiral(&self, start: (f64, f64), keep: f64, out: &mut [f32]) {
        let mut re = [0.0f32; LANES];
        let mut im = [0.0f32; LANES];
        let (mut c, mut s) = start;
        for j in 0..LANES {
            re[j] = c as f32;
            im[j] = s as f32;
            (c, s) = (
                keep * (c * self.turn_cos - s * self.turn_sin),
                keep * (s * self.turn_cos + c * self.turn_sin),
            );
        }
        // keep^8 by squaring: `powi` is a library call here.
        const { assert!(LANES == 8) };
        let lanes_keep = {
            let k2 = keep * keep;
            let k4 = k2 * k2;
            k4 * k4
        };
        let (w_c, w_s) = (
            (lanes_keep * self.lanes_cos) as f32,
            (lanes_keep * self.lanes_sin) as f32,
        );
        let mut chunks = out.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&im);
            for j in 0..LANES {
                let (r, i) = (re[j], im[j]);
                re[j] = r * w_c - i * w_s;
                im[j] = i * w_c + r * w_s;
            }
        }
        let rest = chunks.into_remainder();
        let r = rest.len();
        rest.copy_from_slice(&im[..r]);
    }
}

/// A phasor that does not turn: its spiral is a plain decay.
const STILL: Phasor = Phasor {
    cos: 1.0,
    sin: 0.0,
    turn_cos: 1.0,
    turn_sin: 0.0,
    lanes_cos: 1.0,
    lanes_sin: 0.0,
    angle: 0.0,
    span_cos: 1.0,
    span_sin: 0.0,
};

/// An exponential decay's factor per sample, and over a whole [`SPAN`] (`powi` is a
/// library call: worked out once, not every span).
#[derive(Clone, Copy, Debug, Default)]
struct Decay {
    sample: f64,
    span: f64,
}

impl Decay {
    fn new(sample: f64) -> Self {
        Decay {
            sample,
            span: sample.powi(SPAN as i32),
        }
    }

    /// The factor over `n` samples.
    #[inline(always)]
    fn over(&self, n: usize) -> f64 {
        if n == SPAN {
            self.span
        } else {
            self.sample.powi(n as i32)
        }
    }
}

#[derive(Clone)]
pub struct FmBellVoice {
    recipe: FmBell,
    /// The note's pitch (Hz).
    frequency: f32,
    sample_rate: f64,
    hash: u64,
    /// Samples since the strike.
    t: u64,
    attack_samples: u64,
    /// The carrier's phase (cycles) while it is modulated.
    carrier_phase: f64,
    /// The carrier once its modulation is gone.
    carrier: Option<Phasor>,
    modulator: Phasor,
    /// Modulation depth (Hz) now, and its decay.
    depth: f64,
    depth_keep: Decay,
    /// The carrier's phase deviation (cycles) summed over the samples from now on,
    /// per unit of `depth · modulator` now: 1 / (sample rate · (1 - q)), q being the
    /// modulation's complex step (its decay times its turn), as a complex number.
    /// The deviation summed over any run of samples is a geometric series' sum.
    deviation: (f64, f64),
    /// Phase deviation (cycles) per Hz of depth: 1 / (2π · modulator frequency).
    cycles_per_depth: f64,
    partial: Option<Phasor>,
    partial_env: f64,
    partial_keep: Decay,
    amp: f64,
    amp_keep: Decay,
    /// The sample at which the damper falls (never, without one), and the first at
    /// which it has silenced the bar.
    damp_from: u64,
    damp_until: u64,
    /// The damper's fade: `0.5 + 0.5 · this` turns from 1 to 0 over its half turn.
    damper: Phasor,
    width: Width,
}

impl FmBellVoice {
    /// A bell of this recipe, at `frequency` Hz.
    pub fn new(recipe: &FmBell, frequency: f32) -> Self {
        let mut voice = FmBellVoice {
            recipe: recipe.clone(),
            frequency,
            sample_rate: 44_100.0,
            hash: 0,
            t: 0,
            attack_samples: 0,
            carrier_phase: 0.0,
            carrier: None,
            modulator: Phasor::new(0.0, 0.0, 44_100.0),
            depth: 0.0,
            depth_keep: Decay::default(),
            deviation: (0.0, 0.0),
            cycles_per_depth: 0.0,
            partial: None,
            partial_env: 0.0,
            partial_keep: Decay::default(),
            amp: 0.0,
            amp_keep: Decay::default(),
            damp_from: u64::MAX,
            damp_until: u64::MAX,
            damper: Phasor::new(0.0, 0.0, 44_100.0),
            width: Width::detect(),
        };
        voice.reset();
        voice
    }

    /// Run its loops at `width` if the CPU has it (the baseline otherwise): for
    /// tests and benchmarks that compare the two builds.
    pub fn set_width(&mut self, width: Width) {
        self.width = width.supported();
    }

    dispatch_by_width!(
    fn render(&mut self, out: &mut [f32]) => render_body, render_wide);

    #[inline(always)]
    fn render_body(&mut self, out: &mut [f32]) {
        for span in out.chunks_mut(SPAN) {
            self.render_span(span);
        }
    }

    /// At most [`SPAN`] samples. Each part is computed for the whole span, by a loop
    /// without branches, and the state's changes within the span (the end of the
    /// attack, the damper's fall) split the span instead of being tested at every
    /// sample. The state then moves on by the whole span at once.
    #[inline(always)]
    fn render_span(&mut self, out: &mut [f32]) {
        let n = out.len();
        let t = self.t;
        if t >= self.damp_until {
            // Damped: silent for good (until the next reset).
            out.fill(0.0);
            self.t += n as u64;
            return;
        }
        let falls = (self.damp_from.saturating_sub(t) as usize).min(n);
        let silent = (self.damp_until.saturating_sub(t) as usize).min(n);
        let sound = &mut out[..silent];
        match self.carrier {
            // Its modulation gone, the carrier and its decay are one phasor.
            Some(carrier) => carrier.fill_decaying(self.amp, self.amp_keep.sample, sound),
            None => self.modulated_carrier(sound),
        }
        if let Some(partial) = &self.partial {
            let mut p = [0.0f32; SPAN];
            let p = &mut p[..silent];
            partial.fill_decaying(self.partial_env, self.partial_keep.sample, p);
            for (y, &p) in sound.iter_mut().zip(p.iter()) {
                *y += p;
            }
        }
        // The strike's rise, over the part of the span still in the attack.
        let attack = (self.attack_samples.saturating_sub(t) as usize).min(silent);
        for (i, y) in sound[..attack].iter_mut().enumerate() {
            let x = std::f64::consts::PI * (t + i as u64) as f64 / self.attack_samples as f64;
            *y *= (0.5 - 0.5 * x.cos()) as f32;
        }
        // The damper: nothing before it falls, its fade, silence once it has.
        if falls < silent {
            let mut fade = [0.0f32; SPAN];
            let fade = &mut fade[..silent - falls];
            self.damper.fill_decaying(1.0, 1.0, fade);
            for (y, &d) in sound[falls..].iter_mut().zip(fade.iter()) {
                *y *= 0.5 + 0.5 * d;
            }
            self.damper.advance(silent - falls);
            self.damper.renormalize();
        }
        out[silent..].fill(0.0);
        self.move_on(n);
    }

    /// The modulated carrier times its decay, over `out`: its phase at each sample is
    /// where the span starts, plus the steps of its own frequency, plus the
    /// modulation's deviation summed so far, which is the difference of two points of
    /// the modulation's spiral (a geometric series) and so is computed per sample
    /// without a running sum. Nothing here accumulates from span to span but the f64
    /// phase at the span's start.
    #[inline(always)]
    fn modulated_carrier(&self, out: &mut [f32]) {
        let n = out.len();
        let w = self.deviation_to_come();
        // Phase before sample i: start + i · step + (w's part to come now, less at i).
        let start = self.carrier_phase + w.1;
        let start = (start - start.floor()) as f32;
        let step = (self.frequency as f64 / self.sample_rate) as f32;
        let mut to_come = [0.0f32; SPAN];
        let to_come = &mut to_come[..n];
        self.modulator
            .fill_spiral(w, self.depth_keep.sample, to_come);
        let mut amp = [0.0f32; SPAN];
        let amp = &mut amp[..n];
        // A decay alone is a spiral that does not turn.
        STILL.fill_spiral((0.0, self.amp), self.amp_keep.sample, amp);
        for (i, ((y, &later), &a)) in out
            .iter_mut()
            .zip(to_come.iter())
            .zip(amp.iter())
            .enumerate()
        {
            *y = a * sin_cycles(start + i as f32 * step - later);
        }
    }

    /// The carrier's phase deviation from all the samples from now on, as a complex
    /// number whose imaginary part it is: `depth · modulator · deviation`. Turned and
    /// shrunk as the modulation is, sample by sample, it is the same from any later one.
    #[inline(always)]
    fn deviation_to_come(&self) -> (f64, f64) {
        let z = (
            self.depth * self.modulator.cos,
            self.depth * self.modulator.sin,
        );
        let (d_c, d_s) = self.deviation;
        (z.0 * d_c - z.1 * d_s, z.1 * d_c + z.0 * d_s)
    }

    /// The f64 state moved on by `n` samples, and what has died away let go of.
    #[inline(always)]
    fn move_on(&mut self, n: usize) {
        let sr = self.sample_rate;
        let f = self.frequency as f64;
        self.t += n as u64;
        self.amp *= self.amp_keep.over(n);
        match &mut self.carrier {
            Some(carrier) => {
                carrier.advance(n);
                carrier.renormalize();
            }
            None => {
                // The phase moves by n steps of its frequency and by the deviation
                // summed over the span: what was to come then, less what is to come now.
                let before = self.deviation_to_come().1;
                self.depth *= self.depth_keep.over(n);
                self.modulator.advance(n);
                self.modulator.renormalize();
                let after = self.deviation_to_come().1;
                let phase = self.carrier_phase + n as f64 * f / sr + before - after;
                self.carrier_phase = phase - phase.floor();
                if self.depth * self.cycles_per_depth < FM_GONE_CYCLES {
                    // What is still to come is under a millionth of a cycle: from here
                    // on the carrier is a plain sine.
                    self.carrier = Some(Phasor::new(self.carrier_phase, f, sr));
                }
            }
        }
        if let Some(partial) = &mut self.partial {
            partial.advance(n);
            partial.renormalize();
            self.partial_env *= self.partial_keep.over(n);
            if self.partial_env < PARTIAL_GONE {
                self.partial = None;
            }
        }
    }
}

mono_block_node!(FmBellVoice, 0x6361_7269_6265_6c6c, {
    fn reset(&mut self) {
        let n = &self.recipe;
        let sr = self.sample_rate;
        let f = self.frequency as f64;
        // Each note's oscillators start at their own phases, from its seed.
        let mut rng = crate::rng::Rng::new(self.hash);
        let fm = f * n.mod_ratio as f64;
        self.t = 0;
        self.attack_samples = (n.attack_ms as f64 / 1000.0 * sr).round() as u64;
        self.carrier_phase = rng.next_f64();
        self.carrier = None;
        self.modulator = Phasor::new(rng.next_f64(), fm, sr);
        self.depth = fm * n.mod_index as f64;
        self.depth_keep = Decay::new((-1.0 / (n.mod_decay_s as f64 * sr)).exp());
        // 1 / (sr · (1 - q)), q = depth_keep · e^(i · the modulator's angle).
        let (q_s, q_c) = self.modulator.angle.sin_cos();
        let keep = self.depth_keep.sample;
        let (one_less_re, one_less_im) = (1.0 - keep * q_c, -keep * q_s);
        let norm = sr * (one_less_re * one_less_re + one_less_im * one_less_im);
        self.deviation = (one_less_re / norm, -one_less_im / norm);
        self.cycles_per_depth = if fm > 0.0 { 1.0 / (TAU * fm) } else { 0.0 };
        self.partial = Some(Phasor::new(rng.next_f64(), f * n.partial_ratio as f64, sr));
        self.partial_env = n.partial_level as f64;
        self.partial_keep = Decay::new((-1.0 / (n.partial_decay_s as f64 * sr)).exp());
        self.amp = 1.0;
        self.amp_keep = Decay::new((-T60_LN / (n.t60(self.frequency) as f64 * sr)).exp());
        (self.damp_from, self.damp_until) = match n.damper(self.frequency) {
            Some(d) => {
                let from = (d.from_s as f64 * sr).round() as u64;
                let fade = ((d.fade_s as f64 * sr).round() as u64).max(1);
                (from, from + fade)
            }
            None => (u64::MAX, u64::MAX),
        };
        // A quarter cycle in, its sine is the cosine of the fade's angle, which turns by
        // π over the fade's samples.
        let fade = self.damp_until.saturating_sub(self.damp_from).max(1) as f64;
        self.damper = Phasor::new(0.25, sr / (2.0 * fade), sr);
    }

    fn set_sample_rate(&mut self, sample_rate: f64) {
        self.sample_rate = sample_rate;
        self.reset();
    }

    fn set_hash(&mut self, hash: u64) {
        self.hash = hash;
        self.reset();
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use fundsp::prelude::{An, AttoHash};

    const SR: f64 = 48_000.0;

    /// The built-in célesta's bell.
    fn celesta() -> FmBell {
        let instruments = crate::instrument::Instruments::built_in().expect("built-in");
        let recipe = instruments.recipe("celesta").expect("the célesta");
        recipe.fm_bell.clone().expect("an FM bell")
    }

    /// `frames` (a multiple of 64) of one bell, rendered in blocks as the engine does.
    fn render(bell: &FmBell, frequency: f32, seed: u64, frames: usize) -> Vec<f32> {
        render_at(Width::detect(), bell, frequency, seed, frames)
    }

    /// [`render`], its loops at `width`.
    fn render_at(
        width: Width,
        bell: &FmBell,
        frequency: f32,
        seed: u64,
        frames: usize,
    ) -> Vec<f32> {
        let mut voice = FmBellVoice::new(bell, frequency);
        voice.set_width(width);
        let mut unit = An(voice);
        unit.set_sample_rate(SR);
        unit.ping(false, AttoHash::new(seed));
        crate::block_node::render_blocks(&mut unit, frames)
    }

    /// The same bell computed directly, with a sine function at every sample for every
    /// part and a cosine for the damper, as the formula says: what the node's shortcuts
    /// must not change.
    fn reference(bell: &FmBell, frequency: f32, phases: [f64; 3], frames: usize) -> Vec<f32> {
        let f = frequency as f64;
        let fm = f * bell.mod_ratio as f64;
        let t60 = bell.t60(frequency) as f64;
        let damper = bell.damper(frequency).expect("the célesta has a damper");
        // Where it falls and how long it takes, in whole samples.
        let from = (damper.from_s as f64 * SR).round();
        let fade = (damper.fade_s as f64 * SR).round();
        let mut carrier = phases[0];
        (0..frames)
            .map(|i| {
                let t = i as f64 / SR;
                let a = bell.attack_ms as f64 / 1000.0;
                let rise = if t < a {
                    0.5 - 0.5 * (std::f64::consts::PI * t / a).cos()
                } else {
                    1.0
                };
                let depth = fm * bell.mod_index as f64 * (-t / bell.mod_decay_s as f64).exp();
                let m = (TAU * (phases[1] + fm * t)).sin();
                let c = (TAU * carrier).sin();
                carrier += (f + depth * m) / SR;
                let amp = (-T60_LN * t / t60).exp();
                let p = (TAU * (phases[2] + f * bell.partial_ratio as f64 * t)).sin()
                    * bell.partial_level as f64
                    * (-t / bell.partial_decay_s as f64).exp();
                let u = ((i as f64 - from) / fade).clamp(0.0, 1.0);
                let damp = 0.5 + 0.5 * (std::f64::consts::PI * u).cos();
                (rise * damp * (c * amp + p)) as f32
            })
            .collect()
    }

    #[test]
    fn the_avx2_build_rings_as_the_baseline_to_the_bit() {
        let wide = crate::simd::tests::wide_for_test();
        let bell = celesta();
        // A whole ring (the modulation, the overtone, the damper) low and high.
        for frequency in [130.8, 932.3] {
            let frames = (bell.seconds(frequency) as f64 * SR) as usize / 64 * 64 + 64;
            let a = render_at(wide, &bell, frequency, 3, frames);
            let b = render_at(Width::Baseline, &bell, frequency, 3, frames);
            assert!(
                a.iter().any(|x| x.abs() > 0.1),
                "{frequency} Hz should sound"
            );
            let differ = crate::simd::tests::samples_differing(&a, &b);
            assert_eq!(
                differ, 0,
                "{frequency} Hz: {differ} samples differ between the two builds"
            );
        }
    }

    #[test]
    fn it_is_the_formula_to_95_decibels_over_a_whole_ring() {
        for frequency in [261.63f32, 1108.73] {
            let bell = celesta();
            let seed = 11;
            // The whole note, damper and all, in whole blocks.
            let frames = (bell.seconds(frequency) as f64 * SR).ceil() as usize / 64 * 64 + 64;
            let fast = render(&bell, frequency, seed, frames);
            let mut unit = FmBellVoice::new(&bell, frequency);
            unit.set_sample_rate(SR);
            unit.ping(false, AttoHash::new(seed));
            let mut rng = crate::rng::Rng::new(unit.hash);
            let phases = [rng.next_f64(), rng.next_f64(), rng.next_f64()];
            let exact = reference(&bell, frequency, phases, frames);
            assert_within_95_db(&fast, &exact, &format!("{frequency} Hz"));
        }
    }

    /// `fast` is `exact` to within the shortcuts' own bounds: the overtone dropped at
    /// -100 dB, the carrier's phase a millionth of a cycle off when its modulation is
    /// dropped.
    fn assert_within_95_db(fast: &[f32], exact: &[f32], what: &str) {
        let worst = fast
            .iter()
            .zip(exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 10f32.powf(-95.0 / 20.0),
            "{what}: {:.1} dB off the formula",
            20.0 * worst.log10()
        );
    }

    #[test]
    fn calls_of_any_length_render_the_formula() {
        // A sample at a time (fundsp's `tick`), spans that split the lanes of the
        // phasors and decays, and calls longer than a span, whole ring long.
        let bell = celesta();
        let frequency = 1108.73;
        let frames = (bell.seconds(frequency) as f64 * SR).ceil() as usize;
        let mut unit = FmBellVoice::new(&bell, frequency);
        unit.set_sample_rate(SR);
        let mut fast = vec![0.0f32; frames];
        let mut from = 0;
        for size in [1, 3, 64, 200, 5, 63, 2].iter().cycle() {
            if from == frames {
                break;
            }
            let to = (from + size).min(frames);
            unit.render(&mut fast[from..to]);
            from = to;
        }
        let mut rng = crate::rng::Rng::new(0);
        let phases = [rng.next_f64(), rng.next_f64(), rng.next_f64()];
        let exact = reference(&bell, frequency, phases, frames);
        assert_within_95_db(&fast, &exact, "calls of 1 to 200 samples");
    }

    #[test]
    fn the_modulation_and_the_overtone_stop_being_computed_once_gone() {
        let mut unit = FmBellVoice::new(&celesta(), 440.0);
        unit.set_sample_rate(SR);
        let mut out = [0.0f32; 64];
        let mut blocks = 0;
        while unit.carrier.is_none() || unit.partial.is_some() {
            unit.render(&mut out);
            blocks += 1;
            assert!(blocks < 1500, "still computed 2 s in");
        }
        let seconds = blocks as f64 * 64.0 / SR;
        assert!(
            seconds > 0.5,
            "dropped at {seconds:.2} s, while still heard"
        );
    }

    #[test]
    fn the_fast_sine_is_the_sine_to_two_ten_millionths() {
        // Over the phases it is given: a span's steps past a start in 0..1.
        let worst = (0..200_000)
            .map(|i| {
                let x = (i as f64 / 200_000.0 * 9.0 - 1.0) as f32;
                (sin_cycles(x) as f64 - (TAU * x as f64).sin()).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 2e-7, "{worst}");
    }

    #[test]
    fn a_seed_always_starts_the_bell_at_the_same_phases() {
        let bell = celesta();
        assert_eq!(render(&bell, 440.0, 7, 256), render(&bell, 440.0, 7, 256));
        assert_ne!(render(&bell, 440.0, 8, 256), render(&bell, 440.0, 7, 256));
    }
}
