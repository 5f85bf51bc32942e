//! Sampled instruments: a folder of recordings, one file per recorded note, played at
//! any pitch near them.
//!
//! A recipe's `[sampler]` table names the folder (`dir`, relative to the recipe). Each
//! file is named by its note: `C#4.wav`, `Db4.flac`, `A#5.ogg`, `D#2.mp3`. Optional
//! parts before the extension make velocity layers and round-robin alternatives:
//! `C#4.v2.wav` is the second layer (layers go from soft, `v1`, to loud), `C#4.rr2.wav`
//! the second take of the same note, and `C#4.v2.rr3.flac` both. A note plays the
//! recording whose root is nearest (the higher one when two are as near), transposed
//! to its exact pitch; the layer is chosen by velocity (of `n` layers, velocities up
//! to 1/n take `v1`, up to 2/n `v2`, …), and successive notes on the same root and
//! layer take its takes in turn.
//!
//! Files are decoded (rodio) and checked when the recipe is loaded, so that a folder's
//! every problem is reported at once, each with its file; they are converted to the
//! engine's sample rate (rubato) once that is known, and held in memory shared by all
//! voices ([`Bank`]).

pub mod decode;
pub mod kernel;
pub mod voice;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::config::ConfigError;
use crate::pitch::{midi_to_hz, note_name, parse_note};
use kernel::{Kernels, HALF};
use voice::SamplerVoice;

/// Zeros before a recording (and past its end), so that the kernel's taps around any
/// position inside it read memory.
pub const PAD: usize = HALF + 1;

/// The file types rodio decodes here.
pub const EXTENSIONS: [&str; 5] = ["wav", "flac", "ogg", "oga", "mp3"];

/// The `[sampler]` table of a recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampler {
    /// The folder of recordings, relative to the recipe.
    pub dir: String,
    /// How far (semitones) a recording may be transposed, up or down, to reach a note.
    #[serde(default = "default_max_transpose")]
    pub max_transpose: f32,
    /// How long a note is held (s): a looped recording sustains this long; a one-shot
    /// that is longer is faded out here. Then the release.
    #[serde(default = "default_duration_s")]
    pub duration_s: f32,
    /// How long the fade at the end of a held note takes (ms).
    #[serde(default = "default_release_ms")]
    pub release_ms: f32,
    /// The loop region for sustained sounds (s from each recording's start): once past
    /// `loop_end_s` the note goes on from `loop_start_s`, for as long as it is held.
    pub loop_start_s: Option<f32>,
    pub loop_end_s: Option<f32>,
    /// How long (ms) the end of the loop is blended into what precedes its start, so
    /// that the jump back is seamless.
    #[serde(default = "default_crossfade_ms")]
    pub crossfade_ms: f32,
    /// Tuning of a recording that is not exactly at its note (cents, by root name): a
    /// real bell rarely is.
    #[serde(default)]
    pub tune: BTreeMap<String, f32>,
}

fn default_max_transpose() -> f32 {
    6.0
}
fn default_duration_s() -> f32 {
    8.0
}
fn default_release_ms() -> f32 {
    200.0
}
fn default_crossfade_ms() -> f32 {
    50.0
}

impl Sampler {
    /// The loop region, when both ends are given.
    pub fn looped(&self) -> Option<(f32, f32)> {
        self.loop_start_s.zip(self.loop_end_s)
    }
}

/// What a file's name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    midi: i32,
    layer: usize,
    take: usize,
}

