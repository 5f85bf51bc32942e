//! Instruments: recipes read from `instruments/*.toml`, and the fundsp voices built
//! from them, one per note.
//!
//! A recipe names a synthesis model and its parameters. Voices are built on the control
//! side (building allocates) and handed to the audio thread ready to run: every buffer a
//! voice needs is allocated before it leaves here.
//!
//! Every value of a recipe is range-checked when it is read, and each model says how
//! high a note it can play at a sample rate ([`Recipe::highest_playable_hz`]): above it
//! a plucked string's delay line would be shorter than a sample (fundsp panics), or a
//! bell's or a bow's partials would fold back past Nyquist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fundsp::prelude::*;
use serde::Deserialize;
use thiserror::Error;

use crate::bell::FmBellVoice;
use crate::config::{located, ConfigError, Limits, Problem};
use crate::sampler::{SampleSet, Sampler};
use crate::score::Note;
use crate::strings::BowedStrings;

/// The recipes compiled into the binary, from `instruments/`.
pub const BUILT_IN: [(&str, &str); 3] = [
    (
        "instruments/celesta.toml",
        include_str!("../instruments/celesta.toml"),
    ),
    (
        "instruments/clavichord.toml",
        include_str!("../instruments/clavichord.toml"),
    ),
    (
        "instruments/violin.toml",
        include_str!("../instruments/violin.toml"),
    ),
];

#[derive(Debug, Error)]
pub enum InstrumentError {
    #[error(transparent)]
    Recipe(#[from] ConfigError),
    #[error("cannot read instrument folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no instrument recipes (*.toml) found")]
    Empty { path: PathBuf },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub gain: f32,
    /// The level (dBFS) under which a note of this instrument is no longer heard: a
    /// voice that has sounded and falls under it is retired. Default -90, about the
    /// step of a 16-bit sample.
    #[serde(default = "default_audible_dbfs")]
    pub audible_dbfs: f32,
    pub fm_bell: Option<FmBell>,
    pub pluck: Option<Pluck>,
    pub bowed: Option<Bowed>,
    /// Recordings, played at the pitch of each note (`src/sampler`).
    pub sampler: Option<Sampler>,
}

fn default_audible_dbfs() -> f32 {
    -90.0
}

/// A struck bar: FM with a fast-dying index, plus one overtone partial, optionally
/// silenced by a damper after it has rung for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FmBell {
    pub attack_ms: f32,
    pub decay_s: f32,
    pub reference_hz: f32,
    pub decay_pitch_exponent: f32,
    pub mod_ratio: f32,
    pub mod_index: f32,
    pub mod_decay_s: f32,
    pub partial_ratio: f32,
    pub partial_level: f32,
    pub partial_decay_s: f32,
    pub max_duration_s: f32,
    /// How long the bar rings freely before the damper falls, at the reference pitch
    /// (s). Without it (and `damp_s`) there is no damper: the note rings until it has
    /// fallen 60 dB or for `max_duration_s`.
    #[serde(default)]
    pub ring_s: Option<f32>,
    /// How long the damper takes to silence the bar, at the reference pitch (s): a
    /// raised-cosine fade.
    #[serde(default)]
    pub damp_s: Option<f32>,
}

/// When a note's damper falls, and how long it takes to silence it, in seconds from the
/// strike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Damper {
    pub from_s: f32,
    pub fade_s: f32,
}

impl FmBell {
    /// How much longer than at the reference pitch a note at `f` Hz rings: higher notes
    /// ring shorter.
    fn stretch(&self, f: f32) -> f32 {
        (self.reference_hz / f).powf(self.decay_pitch_exponent)
    }

    /// Its time (s) to fall 60 dB at `f` Hz.
    pub fn t60(&self, f: f32) -> f32 {
        self.decay_s * self.stretch(f)
    }

