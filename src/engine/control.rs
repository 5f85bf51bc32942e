//! The control half: builds voices and sends them, scheduled, to the audio half.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fundsp::prelude::AudioUnit;
use thiserror::Error;

use super::density::Density;
use super::{AudioHalf, Blueprint, EngineShared, Queues, Scheduled, ASAP, SOUNDING};
use crate::instrument::{Instruments, Voice};
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
    blueprint: Blueprint,
    /// Softens new notes as the stream gets busier (`[engine.density]`).
    density: Density,
}

impl ControlHalf {
    pub(super) fn new(instruments: Instruments, blueprint: Blueprint, queues: Queues) -> Self {
        Self {
            instruments,
            sample_rate: blueprint.sample_rate,
            to_audio: queues.to_audio,
            from_audio: queues.from_audio,
            shared: blueprint.shared.clone(),
            epoch: blueprint.epoch,
            density: Density::new(&blueprint.config.density),
            blueprint,
        }
    }

    /// A new audio half to replace the current one, for a new output stream after the
    /// old one was lost (or its callback failed). It continues the stream clock from
    /// the last frame the old half delivered, with a fresh bus and no voices: whatever
    /// was sounding went with the device. From now on the old half, wherever it is,
    /// renders silence and publishes nothing.
    pub fn renew_audio(&mut self) -> AudioHalf {
        let generation = self.shared.generation.fetch_add(1, Relaxed) + 1;
        let clock = self.shared.frames.load(Acquire);
        let (queues, audio) = self.blueprint.build(clock, generation);
        // The old queues (and any voices still in them) are freed here, off the audio
        // thread, as are the voices of the old half when its stream is dropped.
        self.to_audio = queues.to_audio;
        self.from_audio = queues.from_audio;
        self.shared.voices.store(0, Relaxed);
        audio
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

    /// Build the voice for `note` and schedule it to start at stream frame `start`, at
    /// the gain the density of notes asks for (see [`Density`]).
    pub fn play(&mut self, note: &Note, start: u64) -> Result<Played, QueueFull> {
        self.collect();
        if self.to_audio.is_full() {
            return Err(QueueFull);
        }
        let mut voice = self.instruments.build(note, self.sample_rate);
        let at = self.start_frame(start);
        voice.gain *= self.density.note_at(at as f64 / self.sample_rate);
        self.schedule(voice, start)
    }

    /// The stream frame at which a note scheduled to start at `start` will start:
    /// `start` itself, or for [`ASAP`] the first frame not yet delivered to the output
    /// (where buffers are whole blocks, exactly; otherwise up to one block before it).
    pub fn start_frame(&self, start: u64) -> u64 {
        if start == ASAP {
            self.shared.frames.load(Acquire)
        } else {
            start
        }
    }

    /// The running estimate of notes started a second, as the density control sees it.
    pub fn note_rate(&self) -> f64 {
        self.density.rate()
    }

    /// Schedule a voice built elsewhere to start at stream frame `start`.
    pub fn schedule(&mut self, voice: Voice, start: u64) -> Result<Played, QueueFull> {
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

    /// The instant the callback renders stream frame `frame` (the inverse of
    /// [`ControlHalf::frame_at`]); the device plays it its playback delay later.
    pub fn instant_at(&self, frame: u64) -> Instant {
        let origin = self.shared.origin_ns.load(Acquire) as i64;
        let ns = origin as f64 + frame as f64 / self.sample_rate * 1e9;
        self.epoch + Duration::from_nanos(ns.max(0.0) as u64)
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

    /// How long the output has been silence (nothing sounding, the master bus asleep),
    /// on the stream clock: `None` while anything sounds.
    pub fn silent_for(&self) -> Option<Duration> {
        let since = self.shared.silent_since.load(Acquire);
        if since == SOUNDING {
            return None;
        }
        let frames = self.shared.frames.load(Acquire).saturating_sub(since);
        Some(Duration::from_secs_f64(frames as f64 / self.sample_rate))
    }

    pub fn voices(&self) -> u32 {
        self.shared.voices.load(Relaxed)
    }
}