/// Read a file name such as `C#4.v2.rr3.wav`: its note, layer and take (both from 1).
fn slot_of(name: &str) -> Result<Slot, String> {
    let mut parts = name.split('.');
    let note = parts.next().unwrap_or_default();
    let midi = parse_note(note).ok_or_else(|| {
        format!(
            "is not named by a note: expected a name such as C#4.wav, Db3.v2.flac or \
             A4.rr2.ogg, not {note:?}"
        )
    })?;
    let mut slot = Slot {
        midi,
        layer: 1,
        take: 1,
    };
    let parts: Vec<&str> = parts.collect();
    // The last part is the extension, checked by the caller.
    for part in &parts[..parts.len().saturating_sub(1)] {
        let number = |prefix: &str| part.strip_prefix(prefix)?.parse::<usize>().ok();
        if let Some(n) = number("rr").filter(|&n| n >= 1) {
            slot.take = n;
        } else if let Some(n) = number("v").filter(|&n| n >= 1) {
            slot.layer = n;
        } else {
            return Err(format!(
                "has {part:?} in its name: expected a velocity layer (v1, v2, …) or a \
                 round-robin take (rr1, rr2, …) between the note and the extension"
            ));
        }
    }
    Ok(slot)
}

/// One recording as decoded, at its own rate.
#[derive(Debug)]
struct Recording {
    path: PathBuf,
    samples: Vec<f32>,
    sample_rate: u32,
}

/// A recorded note: its pitch and its recordings by layer, then take.
#[derive(Debug)]
struct Root {
    midi: i32,
    /// Its pitch as recorded (the note, moved by its `tune`).
    hz: f64,
    layers: Vec<Vec<Recording>>,
    /// The next take of each layer.
    next_take: Vec<AtomicUsize>,
}

/// A recording at the engine's rate, ready to be read by voices.
#[derive(Debug)]
pub struct Sample {
    /// [`PAD`] zeros, the recording (up to its loop's end, if looped), then enough of
    /// what follows for the kernel: zeros, or the loop's start again.
    pub data: Box<[f32]>,
    /// Recorded frames a voice may read (to the loop's end, if looped).
    pub frames: usize,
    /// The loop region, in frames (start, end), if the recipe sustains.
    pub looped: Option<(usize, usize)>,
}

/// A sample set at one sample rate: every recording converted, and the kernels.
#[derive(Debug)]
pub struct Bank {
    pub sample_rate: u32,
    /// By root, layer, take, as in the set.
    samples: Vec<Vec<Vec<Arc<Sample>>>>,
    kernels: Arc<Kernels>,
    /// Seconds of sound held, and the bytes they take.
    pub seconds: f64,
    pub bytes: usize,
}

/// The recordings of one sampler recipe.
#[derive(Debug)]
pub struct SampleSet {
    recipe: Sampler,
    dir: PathBuf,
    /// By pitch, lowest first.
    roots: Vec<Root>,
    /// Converted banks, by sample rate (usually one).
    banks: Mutex<Vec<Arc<Bank>>>,
}

