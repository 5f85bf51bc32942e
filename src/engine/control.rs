//! The control half: builds voices and sends them, scheduled, to the audio half.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Instant;

use fundsp::prelude::AudioUnit;
use thiserror::Error;

use super::{EngineShared, Scheduled};
use crate::instrument::Instruments;
use crate::score::Note;

#[derive(Debug, Error)]
#[error("the engine's note queue is full")]
pub struct QueueFull;

/// What [`ControlHalf::play`] scheduled, beyond the note itself.
#[derive(Debug, Clone, Copy)]
pub struct Played {
    /// Length of the voice in frames.
    pub frames: u64,
    /// Its linear gain (the recipe's gain × the note's velocity).
    pub gain: f32,
}

pub struct ControlHalf {
    instruments: Instruments,
    sample_rate: f64,
    to_audio: rtrb::Producer<Scheduled>,
    from_audio: rtrb::Consumer<Box<dyn AudioUnit>>,
    shared: Arc<EngineShared>,
    epoch: Instant,
}

impl ControlHalf {
    pub(super) fn new(
        instruments: Instruments,
        sample_rate: f64,
        to_audio: rtrb::Producer<Scheduled>,
        from_audio: rtrb::Consumer<Box<dyn AudioUnit>>,
        shared: Arc<EngineShared>,
        epoch: Instant,
    ) -> Self {
        Self {
            instruments,
            sample_rate,
            to_audio,
            from_audio,
            shared,
            epoch,
        }
    }

    pub fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    pub fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The instant against which the audio half timestamps its render calls.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Build the voice for `note` and schedule it to start at stream frame `start`.
    pub fn play(&mut self, note: &Note, start: u64) -> Result<Played, QueueFull> {
        self.collect();
        if self.to_audio.is_full() {
            return Err(QueueFull);
        }
        let voice = self.instruments.build(note, self.sample_rate);
        let played = Played {
            frames: voice.frames,
            gain: voice.gain,
        };
        self.to_audio
            .push(Scheduled { voice, start })
            .map_err(|_| QueueFull)?;
        Ok(played)
    }

    /// Free the voices the audio half has finished with. Returns how many.
    pub fn collect(&mut self) -> usize {
        let mut n = 0;
        while let Ok(unit) = self.from_audio.pop() {
            drop(unit);
            n += 1;
        }
        n
    }

    /// The stream frame of an instant, from the clock the audio half published at its
    /// last render call. In a live stream this is the arrival frame of an event.
    pub fn frame_at(&self, at: Instant) -> u64 {
        let origin = self.shared.origin_ns.load(Acquire) as i64;
        let at = at.saturating_duration_since(self.epoch).as_nanos() as i64;
        ((at - origin) as f64 * 1e-9 * self.sample_rate).max(0.0) as u64
    }

    /// The stream frame of this instant.
    pub fn now_frame(&self) -> u64 {
        self.frame_at(Instant::now())
    }

    pub fn set_volume(&self, volume: f32) {
        self.shared.set_volume(volume);
    }

    /// The largest buffer the device has asked for so far (0 before it first plays).
    pub fn device_buffer(&self) -> u32 {
        self.shared.device_buffer.load(Acquire)
    }

    pub fn voices(&self) -> u32 {
        self.shared.voices.load(Relaxed)
    }
}