    /// The damper of a note at `f` Hz, if the recipe has one. Its times stretch with
    /// pitch as the decay does, so a note's whole ring keeps its shape up and down the
    /// register; a fade that would end past `max_duration_s` falls earlier, so that the
    /// note is always silenced, never cut.
    pub fn damper(&self, f: f32) -> Option<Damper> {
        let (ring, damp) = (self.ring_s?, self.damp_s?);
        let stretch = self.stretch(f);
        let end = ((ring + damp) * stretch).min(self.max_duration_s);
        let fade_s = (damp * stretch).min(end);
        Some(Damper {
            from_s: end - fade_s,
            fade_s,
        })
    }

    /// How long a note at `f` Hz sounds (s): until it has fallen 60 dB, the damper has
    /// silenced it, or `max_duration_s`, whichever comes first.
    pub fn seconds(&self, f: f32) -> f32 {
        let silenced = self
            .damper(f)
            .map_or(f32::INFINITY, |d| d.from_s + d.fade_s);
        self.t60(f).min(silenced).min(self.max_duration_s)
    }
}

/// A plucked or struck string (Karplus-Strong), damped after a held time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pluck {
    pub gain_per_second: f32,
    pub damping: f32,
    pub duration_s: f32,
    pub release_ms: f32,
    pub thinness: f32,
    pub tone_hz: f32,
}

/// A bowed string: detuned saws with delayed vibrato under a slow swell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bowed {
    pub attack_s: f32,
    pub hold_s: f32,
    pub release_s: f32,
    pub vibrato_hz: f32,
    pub vibrato_cents: f32,
    pub vibrato_delay_s: f32,
    pub detune_cents: f32,
    pub brightness_hz: f32,
    pub resonance: f32,
}

/// A voice ready to play: a mono fundsp unit and how long it sounds.
pub struct Voice {
    pub unit: Box<dyn AudioUnit>,
    /// Length in frames; the engine fades the last few milliseconds and then frees it.
    pub frames: u64,
    /// Linear gain of this note (recipe gain × velocity).
    pub gain: f32,
    pub pan: f32,
    /// The level (linear, of full scale) under which, once it has sounded, the voice
    /// is no longer heard and is retired.
    pub audible: f32,
}

/// The instruments an engine can play, in the order of their ids.
#[derive(Debug, Clone)]
pub struct Instruments {
    recipes: Vec<Recipe>,
    /// The recordings of each sampler recipe (none for a synthesized one), by id.
    samples: Vec<Option<Arc<SampleSet>>>,
}

/// The gain of a recipe, from silent to four times a full-scale note.
const GAIN: Limits = Limits::real(0.0, 4.0);

/// How far a filter's cut-off may go toward Nyquist: past it, tan(π·fc/sr), which sets
/// the filter's coefficients, turns negative.
const CUTOFF_OF_NYQUIST: f32 = 0.9;

