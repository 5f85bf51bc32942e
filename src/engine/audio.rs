//! The audio half: renders scheduled voices through the master bus.
//!
//! Everything here runs on the audio thread and must not allocate, lock, block, log or
//! panic: all memory is allocated in [`AudioHalf::new`], voices arrive ready-built
//! through a ring buffer, and finished voices leave through another to be freed
//! elsewhere. `tests/audio_thread.rs` fails if `render` allocates.
//!
//! It also defends the sound against its own parts: a voice whose output turns NaN or
//! infinite is dropped (and counted) before it reaches the bus, a bus that goes
//! non-finite anyway is reset, and subnormal floats are flushed to zero while it
//! renders, so that silence costs no more than sound.

use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::Instant;

use fundsp::prelude::{AudioUnit, BufferArray, BufferRef, U1};

use super::clock::StreamClock;
use super::denormals::FlushToZero;
use super::limiter::Limiter;
use super::reverb::Reverb;
use super::{EngineShared, Scheduled, ASAP, BLOCK};

/// A voice on the audio thread.
struct Active {
    unit: Box<dyn AudioUnit>,
    /// Absolute stream frame of its first sample.
    start: u64,
    /// Frames still to play.
    remaining: u64,
    gain_l: f32,
    gain_r: f32,
    /// Being faded out to make room for another voice.
    stolen: bool,
}

/// Length of the fade that ends every voice, and of a stolen voice's fade-out: short
/// enough to make room fast, long enough that no click is heard (5 ms at 48 kHz).
const FADE_SECONDS: f64 = 0.005;

pub struct AudioHalf {
    slots: Vec<Option<Active>>,
    polyphony: usize,
    incoming: rtrb::Consumer<Scheduled>,
    retired: rtrb::Producer<Box<dyn AudioUnit>>,
    reverb: Reverb,
    /// The look-ahead limiter (and ceiling) ending the master bus.
    limiter: Limiter,
    /// The block being mixed, then (once through the bus) being delivered.
    mix_l: [f32; BLOCK],
    mix_r: [f32; BLOCK],
    voice_out: BufferArray<U1>,
    /// Frames rendered by the engine: always whole blocks, ahead of what was delivered.
    rendered: u64,
    /// Frames delivered to the output: the stream clock.
    clock: u64,
    /// Read position in `mix_l`/`mix_r`; BLOCK when the block is used up.
    read: usize,
    fade_frames: u64,
    /// The largest device buffer seen (published in `EngineShared::device_buffer`).
    largest_buffer: u32,
    volume: f32,
    volume_coeff: f32,
    ceiling: f32,
    stream_clock: StreamClock,
    epoch: Instant,
    shared: Arc<EngineShared>,
    /// This half's place in `EngineShared::generation`.
    generation: u64,
    flush_denormals: bool,
}

