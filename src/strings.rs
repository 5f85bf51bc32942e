//! The violin's sound source: two slightly detuned sawtooth strings with a delayed
//! vibrato, as one fundsp node that renders a whole block in one tight loop.
//!
//! Built from stock fundsp parts (two `lfo >> saw()` chains summed) this was the most
//! expensive voice in the engine: the wavetable saws blend two tables per sample and
//! recompute their frequency every sample. Here each saw is a PolyBLEP sawtooth (band
//! limited enough under the violin's low-pass), and the vibrato, which moves slowly, is
//! computed once per 16 samples and interpolated in between.

use fundsp::prelude::AudioNode;

use crate::block_node::mono_block_node;

/// Samples between two evaluations of the vibrato.
const CONTROL: usize = 16;

#[derive(Clone)]
pub struct BowedStrings {
    /// Each string's pitch before vibrato (Hz).
    base: [f32; 2],
    /// Each string's vibrato rate (Hz).
    rate: [f32; 2],
    /// Vibrato depth in octaves, and when it begins and how long it takes to fade in (s).
    depth: f32,
    delay: f32,
    fade_in: f32,
    phase: [f32; 2],
    /// Phase increments per sample now, and per sample at the next control point.
    step: [f32; 2],
    sample_rate: f32,
    /// Samples since the start.
    t: u64,
    hash: u64,
}

impl BowedStrings {
    /// Strings at `f` Hz, detuned by ±`detune_cents`; vibrato of `depth_cents` at `rate`
    /// Hz (the second string 7 % faster, so the two never beat in step), fading in over
    /// `fade_in` seconds from `delay` seconds.
    pub fn new(f: f32, detune_cents: f32, rate: f32, depth_cents: f32, delay: f32) -> Self {
        let detune = (detune_cents / 1200.0).exp2();
        let mut strings = BowedStrings {
            base: [f * detune, f / detune],
            rate: [rate, rate * 1.07],
            depth: depth_cents / 1200.0,
            delay,
            fade_in: 0.5,
            phase: [0.0; 2],
            step: [0.0; 2],
            sample_rate: 44_100.0,
            t: 0,
            hash: 0,
        };
        strings.reset();
        strings
    }

    /// Each string's frequency at time `t` seconds.
    fn frequencies(&self, t: f32) -> [f32; 2] {
        let fade = ((t - self.delay).max(0.0) / self.fade_in).min(1.0);
        // The same raised-cosine rise as the instruments' envelopes.
        let amount = self.depth * 0.5 * (1.0 - (std::f32::consts::PI * fade).cos());
        [0, 1].map(|i| {
            let wobble = (std::f32::consts::TAU * self.rate[i] * t).sin();
            self.base[i] * (amount * wobble).exp2()
        })
    }
}

/// The PolyBLEP correction of a saw's jump at phase 0, for a phase `t` in 0..1 moving
/// `dt` per sample (`inv_dt` = 1 / dt).
#[inline(always)]
fn polyblep(t: f32, dt: f32, inv_dt: f32) -> f32 {
    if t < dt {
        let z = t * inv_dt;
        z + z - z * z - 1.0
    } else if t > 1.0 - dt {
        let z = (t - 1.0) * inv_dt;
        z * z + z + z + 1.0
    } else {
        0.0
    }
}

mono_block_node!(BowedStrings, 0x6361_7269_6c6c_6f6e, {
    fn reset(&mut self) {
        // Each note's strings start at their own phases, from its seed.
        let mut rng = crate::rng::Rng::new(self.hash);
        self.phase = [rng.next_f64() as f32, rng.next_f64() as f32];
        self.t = 0;
        self.step = self.frequencies(0.0).map(|f| f / self.sample_rate);
    }

    fn set_sample_rate(&mut self, sample_rate: f64) {
        self.sample_rate = sample_rate as f32;
        self.reset();
    }

    fn set_hash(&mut self, hash: u64) {
        self.hash = hash;
        self.reset();
    }
});

impl BowedStrings {
    fn render(&mut self, out: &mut [f32]) {
        for chunk in out.chunks_mut(CONTROL) {
            let n = chunk.len();
            let end = (self.t + n as u64) as f32 / self.sample_rate;
            let target = self.frequencies(end).map(|f| f / self.sample_rate);
            let ramp = [0, 1].map(|i| (target[i] - self.step[i]) / n as f32);
            let [mut p0, mut p1] = self.phase;
            let [mut dt0, mut dt1] = self.step;
            let (inv0, inv1) = (1.0 / dt0.max(1e-9), 1.0 / dt1.max(1e-9));
            for y in chunk.iter_mut() {
                let s0 = p0 + p0 - 1.0 - polyblep(p0, dt0, inv0);
                let s1 = p1 + p1 - 1.0 - polyblep(p1, dt1, inv1);
                *y = 0.5 * (s0 + s1);
                p0 += dt0;
                if p0 >= 1.0 {
                    p0 -= 1.0;
                }
                p1 += dt1;
                if p1 >= 1.0 {
                    p1 -= 1.0;
                }
                dt0 += ramp[0];
                dt1 += ramp[1];
            }
            self.phase = [p0, p1];
            self.step = target;
            self.t += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fundsp::prelude::{An, AttoHash};

    /// `frames` (a multiple of 64) of a string pair, rendered in blocks as the engine does.
    fn render(seed: u64, frames: usize) -> Vec<f32> {
        let mut unit = An(BowedStrings::new(440.0, 4.0, 5.6, 12.0, 0.4));
        unit.set_sample_rate(48_000.0);
        unit.ping(false, AttoHash::new(seed));
        crate::block_node::render_blocks(&mut unit, frames)
    }

    #[test]
    fn stays_in_range_and_centred() {
        let out = render(1, 48_000);
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let mean = out.iter().sum::<f32>() / out.len() as f32;
        assert!(peak <= 1.05, "peak {peak}");
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn a_seed_always_starts_the_strings_at_the_same_phases() {
        assert_eq!(render(7, 256), render(7, 256));
        assert_ne!(
            render(8, 256),
            render(7, 256),
            "another seed starts them elsewhere"
        );
    }
}