impl Recipe {
    /// Read a recipe (named `path` in refusals), refusing every value out of range.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, ConfigError> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| located(text, path, &e))?;
        let models = [
            recipe.fm_bell.is_some(),
            recipe.pluck.is_some(),
            recipe.bowed.is_some(),
            recipe.sampler.is_some(),
        ];
        if models.iter().filter(|&&m| m).count() != 1 {
            return Err(ConfigError::Value {
                path: path.to_owned(),
                message: "a recipe needs exactly one model table: [fm_bell], [pluck], [bowed] \
                          or [sampler]"
                    .into(),
            });
        }
        match crate::config::refuse_in(recipe.problems(), text, path) {
            Some(e) => Err(e),
            None => Ok(recipe),
        }
    }

    fn problems(&self) -> Vec<Problem> {
        let mut fields: Vec<(&str, f32, Limits)> = vec![
            ("gain", self.gain, GAIN),
            (
                "audible_dbfs",
                self.audible_dbfs,
                Limits::real(-160.0, -40.0),
            ),
        ];
        let (real, above) = (Limits::real, Limits::above);
        if let Some(b) = &self.fm_bell {
            fields.extend([
                ("fm_bell.attack_ms", b.attack_ms, above(0.0, 1000.0)),
                ("fm_bell.decay_s", b.decay_s, above(0.0, 60.0)),
                ("fm_bell.reference_hz", b.reference_hz, real(20.0, 20_000.0)),
                (
                    "fm_bell.decay_pitch_exponent",
                    b.decay_pitch_exponent,
                    real(-4.0, 4.0),
                ),
                ("fm_bell.mod_ratio", b.mod_ratio, real(0.0, 32.0)),
                ("fm_bell.mod_index", b.mod_index, real(0.0, 32.0)),
                ("fm_bell.mod_decay_s", b.mod_decay_s, above(0.0, 60.0)),
                ("fm_bell.partial_ratio", b.partial_ratio, above(0.0, 32.0)),
                ("fm_bell.partial_level", b.partial_level, real(0.0, 4.0)),
                (
                    "fm_bell.partial_decay_s",
                    b.partial_decay_s,
                    above(0.0, 60.0),
                ),
                (
                    "fm_bell.max_duration_s",
                    b.max_duration_s,
                    above(0.0, 120.0),
                ),
            ]);
            if let Some(ring) = b.ring_s {
                fields.push(("fm_bell.ring_s", ring, real(0.0, 120.0)));
            }
            // A fade of no time at all would cut the note with a click.
            if let Some(damp) = b.damp_s {
                fields.push(("fm_bell.damp_s", damp, above(0.0, 60.0)));
            }
        }
        if let Some(p) = &self.pluck {
            fields.extend([
                // Above 1 the string's loop gain grows without bound.
                ("pluck.gain_per_second", p.gain_per_second, above(0.0, 1.0)),
                ("pluck.damping", p.damping, real(0.0, 1.0)),
                ("pluck.duration_s", p.duration_s, above(0.0, 120.0)),
                ("pluck.release_ms", p.release_ms, real(1.0, 10_000.0)),
                ("pluck.thinness", p.thinness, real(0.0, 8.0)),
                ("pluck.tone_hz", p.tone_hz, real(20.0, 20_000.0)),
            ]);
        }
        if let Some(b) = &self.bowed {
            fields.extend([
                ("bowed.attack_s", b.attack_s, above(0.0, 60.0)),
                ("bowed.hold_s", b.hold_s, real(0.0, 120.0)),
                ("bowed.release_s", b.release_s, above(0.0, 60.0)),
                ("bowed.vibrato_hz", b.vibrato_hz, real(0.0, 20.0)),
                ("bowed.vibrato_cents", b.vibrato_cents, real(0.0, 100.0)),
                ("bowed.vibrato_delay_s", b.vibrato_delay_s, real(0.0, 60.0)),
                ("bowed.detune_cents", b.detune_cents, real(0.0, 100.0)),
                ("bowed.brightness_hz", b.brightness_hz, real(20.0, 20_000.0)),
                // A resonance (Q) of 0 divides by zero in the filter.
                ("bowed.resonance", b.resonance, real(0.1, 10.0)),
            ]);
        }
        if let Some(s) = &self.sampler {
            fields.extend([
                ("sampler.max_transpose", s.max_transpose, real(0.0, 36.0)),
                ("sampler.duration_s", s.duration_s, above(0.0, 120.0)),
                ("sampler.release_ms", s.release_ms, real(1.0, 10_000.0)),
                ("sampler.crossfade_ms", s.crossfade_ms, real(0.0, 1000.0)),
            ]);
            if let Some(start) = s.loop_start_s {
                fields.push(("sampler.loop_start_s", start, real(0.0, 60.0)));
            }
            if let Some(end) = s.loop_end_s {
                fields.push(("sampler.loop_end_s", end, above(0.0, 60.0)));
            }
        }
        let mut out: Vec<Problem> = fields
            .into_iter()
            .filter_map(|(key, value, limits)| Problem::range(key, value as f64, limits))
            .collect();
        if let Some(s) = &self.sampler {
            out.extend(s.tune.iter().filter_map(|(note, &cents)| {
                Problem::range(
                    &format!("sampler.tune.{note}"),
                    cents as f64,
                    real(-100.0, 100.0),
                )
            }));
            if s.loop_start_s.is_some() != s.loop_end_s.is_some() {
                let (key, value) = match (s.loop_start_s, s.loop_end_s) {
                    (Some(start), _) => ("sampler.loop_start_s", start),
                    (_, end) => ("sampler.loop_end_s", end.unwrap_or_default()),
                };
                out.push(Problem::new(
                    key,
                    value.to_string(),
                    "needs the loop's other end: a loop is given by both loop_start_s and \
                     loop_end_s",
                ));
            }
            if let Some((start, end)) = s.looped() {
                if end <= start {
                    out.push(Problem::new(
                        "sampler.loop_end_s",
                        end.to_string(),
                        format!("is not allowed: expected a loop end after its start ({start})"),
                    ));
                }
            }
        }
        if let Some(b) = &self.fm_bell {
            // A damper needs both its times: neither has a default that would suit
            // every bell.
            match (b.ring_s, b.damp_s) {
                (Some(ring), None) => out.push(Problem::new(
                    "fm_bell.ring_s",
                    ring.to_string(),
                    "needs fm_bell.damp_s too: how long the damper takes to silence the bar",
                )),
                (None, Some(damp)) => out.push(Problem::new(
                    "fm_bell.damp_s",
                    damp.to_string(),
                    "needs fm_bell.ring_s too: how long the bar rings before the damper falls",
                )),
                _ => {}
            }
        }
        if self.name.trim().is_empty() {
            out.push(Problem::new(
                "name",
                format!("{:?}", self.name),
                "is not allowed: expected a name for the score to call this instrument by",
            ));
        }
        out
    }

    /// The highest note (Hz) this recipe can play at `sample_rate`; a note must be below.
    pub fn highest_playable_hz(&self, sample_rate: f64) -> f64 {
        let nyquist = sample_rate / 2.0;
        if let Some(b) = &self.fm_bell {
            // The carrier's frequency swings up to f·(1 + ratio·index) at the strike; the
            // modulator sits at f·ratio and the overtone at f·partial_ratio.
            let (ratio, index) = (b.mod_ratio as f64, b.mod_index as f64);
            let widest = (1.0 + ratio * index).max(ratio).max(b.partial_ratio as f64);
            nyquist / widest
        } else if let Some(p) = &self.pluck {
            // fundsp's Pluck makes its delay line floor(sr / f - 1.2) samples long and
            // indexes it at the first sample: empty (a panic) unless sr / f >= 2.2.
            let line = sample_rate / 2.2;
            let thinness = p.thinness as f64;
            if thinness > 0.0 {
                line.min(nyquist / thinness)
            } else {
                line
            }
        } else if let Some(b) = &self.bowed {
            // The sharper string, at the top of its vibrato: past Nyquist the saw's
            // phase steps more than half a cycle, and past the sample rate it runs away.
            let cents = (b.detune_cents + b.vibrato_cents) as f64;
            nyquist / (cents / 1200.0).exp2()
        } else if self.sampler.is_some() {
            // Its recordings are read through a kernel that cuts what would fold back;
            // which notes it reaches depends on its files (`Instruments::out_of_reach`).
            nyquist
        } else {
            0.0
        }
    }

    /// What sets [`Recipe::highest_playable_hz`], for a refusal.
    pub fn limit_reason(&self) -> &'static str {
        if self.fm_bell.is_some() {
            "its carrier, modulator and overtone must stay under half the sample rate"
        } else if self.pluck.is_some() {
            "its string's delay line must be at least a sample long, and its thinning \
             high-pass under half the sample rate"
        } else if self.sampler.is_some() {
            "a note must be under half the sample rate"
        } else {
            "its detuned strings, at the top of their vibrato, must stay under half the \
             sample rate"
        }
    }
}