/// A refusal about one file (or the folder).
fn refusal(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl SampleSet {
    /// Load the folder of the recipe `recipe_path`, refusing every problem of every file.
    pub fn load(recipe: &Sampler, recipe_path: &Path) -> Result<SampleSet, Vec<ConfigError>> {
        let dir = recipe_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&recipe.dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            vec![refusal(
                &dir,
                format!(
                    "cannot read this sample folder ({e}), named by sampler.dir = {:?} in {}",
                    recipe.dir,
                    recipe_path.display()
                ),
            )]
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.is_dir())
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        paths.sort();
        let mut problems = Vec::new();
        let mut found: BTreeMap<Slot, Recording> = BTreeMap::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let extension = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if !EXTENSIONS.contains(&extension.as_str()) {
                problems.push(refusal(
                    &path,
                    "is not a recording carillon reads: expected .wav, .flac, .ogg or .mp3 \
                     (move other files out of the sample folder)",
                ));
                continue;
            }
            let slot = match slot_of(&name) {
                Ok(slot) => slot,
                Err(message) => {
                    problems.push(refusal(&path, message));
                    continue;
                }
            };
            let decoded = match decode::decode(&path) {
                Ok(decoded) => decoded,
                Err(message) => {
                    problems.push(refusal(&path, message));
                    continue;
                }
            };
            if let Some((_, end)) = recipe.looped() {
                let seconds = decoded.samples.len() as f64 / decoded.sample_rate as f64;
                if seconds < end as f64 {
                    problems.push(refusal(
                        &path,
                        format!(
                            "is {seconds:.3} s long, shorter than its loop's end \
                             (sampler.loop_end_s = {end})"
                        ),
                    ));
                    continue;
                }
            }
            if let Some(other) = found.get(&slot) {
                problems.push(refusal(
                    &path,
                    format!(
                        "is the same note, layer and take as {} ({})",
                        other.path.display(),
                        describe(slot)
                    ),
                ));
                continue;
            }
            found.insert(
                slot,
                Recording {
                    path,
                    samples: decoded.samples,
                    sample_rate: decoded.sample_rate,
                },
            );
        }
        if found.is_empty() && problems.is_empty() {
            problems.push(refusal(
                &dir,
                "holds no recordings: expected files named by note, such as C#4.wav",
            ));
        }
        let mut roots = group(found, &dir, &mut problems);
        for (name, &cents) in &recipe.tune {
            match parse_note(name).and_then(|m| roots.iter_mut().find(|r| r.midi == m)) {
                Some(root) => root.hz *= (cents as f64 / 1200.0).exp2(),
                None => problems.push(refusal(
                    recipe_path,
                    format!(
                        "sampler.tune names {name:?}, which is not a recorded note in {}",
                        dir.display()
                    ),
                )),
            }
        }
        roots.sort_by(|a, b| a.hz.total_cmp(&b.hz));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(SampleSet {
            recipe: recipe.clone(),
            dir,
            roots,
            banks: Mutex::new(Vec::new()),
        })
    }

    /// The nearest recorded note to `hz`: its index and how far (semitones, signed:
    /// positive when the note is above it).
    fn nearest(&self, hz: f64) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for (i, root) in self.roots.iter().enumerate() {
            let semitones = 12.0 * (hz / root.hz).log2();
            // Roots are in rising pitch: on a tie the later (higher) one wins, so the
            // recording is slowed down rather than sped up. (A tie to a hundredth of a
            // cent: a note's frequency comes as f32.)
            if best.is_none_or(|(_, b)| semitones.abs() <= b.abs() + 1e-4) {
                best = Some((i, semitones));
            }
        }
        best
    }

    /// Why `hz` cannot be played, if it cannot: no recording within `max_transpose`.
    pub fn out_of_reach(&self, hz: f64) -> Option<String> {
        let (i, semitones) = self.nearest(hz)?;
        if semitones.abs() <= self.recipe.max_transpose as f64 + 1e-6 {
            return None;
        }
        Some(format!(
            "the nearest recording is {} ({:+.1} semitones away), and sampler.max_transpose \
             is {}",
            note_name(self.roots[i].midi),
            -semitones,
            self.recipe.max_transpose
        ))
    }

    /// The set converted to `sample_rate`: made once per rate, then shared. Every file
    /// the resampler refuses is reported.
    pub fn bank(&self, sample_rate: u32) -> Result<Arc<Bank>, Vec<ConfigError>> {
        let mut banks = self.banks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bank) = banks.iter().find(|b| b.sample_rate == sample_rate) {
            return Ok(bank.clone());
        }
        let bank = Arc::new(self.convert(sample_rate)?);
        banks.push(bank.clone());
        Ok(bank)
    }

    fn convert(&self, sample_rate: u32) -> Result<Bank, Vec<ConfigError>> {
        let mut problems = Vec::new();
        let (mut seconds, mut bytes) = (0.0, 0);
        let mut samples = Vec::with_capacity(self.roots.len());
        for root in &self.roots {
            let mut layers = Vec::with_capacity(root.layers.len());
            for takes in &root.layers {
                let mut converted = Vec::with_capacity(takes.len());
                for recording in takes {
                    match self.prepare(recording, sample_rate) {
                        Ok(sample) => {
                            seconds += sample.frames as f64 / sample_rate as f64;
                            bytes += std::mem::size_of_val(&*sample.data);
                            converted.push(Arc::new(sample));
                        }
                        Err(message) => problems.push(refusal(&recording.path, message)),
                    }
                }
                layers.push(converted);
            }
            samples.push(layers);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let up = self.recipe.max_transpose.ceil().max(0.0) as u32;
        Ok(Bank {
            sample_rate,
            samples,
            kernels: Arc::new(Kernels::new(up)),
            seconds,
            bytes,
        })
    }

    /// One recording at `sample_rate`, padded, its loop (if any) cross-faded.
    fn prepare(&self, recording: &Recording, sample_rate: u32) -> Result<Sample, String> {
        let mut sound = decode::resample(&recording.samples, recording.sample_rate, sample_rate)?;
        let frames_at = |s: f32| (s as f64 * sample_rate as f64).round() as usize;
        let looped = match self.recipe.looped() {
            Some((start, end)) => {
                let (start, end) = (frames_at(start), frames_at(end).min(sound.len()));
                if end <= start + 1 {
                    return Err("its loop is shorter than a sample at the engine's rate".into());
                }
                crossfade(
                    &mut sound,
                    start,
                    end,
                    frames_at(self.recipe.crossfade_ms / 1000.0),
                );
                Some((start, end))
            }
            None => None,
        };
        let frames = looped.map_or(sound.len(), |(_, end)| end);
        let mut data = Vec::with_capacity(PAD + frames + PAD);
        data.resize(PAD, 0.0);
        data.extend_from_slice(&sound[..frames]);
        match looped {
            // Past the loop's end the kernel reads what the voice will read next: the
            // loop's start again.
            Some((start, _)) => {
                for i in 0..PAD {
                    data.push(sound.get(start + i).copied().unwrap_or(0.0));
                }
            }
            None => data.resize(PAD + frames + PAD, 0.0),
        }
        Ok(Sample {
            data: data.into_boxed_slice(),
            frames,
            looped,
        })
    }

    /// The voice for a note of `hz` at `velocity`, at `sample_rate`, and how long it
    /// sounds (s). None if the set cannot be converted to that rate (refused, with its
    /// files, when the instruments were prepared for it).
    pub fn voice(&self, hz: f64, velocity: f32, sample_rate: f64) -> Option<(SamplerVoice, f64)> {
        let bank = self.bank(sample_rate.round() as u32).ok()?;
        let (r, _) = self.nearest(hz)?;
        let root = &self.roots[r];
        let layers = root.layers.len();
        let layer =
            ((velocity.clamp(0.0, 1.0) * layers as f32).ceil() as usize).clamp(1, layers) - 1;
        let takes = &bank.samples[r][layer];
        let take = root.next_take[layer].fetch_add(1, Relaxed) % takes.len();
        let sample = takes[take].clone();
        let step = hz / root.hz;
        let rate = sample_rate;
        let held = (self.recipe.duration_s as f64 * rate).round() as u64;
        let release = (self.recipe.release_ms as f64 / 1000.0 * rate).round() as u64;
        let frames = match sample.looped {
            Some(_) => held + release,
            None => {
                let whole = (sample.frames as f64 / step).ceil() as u64;
                whole.min(held + release)
            }
        };
        let voice = SamplerVoice::new(sample, bank.kernels.clone(), step, held, release);
        Some((voice, frames as f64 / rate))
    }

    /// A line about the set at a rate: for the log at start-up and for `check-config`.
    pub fn describe_bank(&self, name: &str, bank: &Bank) -> String {
        let files: usize = self
            .roots
            .iter()
            .map(|r| r.layers.iter().map(Vec::len).sum::<usize>())
            .sum();
        let per_second = bank.bytes as f64 / bank.seconds.max(1e-9);
        format!(
            "{name}: {files} recordings of {} notes from {}, {:.1} s of sound in {:.1} MB at \
             {} Hz ({:.0} kB per second of sound)",
            self.roots.len(),
            self.dir.display(),
            bank.seconds,
            bank.bytes as f64 / 1e6,
            bank.sample_rate,
            per_second / 1e3,
        )
    }
}

