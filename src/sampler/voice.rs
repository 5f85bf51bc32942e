//! A sampled note: one recording read at the speed that puts it at the note's pitch,
//! through the sample set's band-limited kernel, looped if the recipe sustains it, and
//! faded out over the recipe's release. A fundsp node, so the engine runs it like any
//! other voice; it only reads memory built before it was (its recording and kernels,
//! shared), so rendering allocates, locks and loads nothing.

use std::sync::Arc;

use crate::block_node::mono_block_node;

use super::kernel::{Kernels, HALF, TAPS};
use super::Sample;

const SILENCE: [f32; TAPS] = [0.0; TAPS];

#[derive(Clone)]
pub struct SamplerVoice {
    sample: Arc<Sample>,
    kernels: Arc<Kernels>,
    kernel: usize,
    /// Recorded samples read per played sample.
    step: f64,
    /// Reading position, in recorded samples from the recording's start.
    pos: f64,
    /// Played samples since the start.
    t: u64,
    /// When the release starts, and how long it takes (played samples).
    release_at: u64,
    release_len: u64,
}

impl SamplerVoice {
    /// A voice reading `sample` `step` times as fast as recorded, released after
    /// `release_at` played samples over `release_len` more.
    pub fn new(
        sample: Arc<Sample>,
        kernels: Arc<Kernels>,
        step: f64,
        release_at: u64,
        release_len: u64,
    ) -> SamplerVoice {
        let kernel = kernels.for_step(step);
        SamplerVoice {
            sample,
            kernels,
            kernel,
            step,
            pos: 0.0,
            t: 0,
            release_at,
            release_len: release_len.max(1),
        }
    }

    fn render(&mut self, out: &mut [f32]) {
        let sample = &*self.sample;
        let kernel = self.kernels.get(self.kernel);
        let end = sample.frames as f64;
        for y in out.iter_mut() {
            let level = if self.t < self.release_at {
                1.0
            } else {
                let gone = (self.t - self.release_at) as f32 / self.release_len as f32;
                (1.0 - gone).max(0.0)
            };
            self.t += 1;
            if self.pos >= end || level == 0.0 {
                *y = 0.0;
                continue;
            }
            let base = self.pos as usize;
            // `data` starts with HALF zeros (or more): recorded sample i is data[i + PAD].
            let first = base + super::PAD - (HALF - 1);
            // Always in range (the data is padded past its end); silence if it were not,
            // rather than a panic on the audio thread.
            let taps: &[f32; TAPS] = match sample.data.get(first..first + TAPS) {
                Some(taps) => taps.try_into().unwrap_or(&SILENCE),
                None => &SILENCE,
            };
            *y = kernel.read(taps, self.pos - base as f64) * level;
            self.pos += self.step;
            if let Some((start, loop_end)) = sample.looped {
                if self.pos >= loop_end as f64 {
                    self.pos -= (loop_end - start) as f64;
                }
            }
        }
    }
}

mono_block_node!(SamplerVoice, 0x7361_6d70_6c65_7276, {
    fn reset(&mut self) {
        self.pos = 0.0;
        self.t = 0;
    }
});