impl Instruments {
    /// The recipes compiled into the binary.
    pub fn built_in() -> Result<Instruments, InstrumentError> {
        let recipes = BUILT_IN
            .iter()
            .map(|(path, text)| Recipe::parse(text, Path::new(path)))
            .collect::<Result<Vec<_>, _>>()?;
        let samples = vec![None; recipes.len()];
        Ok(Instruments { recipes, samples })
    }

    /// Instruments of these recipes, none of them a sampler (for tests and benches).
    pub fn synthesized(recipes: Vec<Recipe>) -> Instruments {
        let samples = vec![None; recipes.len()];
        Instruments { recipes, samples }
    }

    /// Every `*.toml` recipe in a folder, in file-name order, with the recordings of its
    /// samplers decoded; refused with every problem of every recipe and every recording,
    /// not only the first.
    pub fn load_dir(dir: &Path) -> Result<Instruments, InstrumentError> {
        let folder_err = |source| InstrumentError::Folder {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(folder_err)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(InstrumentError::Empty {
                path: dir.to_owned(),
            });
        }
        let mut recipes = Vec::with_capacity(paths.len());
        let mut samples = Vec::with_capacity(paths.len());
        let mut refused = Vec::new();
        for path in paths {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })
                .and_then(|text| Recipe::parse(&text, &path));
            match parsed {
                Ok(recipe) => {
                    let set = match &recipe.sampler {
                        Some(sampler) => match SampleSet::load(sampler, &path) {
                            Ok(set) => Some(Arc::new(set)),
                            Err(problems) => {
                                refused.extend(problems);
                                None
                            }
                        },
                        None => None,
                    };
                    recipes.push(recipe);
                    samples.push(set);
                }
                Err(e) => refused.push(e),
            }
        }
        match refused.len() {
            0 => Ok(Instruments { recipes, samples }),
            1 => Err(refused.remove(0).into()),
            _ => Err(ConfigError::Many(refused).into()),
        }
    }

    /// The recipe the score calls `name`.
    pub fn recipe(&self, name: &str) -> Option<&Recipe> {
        self.recipes.iter().find(|r| r.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.recipes.iter().map(|r| r.name.clone()).collect()
    }

    /// Convert every sampler's recordings to `sample_rate`, before playing at it: each
    /// is converted once, then shared by all its voices. Returns a line about each
    /// sampler (what it holds, and the memory it takes); refused with every recording
    /// the resampler refuses.
    pub fn prepare(&self, sample_rate: u32) -> Result<Vec<String>, InstrumentError> {
        let mut lines = Vec::new();
        let mut refused = Vec::new();
        for (recipe, set) in self.recipes.iter().zip(&self.samples) {
            let Some(set) = set else { continue };
            match set.bank(sample_rate) {
                Ok(bank) => lines.push(set.describe_bank(&recipe.name, &bank)),
                Err(problems) => refused.extend(problems),
            }
        }
        match refused.len() {
            0 => Ok(lines),
            1 => Err(refused.remove(0).into()),
            _ => Err(ConfigError::Many(refused).into()),
        }
    }

    /// Why the instrument `name` cannot play a note of `hz`, if it is a sampler with no
    /// recording near enough.
    pub fn out_of_reach(&self, name: &str, hz: f64) -> Option<String> {
        let i = self.recipes.iter().position(|r| r.name == name)?;
        self.samples[i].as_ref()?.out_of_reach(hz)
    }

    /// Build the voice that plays `note`. Allocates: call it off the audio thread.
    pub fn build(&self, note: &Note, sample_rate: f64) -> Voice {
        let id = note.instrument.0 as usize % self.recipes.len();
        let recipe = &self.recipes[id];
        let f = note.frequency;
        let top = CUTOFF_OF_NYQUIST * sample_rate as f32 / 2.0;
        let (unit, seconds): (Box<dyn AudioUnit>, f32) = if let Some(b) = &recipe.fm_bell {
            fm_bell(b, f)
        } else if let Some(p) = &recipe.pluck {
            pluck_string(p, f, top)
        } else if let Some(b) = &recipe.bowed {
            bowed_string(b, f, top)
        } else if let Some((voice, seconds)) = self.samples[id]
            .as_ref()
            .and_then(|set| set.voice(f as f64, note.velocity, sample_rate))
        {
            (Box::new(An(voice)), seconds as f32)
        } else {
            // Recipe::parse guarantees a model; silence is the harmless answer anyway.
            (Box::new(zero()), 0.0)
        };
        let mut unit = unit;
        unit.set_sample_rate(sample_rate);
        // Each note gets its own randomness (e.g. a string's initial noise), from its seed.
        unit.ping(false, AttoHash::new(note.seed));
        // Lazily allocated buffers (the plucked string's delay line) are made now, here,
        // not on the audio thread at the first sample.
        unit.allocate();
        Voice {
            unit,
            frames: (seconds as f64 * sample_rate).ceil() as u64,
            gain: recipe.gain * note.velocity,
            pan: note.pan,
            audible: 10f32.powf(recipe.audible_dbfs / 20.0),
        }
    }
}