impl AudioHalf {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        reverb: Reverb,
        limiter: Limiter,
        incoming: rtrb::Consumer<Scheduled>,
        retired: rtrb::Producer<Box<dyn AudioUnit>>,
        slots: usize,
        polyphony: usize,
        ceiling: f32,
        sample_rate: f64,
        shared: Arc<EngineShared>,
        epoch: Instant,
        clock: u64,
        generation: u64,
    ) -> Self {
        Self {
            slots: (0..slots).map(|_| None).collect(),
            polyphony,
            incoming,
            retired,
            reverb,
            limiter,
            mix_l: [0.0; BLOCK],
            mix_r: [0.0; BLOCK],
            voice_out: BufferArray::new(),
            // A new half continues the stream clock of the one it replaces: notes
            // already scheduled keep their meaning.
            rendered: clock,
            clock,
            read: BLOCK,
            fade_frames: (FADE_SECONDS * sample_rate).max(1.0) as u64,
            largest_buffer: 0,
            volume: shared.volume(),
            // Volume changes glide with a 20 ms time constant: no zipper noise.
            volume_coeff: (-1.0 / (0.020 * sample_rate)).exp() as f32,
            ceiling,
            stream_clock: StreamClock::new(sample_rate),
            epoch,
            shared,
            generation,
            flush_denormals: true,
        }
    }

    /// Whether `render` flushes subnormal floats to zero (it does unless told not to,
    /// which only a measurement of what flushing saves has reason to do).
    pub fn set_flush_denormals(&mut self, flush: bool) {
        self.flush_denormals = flush;
    }

    /// Frames delivered so far: the stream clock.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Fill `out`, interleaved with `channels` channels, with the next frames of the
    /// stream. Real-time safe: no allocation, lock, blocking call, log or panic.
    ///
    /// The engine always renders whole blocks aligned on the stream clock and serves
    /// the caller from them, so the output does not depend on the caller's buffer size;
    /// it renders at most one block ahead, so a note must be scheduled at least one
    /// block (64 frames) after the current clock to start exactly on time.
    pub fn render(&mut self, out: &mut [f32], channels: usize) {
        if self.shared.generation.load(Relaxed) != self.generation {
            // Replaced: the control half has built a new audio half for a new stream,
            // and this one must neither sound nor move the shared clock.
            out.fill(0.0);
            return;
        }
        let _flush = FlushToZero::new(self.flush_denormals);
        let channels = channels.max(1);
        let now_ns = self.epoch.elapsed().as_nanos() as f64;
        let origin = self
            .stream_clock
            .update(now_ns, self.clock, out.len() / channels);
        self.shared.origin_ns.store(origin as i64 as u64, Release);
        let frames = out.len() / channels;
        if frames as u32 > self.largest_buffer {
            self.largest_buffer = frames as u32;
            self.shared.device_buffer.store(frames as u32, Release);
        }
        let mut done = 0;
        while done < frames {
            if self.read == BLOCK {
                self.render_block();
                self.read = 0;
            }
            let n = (BLOCK - self.read).min(frames - done);
            let left = &self.mix_l[self.read..self.read + n];
            let right = &self.mix_r[self.read..self.read + n];
            for (i, frame) in out[done * channels..(done + n) * channels]
                .chunks_exact_mut(channels)
                .enumerate()
            {
                match frame {
                    [mono] => *mono = 0.5 * (left[i] + right[i]),
                    [l, r, rest @ ..] => {
                        *l = left[i];
                        *r = right[i];
                        rest.fill(0.0);
                    }
                    [] => {}
                }
            }
            self.read += n;
            done += n;
        }
        self.clock += frames as u64;
        self.shared.frames.store(self.clock, Release);
    }

    /// Render the next block into `mix_l`/`mix_r`, through the master bus.
    fn render_block(&mut self) {
        let n = BLOCK;
        let t0 = self.rendered;
        let t1 = t0 + n as u64;
        self.receive(t0);
        self.mix_l.fill(0.0);
        self.mix_r.fill(0.0);
        let fade = self.fade_frames;
        for slot in self.slots.iter_mut() {
            let Some(v) = slot else { continue };
            if v.start >= t1 || v.remaining == 0 {
                continue;
            }
            // A voice starting inside this block begins at its exact frame.
            let offset = v.start.saturating_sub(t0) as usize;
            let len = ((n - offset) as u64).min(v.remaining) as usize;
            v.unit
                .process(len, &BufferRef::empty(), &mut self.voice_out.buffer_mut());
            let samples = &mut self.voice_out.channel_f32_mut(0)[..len];
            if !all_finite(samples) {
                // One NaN in the bus would stay in the reverb's feedback for good: the
                // voice goes, the sound stays.
                v.remaining = 0;
                self.shared.nonfinite.fetch_add(1, Relaxed);
                continue;
            }
            // Every voice ends with a linear fade over its last `fade` frames.
            if v.remaining < fade + len as u64 {
                for (i, s) in samples.iter_mut().enumerate() {
                    let left_to_play = v.remaining - i as u64;
                    if left_to_play < fade {
                        *s *= left_to_play as f32 / fade as f32;
                    }
                }
            }
            let samples = &self.voice_out.channel_f32(0)[..len];
            let mix_l = &mut self.mix_l[offset..offset + len];
            let mix_r = &mut self.mix_r[offset..offset + len];
            for ((l, r), &s) in mix_l.iter_mut().zip(mix_r.iter_mut()).zip(samples) {
                *l += s * v.gain_l;
                *r += s * v.gain_r;
            }
            v.remaining -= len as u64;
        }
        self.retire();
        self.reverb.process(&mut self.mix_l, &mut self.mix_r);
        self.limiter.process(&mut self.mix_l, &mut self.mix_r);
        if !(all_finite(&self.mix_l) && all_finite(&self.mix_r)) {
            // Voices are checked above, so this is the bus's own state gone bad: start
            // it afresh rather than let it silence everything that follows.
            self.reverb.reset();
            self.limiter.reset();
            self.mix_l.fill(0.0);
            self.mix_r.fill(0.0);
            self.shared.bus_resets.fetch_add(1, Relaxed);
        }
        let target = self.shared.volume();
        let (c, ceiling) = (self.volume_coeff, self.ceiling);
        let start_volume = self.volume;
        let mut clamped = 0u32;
        for channel in [&mut self.mix_l, &mut self.mix_r] {
            let mut volume = start_volume;
            for x in channel.iter_mut() {
                volume = target + (volume - target) * c;
                // The limiter alone keeps peaks under the ceiling; the clamp is a last
                // guard, and every sample it changes is counted so that tests can tell.
                let y = *x * volume;
                let z = y.clamp(-ceiling, ceiling);
                clamped += u32::from(z != y);
                *x = z;
            }
            self.volume = volume;
        }
        if clamped > 0 {
            self.shared.clamped.fetch_add(u64::from(clamped), Relaxed);
        }
        self.rendered = t1;
    }

    /// Take newly scheduled voices into free slots, stealing the oldest if over polyphony.
    fn receive(&mut self, t0: u64) {
        while let Ok(Scheduled { voice, mut start }) = self.incoming.pop() {
            if start == ASAP {
                start = t0;
            } else if start < t0 {
                self.shared.late.fetch_add(1, Relaxed);
                start = t0;
            }
            let sounding = self
                .slots
                .iter()
                .filter(|s| s.as_ref().is_some_and(|v| !v.stolen && v.remaining > 0))
                .count();
            if sounding >= self.polyphony {
                self.steal_oldest();
            }
            let (gain_l, gain_r) = pan_gains(voice.pan, voice.gain);
            let active = Active {
                unit: voice.unit,
                start,
                remaining: voice.frames,
                gain_l,
                gain_r,
                stolen: false,
            };
            match self.slots.iter_mut().find(|s| s.is_none()) {
                Some(slot) => *slot = Some(active),
                None => {
                    self.shared.overflow.fetch_add(1, Relaxed);
                    // The return queue has room for every voice (see `engine`); if it
                    // were ever full, the voice is kept silent rather than freed here.
                    if let Err(rtrb::PushError::Full(unit)) = self.retired.push(active.unit) {
                        std::mem::forget(unit);
                    }
                }
            }
        }
    }

    fn steal_oldest(&mut self) {
        let fade = self.fade_frames;
        let oldest = self
            .slots
            .iter_mut()
            .flatten()
            .filter(|v| !v.stolen && v.remaining > 0)
            .min_by_key(|v| v.start);
        if let Some(v) = oldest {
            v.stolen = true;
            v.remaining = v.remaining.min(fade);
            self.shared.stolen.fetch_add(1, Relaxed);
        }
    }

    /// Send finished voices back to the control half, and publish the voice count.
    fn retire(&mut self) {
        let mut count = 0;
        for slot in self.slots.iter_mut() {
            match slot {
                Some(v) if v.remaining == 0 => {
                    if self.retired.slots() == 0 {
                        // No room this block: keep it (silent) and try again next block.
                        count += 1;
                        continue;
                    }
                    if let Some(v) = slot.take() {
                        let _ = self.retired.push(v.unit);
                    }
                }
                Some(_) => count += 1,
                None => {}
            }
        }
        self.shared.voices.store(count, Relaxed);
    }
}

/// Whether every sample is finite. A float is NaN or infinite exactly when its bits,
/// less the sign, are at least those of infinity; the largest of them tells for the
/// whole slice, and an integer maximum vectorizes (a float sum, bound to its order,
/// would not, and cost a fifth of the engine's time at 256 voices).
#[inline]
fn all_finite(samples: &[f32]) -> bool {
    samples
        .iter()
        .map(|s| s.to_bits() & 0x7fff_ffff)
        .max()
        .is_none_or(|m| m < 0x7f80_0000)
}

/// Equal-power pan: -1 left, 0 centre, 1 right.
fn pan_gains(pan: f32, gain: f32) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f32::consts::FRAC_PI_4;
    (gain * angle.cos(), gain * angle.sin())
}