/// "C#4, layer 2, take 1".
fn describe(slot: Slot) -> String {
    format!(
        "{}, layer {}, take {}",
        note_name(slot.midi),
        slot.layer,
        slot.take
    )
}

/// Group recordings by root, layer and take, refusing a layer or take numbered past a
/// gap (`C#4.v3.wav` with no `v2`): a missing file the musician meant to add.
fn group(
    found: BTreeMap<Slot, Recording>,
    dir: &Path,
    problems: &mut Vec<ConfigError>,
) -> Vec<Root> {
    let mut by_root: BTreeMap<i32, BTreeMap<usize, BTreeMap<usize, Recording>>> = BTreeMap::new();
    for (slot, recording) in found {
        by_root
            .entry(slot.midi)
            .or_default()
            .entry(slot.layer)
            .or_default()
            .insert(slot.take, recording);
    }
    let mut roots = Vec::new();
    for (midi, layers) in by_root {
        let mut complete = true;
        for (expected, (&layer, takes)) in (1..).zip(&layers) {
            if layer != expected {
                problems.push(refusal(
                    dir,
                    format!(
                        "{} has velocity layer {layer} but no layer {expected}: number the \
                         layers from 1 (v1, v2, …) without gaps",
                        note_name(midi)
                    ),
                ));
                complete = false;
                break;
            }
            for (expected_take, &take) in (1..).zip(takes.keys()) {
                if take != expected_take {
                    problems.push(refusal(
                        dir,
                        format!(
                            "{} layer {layer} has take {take} but no take {expected_take}: \
                             number the takes from 1 (rr1, rr2, …) without gaps",
                            note_name(midi)
                        ),
                    ));
                    complete = false;
                    break;
                }
            }
        }
        if !complete {
            continue;
        }
        let layers: Vec<Vec<Recording>> = layers
            .into_values()
            .map(|takes| takes.into_values().collect())
            .collect();
        roots.push(Root {
            midi,
            hz: midi_to_hz(midi as f64),
            next_take: layers.iter().map(|_| AtomicUsize::new(0)).collect(),
            layers,
        });
    }
    roots
}