/// A smooth rise from 0 to 1 over `rise` seconds (raised cosine): no click at the onset.
fn rise(t: f32, rise: f32) -> f32 {
    if t >= rise {
        1.0
    } else {
        0.5 - 0.5 * (std::f32::consts::PI * t / rise).cos()
    }
}

/// The célesta's bell: `(sin(carrier with FM) · exp decay + overtone) · strike ·
/// damper`, as one node (`src/bell.rs`) that stops computing what has died away.
fn fm_bell(b: &FmBell, f: f32) -> (Box<dyn AudioUnit>, f32) {
    (Box::new(An(FmBellVoice::new(b, f))), b.seconds(f))
}

/// `top`: the highest cut-off a filter may have at the voice's sample rate. A recipe's
/// cut-offs are in Hz, whatever the rate: at 8 kHz the clavichord's 4.5 kHz tone would
/// be past Nyquist, where a low-pass has nothing left to cut anyway.
fn pluck_string(p: &Pluck, f: f32, top: f32) -> (Box<dyn AudioUnit>, f32) {
    let (hold, release) = (p.duration_s, p.release_ms / 1000.0);
    let damper = lfo(move |t: f32| {
        if t <= hold {
            1.0
        } else {
            1.0 - rise(t - hold, release)
        }
    });
    let string = zero() >> pluck(f, p.gain_per_second, p.damping);
    let thin = highpass_hz((f * p.thinness).min(top), 0.7);
    let unit = (string >> thin >> lowpass_hz(p.tone_hz.min(top), 0.5)) * damper;
    (Box::new(unit), hold + release)
}

