//! The célesta's voice: a sine-FM bell (a carrier whose modulation index dies fast,
//! plus one overtone partial) as one fundsp node that renders a whole block at a time,
//! and stops computing each part once it has died away.
//!
//! Built from stock fundsp parts (three `sine` nodes and three `lfo` envelopes) this
//! voice spent half of a dense render in fundsp's sine oscillators, for a sound that
//! after its first few tenths of a second is a plain decaying sine. Here a sine of
//! fixed frequency is a rotating phasor (a complex multiply per sample, renormalized
//! every block, in f64 so it neither drifts nor fades over a long ring); the carrier
//! needs a sine function only while its modulation can still be heard, and the
//! overtone stops when it has fallen 100 dB. The envelopes are the recipe's, exactly:
//! a raised-cosine strike, then exponential decays, computed per sample by
//! multiplication, and the damper's raised-cosine fade, which is half a turn of one
//! more phasor.
//!
//! A block is rendered part by part, each into a buffer of its own by a loop with no
//! branch, which the compiler vectorizes; the attack's end and the damper's fall split
//! the block rather than being tested at every sample. Phasors and decays run as a
//! few interleaved chains (each sample computed from the one a few samples back), so
//! that their multiplies do not each wait for the previous sample's.

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
const SIN_C3: f64 = -1.0 / 6.0;
const SIN_C5: f64 = 1.0 / 120.0;
const SIN_C7: f64 = -1.0 / 5040.0;
const SIN_C9: f64 = 1.0 / 362_880.0;
const SIN_C11: f64 = -1.0 / 39_916_800.0;

/// Adding and subtracting this rounds an f64 under 2^51 to the nearest whole number
/// (halves to even), in two additions the compiler can vectorize, where `round` is a
/// library call on a baseline x86-64 target.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// `sin(2π·x)` for a phase `x` in cycles (under 2^50 either side of zero), to 1e-7:
/// the phase folded onto a quarter cycle either side of zero, then the sine's Taylor
/// series to its 11th power (whose error there is under 6e-8). Several times cheaper
/// than the library's `sin`, which cares for any argument and the last bit, and with
/// no branch, so that a block's worth of them vectorizes.
#[inline(always)]
fn sin_cycles(x: f64) -> f64 {
    // Within half a cycle of zero, then mirrored about ±0.25 onto -0.25..0.25.
    let x = x - ((x + ROUNDER) - ROUNDER);
    let x = (0.25 - (0.25 - x.abs()).abs()).copysign(x);
    let y = TAU * x;
    let y2 = y * y;
    y * (1.0 + y2 * (SIN_C3 + y2 * (SIN_C5 + y2 * (SIN_C7 + y2 * (SIN_C9 + y2 * SIN_C11)))))
}

/// The most frames rendered in one pass: the engine's block. The per-block buffers
/// are this long, on the stack; a longer call is rendered in pieces.
const SPAN: usize = 64;

/// Samples computed side by side by a phasor or a decay: each sample depends on the
/// one this many before it, not on the previous one, so that consecutive samples'
/// multiplies overlap instead of each waiting for the last.
const LANES: usize = 8;

/// `out[i] = *value · keep^i`, then `*value` moved on past `out`: the per-sample
/// `value *= keep` of an exponential decay, as [`LANES`] chains.
#[inline(always)]
fn fill_decay(value: &mut f64, keep: f64, out: &mut [f64]) {
    let mut v = [*value; LANES];
    for j in 1..LANES {
        v[j] = v[j - 1] * keep;
    }
    let keep_lanes = keep.powi(LANES as i32);
    let mut chunks = out.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&v);
        for x in &mut v {
            *x *= keep_lanes;
        }
    }
    let rest = chunks.into_remainder();
    let r = rest.len();
    rest.copy_from_slice(&v[..r]);
    *value = v[r];
}

/// A sine of fixed frequency as a unit phasor turned by a fixed angle each sample.
#[derive(Clone, Copy, Debug)]
struct Phasor {
    cos: f64,
    sin: f64,
    turn_cos: f64,
    turn_sin: f64,
    /// The turn of [`LANES`] samples.
    lanes_cos: f64,
    lanes_sin: f64,
}

