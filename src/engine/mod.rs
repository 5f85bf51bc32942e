//! The synthesizer, split in two halves by type.
//!
//! [`ControlHalf`] lives on any ordinary thread: it builds voices (which allocates) and
//! schedules each at an absolute stream time, in frames. [`AudioHalf`] is owned by
//! whatever drives the audio (the device callback, the WAV renderer, a benchmark): it
//! never allocates, locks, blocks or logs. They talk only through preallocated
//! lock-free ring buffers (rtrb) and atomics; voices that finish travel back to the
//! control half to be freed there.

mod audio;
pub mod clock;
mod control;
pub mod denormals;
pub mod density;
pub mod limiter;
pub mod reverb;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;

use fundsp::prelude::{AudioUnit, MAX_BUFFER_SIZE};

pub use audio::AudioHalf;
pub use control::{ControlHalf, Played, QueueFull};
pub use denormals::FlushToZero;

use crate::config::EngineConfig;
use crate::instrument::{Instruments, Voice};

/// Frames rendered per internal block: fundsp's block size.
pub const BLOCK: usize = MAX_BUFFER_SIZE;

/// State both halves read and write: counters and the stream clock, as atomics.
#[derive(Debug, Default)]
pub struct EngineShared {
    /// Frames rendered so far: the stream clock.
    pub frames: AtomicU64,
    /// When stream frame 0 would have been rendered, had every frame taken exactly one
    /// sample period: nanoseconds since the control half's epoch, as i64 bits. One atomic,
    /// updated at every render call, so that a reader never sees a clock from one call
    /// paired with a time from another.
    pub origin_ns: AtomicU64,
    /// Voices sounding or waiting for their start.
    pub voices: AtomicU32,
    /// Voices faded out early to make room (polyphony cap).
    pub stolen: AtomicU64,
    /// Voices retired before their end because they fell under their instrument's
    /// audibility floor.
    pub inaudible: AtomicU64,
    /// Notes whose start time had passed when they reached the audio half.
    pub late: AtomicU64,
    /// Notes dropped because even the fade-out slots were full.
    pub overflow: AtomicU64,
    /// Master volume target, f32 bits.
    pub volume: AtomicU32,
    /// The largest device buffer delivered so far, in frames: the scheduler's floor
    /// depends on it, and some devices choose their own.
    pub device_buffer: AtomicU32,
    /// Samples the final clamp had to change: 0 when the limiter alone held the
    /// ceiling, as it should.
    pub clamped: AtomicU64,
    /// Voices dropped because they produced a NaN or an infinity.
    pub nonfinite: AtomicU64,
    /// Times the master bus (reverb, limiter) was reset after going non-finite.
    pub bus_resets: AtomicU64,
    /// The audio half allowed to render: a replaced one (its stream lost) that is still
    /// called renders silence and publishes nothing.
    pub generation: AtomicU64,
    /// The stream frame from which the output has been silence, the engine asleep (see
    /// [`AudioHalf::asleep`]), or [`SOUNDING`] while anything sounds: how the conductor
    /// knows when to let the device go.
    pub silent_since: AtomicU64,
}

impl EngineShared {
    pub fn volume(&self) -> f32 {
        f32::from_bits(self.volume.load(Relaxed))
    }

    pub fn set_volume(&self, volume: f32) {
        self.volume.store(volume.clamp(0.0, 1.0).to_bits(), Relaxed);
    }
}

/// `EngineShared::silent_since` while the engine is not asleep.
pub const SOUNDING: u64 = u64::MAX;

/// The start of a note that should sound as soon as it can: in the first block the
/// audio half has not rendered yet. Such a note is never late.
pub const ASAP: u64 = u64::MAX;

/// The largest magnitude in a block, as bits: over floats, the order of their bits less
/// the sign is the order of their magnitudes, with infinity above every number and NaN
/// above infinity; and an integer maximum vectorizes, where a float one (bound to NaN's
/// rules) or a float sum (bound to its order) does not. The largest tells for the whole
/// slice: the block's peak, and whether it holds anything non-finite.
#[inline(always)]
pub(crate) fn peak_bits(samples: &[f32]) -> u32 {
    samples
        .iter()
        .map(|s| s.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0)
}

/// A voice with its absolute start time, on its way to the audio half.
pub struct Scheduled {
    pub voice: Voice,
    pub start: u64,
}

/// Build both halves of an engine for the given sample rate.
pub fn engine(
    config: &EngineConfig,
    instruments: Instruments,
    sample_rate: f64,
) -> (ControlHalf, AudioHalf) {
    let shared = Arc::new(EngineShared::default());
    shared.set_volume(config.volume);
    let blueprint = Blueprint {
        config: config.clone(),
        sample_rate,
        epoch: std::time::Instant::now(),
        shared,
    };
    let (queues, audio) = blueprint.build(0, 0);
    (ControlHalf::new(instruments, blueprint, queues), audio)
}

/// The control half's ends of the queues to one audio half.
pub(crate) struct Queues {
    pub to_audio: rtrb::Producer<Scheduled>,
    pub from_audio: rtrb::Consumer<Box<dyn AudioUnit>>,
}

/// What the control half needs to build an audio half: once at the start, and again
/// whenever the output is reopened (a lost device, a failed callback), so that the new
/// stream starts from a clean bus instead of whatever state the old one died in.
pub(crate) struct Blueprint {
    config: EngineConfig,
    sample_rate: f64,
    epoch: std::time::Instant,
    shared: Arc<EngineShared>,
}

impl Blueprint {
    /// A new audio half whose stream clock starts at `clock`, as generation `generation`.
    fn build(&self, clock: u64, generation: u64) -> (Queues, AudioHalf) {
        let config = &self.config;
        let sample_rate = self.sample_rate;
        // Room for every voice that could be in flight: a full polyphony's worth plus as
        // many again fading out after being stolen.
        let slots = config.polyphony * 2;
        let queue = config.polyphony.max(16) * 2;
        let (to_audio, from_control) = rtrb::RingBuffer::<Scheduled>::new(queue);
        // Every voice the audio half holds or can receive fits in the return queue, so it
        // never has to keep (or free) a finished voice for lack of room.
        let (to_control, from_audio) = rtrb::RingBuffer::<Box<dyn AudioUnit>>::new(slots + queue);
        let r = &config.reverb;
        let l = &config.limiter;
        let reverb = reverb::Reverb::new(r.room_size, r.time, r.damping, r.wet, sample_rate);
        let limiter = limiter::Limiter::new(
            f64::from(l.attack_ms),
            f64::from(l.release_ms),
            l.ceiling,
            sample_rate,
        );
        // A new half starts asleep, with nothing in its bus.
        self.shared.silent_since.store(clock, Release);
        let audio = AudioHalf::new(
            reverb,
            limiter,
            from_control,
            to_control,
            slots,
            config.polyphony,
            l.ceiling,
            sample_rate,
            self.shared.clone(),
            self.epoch,
            clock,
            generation,
        );
        let queues = Queues {
            to_audio,
            from_audio,
        };
        (queues, audio)
    }
}