fn bowed_string(b: &Bowed, f: f32, top: f32) -> (Box<dyn AudioUnit>, f32) {
    let (attack, hold, release) = (b.attack_s, b.hold_s, b.release_s);
    let swell = lfo(move |t: f32| {
        if t < attack {
            rise(t, attack)
        } else if t < attack + hold {
            1.0
        } else {
            1.0 - rise(t - attack - hold, release)
        }
    });
    // Vibrato fades in after the bow has settled, as a player's does.
    let strings = An(BowedStrings::new(
        f,
        b.detune_cents,
        b.vibrato_hz,
        b.vibrato_cents,
        b.vibrato_delay_s,
    ));
    let unit = (strings >> lowpass_hz(b.brightness_hz.min(top), b.resonance)) * swell;
    (Box::new(unit), attack + hold + release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_recipes_parse() {
        let i = Instruments::built_in().unwrap();
        assert_eq!(i.names(), vec!["celesta", "clavichord", "violin"]);
    }

    #[test]
    fn recipe_with_unknown_key_names_file_and_line() {
        let text = "name = \"x\"\ngain = 0.3\n[pluck]\ngain_per_second = 0.1\ndampening = 0.3\n";
        let err = Recipe::parse(text, Path::new("harp.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("harp.toml:5:"), "{err}");
    }

    #[test]
    fn recipe_needs_one_model() {
        let err = Recipe::parse("name = \"x\"\ngain = 0.3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[fm_bell]"), "{err}");
    }

    const CLAVICHORD: &str = "name = \"clavichord\"\ngain = 0.30\n\n[pluck]\ngain_per_second = 0.12\ndamping = 0.45\nduration_s = 1.5\nrelease_ms = 90.0\nthinness = 0.8\ntone_hz = 4500.0\n";

    fn refusal(text: &str) -> String {
        Recipe::parse(text, Path::new("harp.toml"))
            .expect_err("the recipe should be refused")
            .to_string()
    }

    #[test]
    fn a_zero_time_constant_is_refused_at_its_line() {
        let (_, celesta) = BUILT_IN[0];
        let text = celesta.replace("mod_decay_s = 0.07", "mod_decay_s = 0");
        let line = text
            .lines()
            .position(|l| l.starts_with("mod_decay_s"))
            .expect("the key")
            + 1;
        assert_eq!(
            refusal(&text),
            format!("harp.toml:{line}:15: fm_bell.mod_decay_s = 0 is not allowed: expected a finite number above 0 and at most 60")
        );
    }

    #[test]
    fn nan_inf_and_out_of_range_recipe_values_are_refused() {
        for (from, to, expected) in [
            (
                "gain = 0.30",
                "gain = nan",
                "harp.toml:2:8: gain = nan is not allowed: expected a finite number in 0..=4",
            ),
            (
                "damping = 0.45",
                "damping = inf",
                "harp.toml:6:11: pluck.damping = inf is not allowed",
            ),
            (
                "gain_per_second = 0.12",
                "gain_per_second = 1.5",
                "harp.toml:5:19: pluck.gain_per_second = 1.5 is not allowed",
            ),
            (
                "tone_hz = 4500.0",
                "tone_hz = -inf",
                "harp.toml:10:11: pluck.tone_hz = -inf is not allowed",
            ),
        ] {
            let msg = refusal(&CLAVICHORD.replace(from, to));
            assert!(msg.starts_with(expected), "{msg}");
        }
    }

    #[test]
    fn every_field_of_every_model_is_range_checked() {
        for (path, text) in BUILT_IN {
            let fields: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" = ") && !l.starts_with('#') && !l.starts_with("name"))
                .collect();
            for line in fields {
                let key = line.split(" = ").next().expect("a key");
                let msg = Recipe::parse(
                    &text.replace(line, &format!("{key} = nan")),
                    Path::new(path),
                )
                .map(|_| String::from("accepted"))
                .unwrap_or_else(|e| e.to_string());
                assert!(
                    msg.contains(&format!("{key} = nan is not allowed")),
                    "{path}: {key}: {msg}"
                );
            }
        }
    }

    /// The built-in célesta's recipe with `edit` applied to its text, parsed.
    fn celesta_with(edit: impl Fn(&str) -> String) -> Result<Recipe, String> {
        let (_, celesta) = BUILT_IN[0];
        Recipe::parse(&edit(celesta), Path::new("bell.toml")).map_err(|e| e.to_string())
    }

    fn without_line(text: &str, key: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn a_bell_without_a_damper_rings_until_it_has_fallen_60_decibels() {
        let recipe = celesta_with(|t| without_line(&without_line(t, "ring_s"), "damp_s"))
            .expect("a damper is optional");
        let bell = recipe.fm_bell.expect("a bell");
        assert_eq!(bell.damper(880.0), None);
        assert_eq!(bell.seconds(880.0), bell.t60(880.0));
        assert!(bell.t60(880.0) < bell.max_duration_s);
        // Low enough, the cap is what ends it.
        assert_eq!(bell.seconds(20.0), bell.max_duration_s);
    }

    #[test]
    fn a_damper_needs_both_its_times() {
        for (missing, named) in [("damp_s", "fm_bell.ring_s"), ("ring_s", "fm_bell.damp_s")] {
            let err = celesta_with(|t| without_line(t, missing)).expect_err("refused");
            assert!(
                err.contains(named) && err.contains(&format!("needs fm_bell.{missing} too")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_damper_fades_the_note_out_within_its_length() {
        let bell = celesta_with(|t| t.to_owned())
            .expect("built-in")
            .fm_bell
            .expect("a bell");
        let (ring, damp) = (bell.ring_s.expect("ring_s"), bell.damp_s.expect("damp_s"));
        // At the reference pitch, the recipe's own times.
        let d = bell.damper(bell.reference_hz).expect("a damper");
        assert_eq!((d.from_s, d.fade_s), (ring, damp));
        // An octave up both shrink alike, and the note lasts as long as the fade.
        let up = bell.damper(2.0 * bell.reference_hz).expect("a damper");
        let shrink = 0.5f32.powf(bell.decay_pitch_exponent);
        assert!((up.from_s - ring * shrink).abs() < 1e-5, "{up:?}");
        assert!((up.fade_s - damp * shrink).abs() < 1e-5, "{up:?}");
        assert_eq!(bell.seconds(2.0 * bell.reference_hz), up.from_s + up.fade_s);
        // So low that it would ring past max_duration_s, the damper falls earlier and
        // still fades for as long, ending with the note.
        let low = bell.damper(30.0).expect("a damper");
        let stretch = (bell.reference_hz / 30.0).powf(bell.decay_pitch_exponent);
        assert!((low.fade_s - damp * stretch).abs() < 1e-4, "{low:?}");
        assert!((low.from_s + low.fade_s - bell.max_duration_s).abs() < 1e-5);
        assert_eq!(bell.seconds(30.0), bell.max_duration_s);
    }

    #[test]
    fn every_problem_of_a_recipe_is_reported() {
        let text = CLAVICHORD
            .replace("damping = 0.45", "damping = 2")
            .replace("thinness = 0.8", "thinness = nan");
        let err = Recipe::parse(&text, Path::new("harp.toml")).unwrap_err();
        assert_eq!(err.each().len(), 2, "{err}");
    }

    #[test]
    fn a_pluck_plays_up_to_where_its_delay_line_is_one_sample() {
        let recipe = Recipe::parse(CLAVICHORD, Path::new("c.toml")).expect("parses");
        let limit = recipe.highest_playable_hz(48_000.0);
        assert!((limit - 48_000.0 / 2.2).abs() < 1e-6, "{limit}");
        // Just under it, fundsp's string has a one-sample line and plays.
        let instruments = Instruments::synthesized(vec![recipe]);
        let note = |frequency: f32| Note {
            instrument: crate::score::InstrumentId(0),
            frequency,
            midi: 0,
            velocity: 1.0,
            pan: 0.0,
            seed: 1,
            kind: crate::event::EventKind::Removal,
        };
        let mut voice = instruments.build(&note(limit as f32 * 0.999), 48_000.0);
        let out: Vec<f32> = (0..4800).map(|_| voice.unit.get_mono()).collect();
        assert!(out.iter().all(|x| x.is_finite()));
        // Just over it, the line is empty: fundsp panics at the first sample.
        let mut voice = instruments.build(&note(limit as f32 * 1.001), 48_000.0);
        let first =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| voice.unit.get_mono()));
        assert!(
            first.is_err(),
            "the limit is not where fundsp's string breaks"
        );
    }

    #[test]
    fn bell_and_bow_limits_keep_every_partial_under_nyquist() {
        let instruments = Instruments::built_in().expect("built-in");
        let celesta = instruments.recipe("celesta").expect("celesta");
        // The overtone, at 4 times the note, is the bell's highest partial.
        assert!((celesta.highest_playable_hz(48_000.0) - 6000.0).abs() < 1e-6);
        let violin = instruments.recipe("violin").expect("violin");
        let sharpest = (16.0f64 / 1200.0).exp2();
        assert!((violin.highest_playable_hz(48_000.0) * sharpest - 24_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_folder_reports_every_bad_recipe() {
        let dir = std::env::temp_dir().join(format!("carillon-recipes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        std::fs::write(
            dir.join("a.toml"),
            CLAVICHORD.replace("gain = 0.30", "gain = -1"),
        )
        .expect("write");
        std::fs::write(
            dir.join("b.toml"),
            CLAVICHORD.replace("damping = 0.45", "damping = nan"),
        )
        .expect("write");
        let err = Instruments::load_dir(&dir)
            .expect_err("both are refused")
            .to_string();
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(err.contains("a.toml:2:8: gain = -1"), "{err}");
        assert!(err.contains("b.toml:6:11: pluck.damping = nan"), "{err}");
    }
}