impl Phasor {
    fn new(phase_cycles: f64, hz: f64, sample_rate: f64) -> Self {
        let (sin, cos) = (TAU * phase_cycles).sin_cos();
        let angle = TAU * hz / sample_rate;
        let (turn_sin, turn_cos) = angle.sin_cos();
        let (lanes_sin, lanes_cos) = (LANES as f64 * angle).sin_cos();
        Phasor {
            cos,
            sin,
            turn_cos,
            turn_sin,
            lanes_cos,
            lanes_sin,
        }
    }

    /// The sine at each of the next `out.len()` samples, and the phasor moved past
    /// them. [`LANES`] phasors a sample apart, each turned by [`LANES`] samples' angle
    /// at a time, take the samples in turn: their complex multiplies are independent.
    #[inline(always)]
    fn fill(&mut self, out: &mut [f64]) {
        let (t_c, t_s) = (self.turn_cos, self.turn_sin);
        let mut c = [self.cos; LANES];
        let mut s = [self.sin; LANES];
        for j in 1..LANES {
            c[j] = c[j - 1] * t_c - s[j - 1] * t_s;
            s[j] = s[j - 1] * t_c + c[j - 1] * t_s;
        }
        let (l_c, l_s) = (self.lanes_cos, self.lanes_sin);
        let mut chunks = out.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&s);
            for j in 0..LANES {
                let (cj, sj) = (c[j], s[j]);
                c[j] = cj * l_c - sj * l_s;
                s[j] = sj * l_c + cj * l_s;
            }
        }
        // After the whole turns the lanes stand at the next samples, in order.
        let rest = chunks.into_remainder();
        let r = rest.len();
        rest.copy_from_slice(&s[..r]);
        self.cos = c[r];
        self.sin = s[r];
    }

    /// Back to unit length: rounding would otherwise slowly grow or shrink it.
    fn renormalize(&mut self) {
        let scale = 1.0 / (self.cos * self.cos + self.sin * self.sin).sqrt();
        self.cos *= scale;
        self.sin *= scale;
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
    /// Modulation depth (Hz) now, and its decay per sample.
    depth: f64,
    depth_keep: f64,
    /// Phase deviation (cycles) per Hz of depth: 1 / (2π · modulator frequency).
    cycles_per_depth: f64,
    partial: Option<Phasor>,
    partial_env: f64,
    partial_keep: f64,
    amp: f64,
    amp_keep: f64,
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
            depth_keep: 0.0,
            cycles_per_depth: 0.0,
            partial: None,
            partial_env: 0.0,
            partial_keep: 0.0,
            amp: 0.0,
            amp_keep: 0.0,
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

    /// At most [`SPAN`] samples. Each part is computed for the whole span into a buffer
    /// of its own, by a loop without branches, and the state's changes within the
    /// span (the end of the attack, the damper's fall) split the span instead of being
    /// tested at every sample.
    #[inline(always)]
    fn render_span(&mut self, out: &mut [f32]) {
        let n = out.len();
        if self.t >= self.damp_until {
            // Damped: silent for good (until the next reset).
            out.fill(0.0);
            self.t += n as u64;
            return;
        }
        let sr = self.sample_rate;
        let f = self.frequency as f64;
        let mut carrier = [0.0f64; SPAN];
        let carrier = &mut carrier[..n];
        match &mut self.carrier {
            Some(phasor) => phasor.fill(carrier),
            None => {
                let mut m = [0.0f64; SPAN];
                let mut depth = [0.0f64; SPAN];
                self.modulator.fill(&mut m[..n]);
                fill_decay(&mut self.depth, self.depth_keep, &mut depth[..n]);
                // The phase before each sample, unwrapped within the span: the sine
                // takes any phase. The frequency swings below zero when the index
                // passes 1, so the phase is brought back into 0..1 from either side.
                let per_sample = 1.0 / sr;
                for ((c, &m), &d) in carrier.iter_mut().zip(&m[..n]).zip(&depth[..n]) {
                    *c = (f + d * m) * per_sample;
                }
                // A running sum of the steps, [`LANES`] at a time: the sums within each
                // group do not wait on the previous group's, only one addition a group
                // carries the phase on.
                let mut phase = self.carrier_phase;
                for group in carrier.chunks_mut(LANES) {
                    let mut within = 0.0;
                    for c in group {
                        let step = *c;
                        *c = phase + within;
                        within += step;
                    }
                    phase += within;
                }
                self.carrier_phase = phase - ((phase + ROUNDER) - ROUNDER);
                if self.carrier_phase < 0.0 {
                    self.carrier_phase += 1.0;
                }
                for c in carrier.iter_mut() {
                    *c = sin_cycles(*c);
                }
            }
        }
        let mut sum = [0.0f64; SPAN];
        let sum = &mut sum[..n];
        fill_decay(&mut self.amp, self.amp_keep, sum);
        for (y, &c) in sum.iter_mut().zip(carrier.iter()) {
            *y *= c;
        }
        if let Some(phasor) = &mut self.partial {
            let mut p = [0.0f64; SPAN];
            let mut env = [0.0f64; SPAN];
            phasor.fill(&mut p[..n]);
            fill_decay(&mut self.partial_env, self.partial_keep, &mut env[..n]);
            for ((y, &p), &e) in sum.iter_mut().zip(&p[..n]).zip(&env[..n]) {
                *y += p * e;
            }
        }
        // The strike's rise, over the part of the span still in the attack.
        let t = self.t;
        let attack = (self.attack_samples.saturating_sub(t) as usize).min(n);
        for (i, y) in sum[..attack].iter_mut().enumerate() {
            let x = std::f64::consts::PI * (t + i as u64) as f64 / self.attack_samples as f64;
            *y *= 0.5 - 0.5 * x.cos();
        }
        // The damper: nothing before it falls, its fade, silence once it has.
        let falls = (self.damp_from.saturating_sub(t) as usize).min(n);
        let silent = (self.damp_until.saturating_sub(t) as usize).min(n);
        if falls < silent {
            let mut fade = [0.0f64; SPAN];
            let fade = &mut fade[..silent - falls];
            self.damper.fill(fade);
            for (y, &d) in sum[falls..silent].iter_mut().zip(fade.iter()) {
                *y *= 0.5 + 0.5 * d;
            }
        }
        sum[silent..].fill(0.0);
        for (y, &x) in out.iter_mut().zip(sum.iter()) {
            *y = x as f32;
        }
        self.t += n as u64;
        // Once per span: renormalize the phasors, and let go of what has died away.
        if let Some(c) = &mut self.carrier {
            c.renormalize();
        }
        self.modulator.renormalize();
        if let Some(p) = &mut self.partial {
            p.renormalize();
        }
        self.damper.renormalize();
        if self.carrier.is_none() && self.depth * self.cycles_per_depth < FM_GONE_CYCLES {
            self.carrier = Some(Phasor::new(self.carrier_phase, f, sr));
        }
        if self.partial.is_some() && self.partial_env < PARTIAL_GONE {
            self.partial = None;
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
        self.depth_keep = (-1.0 / (n.mod_decay_s as f64 * sr)).exp();
        self.cycles_per_depth = if fm > 0.0 { 1.0 / (TAU * fm) } else { 0.0 };
        self.partial = Some(Phasor::new(rng.next_f64(), f * n.partial_ratio as f64, sr));
        self.partial_env = n.partial_level as f64;
        self.partial_keep = (-1.0 / (n.partial_decay_s as f64 * sr)).exp();
        self.amp = 1.0;
        self.amp_keep = (-T60_LN / (n.t60(self.frequency) as f64 * sr)).exp();
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
    fn the_fast_sine_is_the_sine_to_a_ten_millionth() {
        let worst = (0..100_000)
            .map(|i| {
                let x = i as f64 / 100_000.0 * 3.0 - 1.0;
                (sin_cycles(x) - (TAU * x).sin()).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn a_seed_always_starts_the_bell_at_the_same_phases() {
        let bell = celesta();
        assert_eq!(render(&bell, 440.0, 7, 256), render(&bell, 440.0, 7, 256));
        assert_ne!(render(&bell, 440.0, 8, 256), render(&bell, 440.0, 7, 256));
    }
}