/// Blend the last `length` frames before the loop's end into the `length` frames before
/// its start, so that reading on from the end's last frame into the start continues
/// the sound instead of jumping. Linear (equal-gain) weights: the two stretches of a
/// sustained tone are alike, and their sum keeps its level.
fn crossfade(sound: &mut [f32], start: usize, end: usize, length: usize) {
    let length = length.min(start).min(end - start);
    for i in 0..length {
        let w = (i + 1) as f32 / (length + 1) as f32;
        let (at_end, before_start) = (end - length + i, start - length + i);
        sound[at_end] = sound[at_end] * (1.0 - w) + sound[before_start] * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_note_layer_and_take() {
        let s = |n: &str| slot_of(n).map(|s| (s.midi, s.layer, s.take));
        assert_eq!(s("C#4.wav"), Ok((61, 1, 1)));
        assert_eq!(s("Db4.v2.flac"), Ok((61, 2, 1)));
        assert_eq!(s("A4.rr3.ogg"), Ok((69, 1, 3)));
        assert_eq!(s("G#3.v2.rr2.mp3"), Ok((56, 2, 2)));
        assert!(s("bell.wav").unwrap_err().contains("not named by a note"));
        assert!(s("C4.loud.wav").unwrap_err().contains("\"loud\""));
        assert!(s("C4.v0.wav").is_err());
    }

    #[test]
    fn a_crossfaded_loop_end_leads_into_its_start() {
        let mut sound: Vec<f32> = (0..100).map(|i| i as f32).collect();
        crossfade(&mut sound, 40, 80, 10);
        // The frame before the end is nearly the frame before the start.
        assert!((sound[79] - 39.0).abs() < 4.0, "{}", sound[79]);
        // Before the blend, untouched.
        assert_eq!(sound[69], 69.0);
    }
}
