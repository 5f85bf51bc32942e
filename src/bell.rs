//! The célesta's voice: a sine-FM bell (a carrier whose modulation index dies fast,
//! plus one overtone partial) as one fundsp node that renders a whole block in one
//! loop, and stops computing each part once it has died away.
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

use std::f64::consts::TAU;

use fundsp::prelude::AudioNode;

use crate::block_node::mono_block_node;

use crate::instrument::FmBell;

/// -60 dB as a natural-log amplitude ratio.
const T60_LN: f64 = 6.907_755_278_982_137;

/// Below this the carrier's frequency modulation moves its phase by less than a
/// millionth of a cycle: it is a plain sine from then on.
const FM_GONE_CYCLES: f64 = 1e-6;

/// The overtone is dropped once 100 dB under the note's full level.
const PARTIAL_GONE: f64 = 1e-5;

/// `sin(2π·x)` for a phase `x` in cycles, to 1e-7: the phase folded onto a quarter
/// cycle either side of zero, then the sine's Taylor series to its 11th power (whose
/// error there is under 6e-8). Several times cheaper than the library's `sin`, which
/// cares for any argument and the last bit.
#[inline(always)]
fn sin_cycles(x: f64) -> f64 {
    let mut x = x - x.round();
    if x > 0.25 {
        x = 0.5 - x;
    } else if x < -0.25 {
        x = -0.5 - x;
    }
    let y = TAU * x;
    let y2 = y * y;
    y * (1.0
        - y2 / 6.0 * (1.0 - y2 / 20.0 * (1.0 - y2 / 42.0 * (1.0 - y2 / 72.0 * (1.0 - y2 / 110.0)))))
}

/// A sine of fixed frequency as a unit phasor turned by a fixed angle each sample.
#[derive(Clone, Copy, Debug)]
struct Phasor {
    cos: f64,
    sin: f64,
    turn_cos: f64,
    turn_sin: f64,
}

impl Phasor {
    fn new(phase_cycles: f64, hz: f64, sample_rate: f64) -> Self {
        let (sin, cos) = (TAU * phase_cycles).sin_cos();
        let (turn_sin, turn_cos) = (TAU * hz / sample_rate).sin_cos();
        Phasor {
            cos,
            sin,
            turn_cos,
            turn_sin,
        }
    }

    /// The sine now, then one sample on.
    #[inline(always)]
    fn next(&mut self) -> f64 {
        let s = self.sin;
        let (c, t_c, t_s) = (self.cos, self.turn_cos, self.turn_sin);
        self.cos = c * t_c - s * t_s;
        self.sin = s * t_c + c * t_s;
        s
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
        };
        voice.reset();
        voice
    }

    fn render(&mut self, out: &mut [f32]) {
        let sr = self.sample_rate;
        let f = self.frequency as f64;
        for y in out.iter_mut() {
            let rise = if self.t < self.attack_samples {
                0.5 - 0.5
                    * (std::f64::consts::PI * self.t as f64 / self.attack_samples as f64).cos()
            } else {
                1.0
            };
            let carrier = match &mut self.carrier {
                Some(phasor) => phasor.next(),
                None => {
                    let s = sin_cycles(self.carrier_phase);
                    let m = self.modulator.next();
                    // The frequency swings below zero when the index passes 1, so the
                    // phase is kept in 0..1 from either side.
                    self.carrier_phase += (f + self.depth * m) / sr;
                    if self.carrier_phase >= 1.0 {
                        self.carrier_phase -= 1.0;
                    } else if self.carrier_phase < 0.0 {
                        self.carrier_phase += 1.0;
                    }
                    self.depth *= self.depth_keep;
                    s
                }
            };
            let partial = match &mut self.partial {
                Some(phasor) => {
                    let p = phasor.next() * self.partial_env;
                    self.partial_env *= self.partial_keep;
                    p
                }
                None => 0.0,
            };
            let damper = if self.t < self.damp_from {
                1.0
            } else if self.t < self.damp_until {
                0.5 + 0.5 * self.damper.next()
            } else {
                0.0
            };
            *y = (rise * damper * (carrier * self.amp + partial)) as f32;
            self.amp *= self.amp_keep;
            self.t += 1;
        }
        // Once per block: renormalize the phasors, and let go of what has died away.
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
        let mut unit = An(FmBellVoice::new(bell, frequency));
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
            let worst = fast
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // The shortcuts' own bounds: the overtone dropped at -100 dB, the carrier's
            // phase a millionth of a cycle off when its modulation is dropped.
            assert!(
                worst < 10f32.powf(-95.0 / 20.0),
                "{frequency} Hz: {:.1} dB off the formula",
                20.0 * worst.log10()
            );
        }
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
