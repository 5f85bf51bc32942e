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
use super::{peak_bits, EngineShared, Scheduled, ASAP, BLOCK, SOUNDING};
use crate::simd::{dispatch_by_width, Width};

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
    /// The level of the voice's own output (before its gains) under which it is no
    /// longer heard: its instrument's audibility floor over its louder gain.
    floor: f32,
    /// Whether it has been heard yet: a slow swell starts under the floor, and must
    /// not be retired before it rises.
    sounded: bool,
    /// Blocks in a row it has stayed under the floor since it was heard.
    quiet_blocks: u32,
}

/// Length of the fade that ends every voice, and of a stolen voice's fade-out: short
/// enough to make room fast, long enough that no click is heard (5 ms at 48 kHz).
const FADE_SECONDS: f64 = 0.005;

/// A voice heard, then under its floor for this many blocks in a row (10.7 ms at
/// 48 kHz) is retired: long enough that a waveform's zero crossings or a beat between
/// partials are not taken for its end.
const QUIET_BLOCKS: u32 = 8;

/// Under this level (-90 dBFS, about a 16-bit sample's step) the reverb's tail is
/// gone, and the reverb is put to sleep.
pub const AUDIBLE: f32 = 3.162_277_7e-5;

pub struct AudioHalf {
    /// The voices, in the order they arrived; room for `capacity` of them is allocated
    /// once, and they never move elsewhere on this thread.
    voices: Vec<Active>,
    capacity: usize,
    /// How many voices at the front of `voices` are being faded out to make room:
    /// voices are stolen oldest first, so the stolen ones are always the oldest, and
    /// the next to steal is the first after them. Stealing and counting what sounds
    /// take no scan.
    stolen_front: usize,
    polyphony: usize,
    incoming: rtrb::Consumer<Scheduled>,
    retired: rtrb::Producer<Box<dyn AudioUnit>>,
    reverb: Reverb,
    /// Frames of silent input after which the reverb's lines hold nothing that can
    /// still come out: its longest path.
    reverb_memory: u64,
    /// Frames in a row the reverb has had silent input and given out nothing audible.
    reverb_quiet: u64,
    /// The reverb's lines are cleared and it is not run until a voice sounds again.
    reverb_asleep: bool,
    /// The look-ahead limiter (and ceiling) ending the master bus.
    limiter: Limiter,
    /// The block being mixed, then (once through the bus) being delivered.
    mix_l: [f32; BLOCK],
    mix_r: [f32; BLOCK],
    /// Whether the block in `mix_l`/`mix_r` is known to be all zeros: nothing sounded
    /// and the bus was asleep, so it is neither cleared again nor copied sample by sample.
    mix_silent: bool,
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
    width: Width,
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
            voices: Vec::with_capacity(slots),
            capacity: slots,
            stolen_front: 0,
            polyphony,
            incoming,
            retired,
            reverb_memory: reverb.memory_frames() as u64,
            reverb_quiet: 0,
            // A new bus starts with nothing in it: asleep until a voice sounds.
            reverb_asleep: true,
            reverb,
            limiter,
            mix_l: [0.0; BLOCK],
            mix_r: [0.0; BLOCK],
            mix_silent: true,
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
            width: Width::detect(),
        }
    }

    /// Run the mix, the reverb and the limiter at `width` if the CPU has it (the
    /// baseline otherwise): for tests and benchmarks that compare the two builds.
    pub fn set_width(&mut self, width: Width) {
        self.width = width.supported();
        self.reverb.set_width(width);
        self.limiter.set_width(width);
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

    /// Whether the engine is doing nothing per sample: no voice, and a master bus
    /// (reverb and limiter) asleep with nothing left in it.
    pub fn asleep(&self) -> bool {
        self.voices.is_empty() && self.reverb_asleep && self.limiter.idle()
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
            let out = &mut out[done * channels..(done + n) * channels];
            if self.mix_silent {
                out.fill(0.0);
            } else {
                let left = &self.mix_l[self.read..self.read + n];
                let right = &self.mix_r[self.read..self.read + n];
                if channels == 2 {
                    // The usual case, as a loop the compiler can vectorize.
                    for ((frame, &l), &r) in out.chunks_exact_mut(2).zip(left).zip(right) {
                        frame[0] = l;
                        frame[1] = r;
                    }
                } else {
                    for (i, frame) in out.chunks_exact_mut(channels).enumerate() {
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
                }
            }
            self.read += n;
            done += n;
        }
        self.clock += frames as u64;
        self.shared.frames.store(self.clock, Release);
    }

    dispatch_by_width!(
    /// Render the next block into `mix_l`/`mix_r`, through the master bus.
    fn render_block(&mut self) => render_block_body, render_block_wide);

    #[inline(always)]
    fn render_block_body(&mut self) {
        let n = BLOCK;
        let t0 = self.rendered;
        let t1 = t0 + n as u64;
        self.rendered = t1;
        self.receive(t0);
        if self.asleep() {
            // Nothing sounds and nothing is left in the bus: the block is silence, and
            // costs nothing per sample. The volume is where it was gliding to.
            if !self.mix_silent {
                self.mix_l.fill(0.0);
                self.mix_r.fill(0.0);
                self.mix_silent = true;
                self.shared.silent_since.store(t0, Release);
            }
            self.volume = self.shared.volume();
            self.shared.voices.store(0, Relaxed);
            return;
        }
        if self.mix_silent {
            self.shared.silent_since.store(SOUNDING, Release);
        }
        self.mix_silent = false;
        self.mix_l.fill(0.0);
        self.mix_r.fill(0.0);
        let fade = self.fade_frames;
        let mut mixed = false;
        for v in self.voices.iter_mut() {
            if v.start >= t1 || v.remaining == 0 {
                continue;
            }
            // A voice starting inside this block begins at its exact frame.
            let offset = v.start.saturating_sub(t0) as usize;
            let len = ((n - offset) as u64).min(v.remaining) as usize;
            v.unit
                .process(len, &BufferRef::empty(), &mut self.voice_out.buffer_mut());
            let samples = &mut self.voice_out.channel_f32_mut(0)[..len];
            let Some(peak) = peak_if_finite(samples) else {
                // One NaN in the bus would stay in the reverb's feedback for good: the
                // voice goes, the sound stays.
                v.remaining = 0;
                self.shared.nonfinite.fetch_add(1, Relaxed);
                continue;
            };
            if peak >= v.floor {
                v.sounded = true;
                v.quiet_blocks = 0;
            } else if v.sounded {
                v.quiet_blocks += 1;
                if v.quiet_blocks >= QUIET_BLOCKS {
                    // Under its instrument's audibility floor for good: what is left
                    // of it would only be computed, never heard.
                    v.remaining = 0;
                    self.shared.inaudible.fetch_add(1, Relaxed);
                    continue;
                }
            }
            mixed = true;
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
        if mixed {
            self.reverb_asleep = false;
            self.reverb_quiet = 0;
            self.reverb.process(&mut self.mix_l, &mut self.mix_r);
        } else if !self.reverb_asleep {
            // Silent input: what comes out is the reverb's tail alone. Once it has
            // stayed inaudible for as long as the reverb remembers, it is over.
            self.reverb.process(&mut self.mix_l, &mut self.mix_r);
            let tail = peak_if_finite(&self.mix_l)
                .zip(peak_if_finite(&self.mix_r))
                .map_or(f32::INFINITY, |(l, r)| l.max(r));
            if tail < AUDIBLE {
                self.reverb_quiet += n as u64;
                if self.reverb_quiet >= self.reverb_memory {
                    self.reverb.reset();
                    self.reverb_asleep = true;
                }
            } else {
                self.reverb_quiet = 0;
            }
        }
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
        // The limiter alone keeps peaks under the ceiling; the clamp is a last guard,
        // and every sample it changes is counted so that tests can tell.
        let mut guard = |y: f32| {
            let z = y.clamp(-ceiling, ceiling);
            clamped += u32::from(z != y);
            z
        };
        if start_volume == target {
            // Nearly always: a volume at rest is a plain multiply, which vectorizes,
            // where the glide below is a chain of dependent samples.
            for x in self.mix_l.iter_mut().chain(self.mix_r.iter_mut()) {
                *x = guard(*x * target);
            }
        } else {
            for channel in [&mut self.mix_l, &mut self.mix_r] {
                let mut volume = start_volume;
                for x in channel.iter_mut() {
                    volume = target + (volume - target) * c;
                    *x = guard(*x * volume);
                }
                self.volume = volume;
            }
            // In f32 the glide freezes short of its target (at 0.3, 1.4e-5 short, where
            // each step rounds back to where it was): a block that left it where it was
            // has gone as far as it will, and it lands, by an inaudible step.
            if self.volume == start_volume {
                self.volume = target;
            }
        }
        if clamped > 0 {
            self.shared.clamped.fetch_add(u64::from(clamped), Relaxed);
        }
    }

    /// Take newly scheduled voices, stealing the oldest if over polyphony. Constant
    /// time per voice: no scan of the voices.
    fn receive(&mut self, t0: u64) {
        while let Ok(Scheduled { voice, mut start }) = self.incoming.pop() {
            if start == ASAP {
                start = t0;
            } else if start < t0 {
                self.shared.late.fetch_add(1, Relaxed);
                start = t0;
            }
            // Every voice held sounds or waits to (finished ones left at the end of
            // the last block), so those not being faded out are the ones that count.
            if self.voices.len() - self.stolen_front >= self.polyphony {
                self.steal_oldest();
            }
            let (gain_l, gain_r) = pan_gains(voice.pan, voice.gain);
            let louder = gain_l.max(gain_r);
            let active = Active {
                unit: voice.unit,
                start,
                remaining: voice.frames,
                gain_l,
                gain_r,
                stolen: false,
                floor: if louder > 0.0 {
                    voice.audible / louder
                } else {
                    // Never heard, so never found under its floor: it plays its length.
                    f32::INFINITY
                },
                sounded: false,
                quiet_blocks: 0,
            };
            if self.voices.len() < self.capacity {
                // Within the room allocated in `new`: no allocation.
                self.voices.push(active);
            } else {
                self.shared.overflow.fetch_add(1, Relaxed);
                // The return queue has room for every voice (see `engine`); if it
                // were ever full, the voice is leaked rather than freed here.
                if let Err(rtrb::PushError::Full(unit)) = self.retired.push(active.unit) {
                    std::mem::forget(unit);
                }
            }
        }
    }

    /// Fade out the oldest voice not already fading: the first after the stolen ones.
    fn steal_oldest(&mut self) {
        let fade = self.fade_frames;
        if let Some(v) = self.voices.get_mut(self.stolen_front) {
            v.stolen = true;
            v.remaining = v.remaining.min(fade);
            self.stolen_front += 1;
            self.shared.stolen.fetch_add(1, Relaxed);
        }
    }

    /// Send finished voices back to the control half, keep the others in the order
    /// they came, and publish the voice count.
    fn retire(&mut self) {
        let mut kept = 0;
        let mut stolen = 0;
        for i in 0..self.voices.len() {
            if self.voices[i].remaining > 0 {
                stolen += usize::from(self.voices[i].stolen);
                self.voices.swap(kept, i);
                kept += 1;
            }
        }
        for v in self.voices.drain(kept..) {
            // The return queue has room for every voice this half can hold (see
            // `engine`); were it ever full, the voice is leaked rather than freed here.
            if let Err(rtrb::PushError::Full(unit)) = self.retired.push(v.unit) {
                std::mem::forget(unit);
            }
        }
        self.stolen_front = stolen;
        self.shared.voices.store(kept as u32, Relaxed);
    }
}

/// The largest magnitude in a block, or None if any sample is NaN or infinite (see
/// [`peak_bits`]; computed at every voice's every block, a float sum's way of telling
/// cost a fifth of the engine's time at 256 voices).
#[inline(always)]
fn peak_if_finite(samples: &[f32]) -> Option<f32> {
    let bits = peak_bits(samples);
    (bits < 0x7f80_0000).then(|| f32::from_bits(bits))
}

/// Whether every sample is finite.
#[inline(always)]
fn all_finite(samples: &[f32]) -> bool {
    peak_if_finite(samples).is_some()
}

/// Equal-power pan: -1 left, 0 centre, 1 right.
fn pan_gains(pan: f32, gain: f32) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f32::consts::FRAC_PI_4;
    (gain * angle.cos(), gain * angle.sin())
}
