//! Instruments: recipes read from `instruments/*.toml`, and the fundsp voices built
//! from them, one per note.
//!
//! A recipe names a synthesis model and its parameters. Voices are built on the control
//! side (building allocates) and handed to the audio thread ready to run: every buffer a
//! voice needs is allocated before it leaves here.

use std::path::{Path, PathBuf};

use fundsp::prelude::*;
use serde::Deserialize;
use thiserror::Error;

use crate::config::{located, ConfigError};
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

/// -60 dB as a natural-log amplitude ratio: exp(-T60_LN * t / t60) falls 60 dB at t60.
const T60_LN: f32 = 6.907_755;

#[derive(Debug, Error)]
pub enum InstrumentError {
    #[error(transparent)]
    Recipe(#[from] ConfigError),
    #[error("{path}: a recipe needs exactly one model table: [fm_bell], [pluck] or [bowed]")]
    NoModel { path: PathBuf },
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
    pub fm_bell: Option<FmBell>,
    pub pluck: Option<Pluck>,
    pub bowed: Option<Bowed>,
}

/// A struck bar: FM with a fast-dying index, plus one overtone partial.
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
}

/// The instruments an engine can play, in the order of their ids.
#[derive(Debug, Clone)]
pub struct Instruments {
    recipes: Vec<Recipe>,
}

impl Recipe {
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, InstrumentError> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| located(text, path, &e))?;
        let models = [
            recipe.fm_bell.is_some(),
            recipe.pluck.is_some(),
            recipe.bowed.is_some(),
        ];
        if models.iter().filter(|&&m| m).count() != 1 {
            return Err(InstrumentError::NoModel {
                path: path.to_owned(),
            });
        }
        Ok(recipe)
    }
}

impl Instruments {
    /// The recipes compiled into the binary.
    pub fn built_in() -> Result<Instruments, InstrumentError> {
        let recipes = BUILT_IN
            .iter()
            .map(|(path, text)| Recipe::parse(text, Path::new(path)))
            .collect::<Result<_, _>>()?;
        Ok(Instruments { recipes })
    }

    /// Every `*.toml` recipe in a folder, in file-name order.
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
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| {
                InstrumentError::Recipe(ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            })?;
            recipes.push(Recipe::parse(&text, &path)?);
        }
        Ok(Instruments { recipes })
    }

    pub fn names(&self) -> Vec<String> {
        self.recipes.iter().map(|r| r.name.clone()).collect()
    }

    /// Build the voice that plays `note`. Allocates: call it off the audio thread.
    pub fn build(&self, note: &Note, sample_rate: f64) -> Voice {
        let recipe = &self.recipes[note.instrument.0 as usize % self.recipes.len()];
        let f = note.frequency;
        let (unit, seconds): (Box<dyn AudioUnit>, f32) = if let Some(b) = &recipe.fm_bell {
            fm_bell(b, f)
        } else if let Some(p) = &recipe.pluck {
            pluck_string(p, f)
        } else if let Some(b) = &recipe.bowed {
            bowed_string(b, f)
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

fn fm_bell(b: &FmBell, f: f32) -> (Box<dyn AudioUnit>, f32) {
    let t60 = b.decay_s * (b.reference_hz / f).powf(b.decay_pitch_exponent);
    let seconds = t60.min(b.max_duration_s);
    let attack = b.attack_ms / 1000.0;
    let modulator = f * b.mod_ratio;
    let depth = modulator * b.mod_index;
    let (mod_tau, p_tau) = (b.mod_decay_s, b.partial_decay_s);
    let p_level = b.partial_level;
    let carrier = (sine_hz::<f32>(modulator) * lfo(move |t: f32| depth * (-t / mod_tau).exp()) + f)
        >> sine::<f32>();
    let amp = lfo(move |t: f32| rise(t, attack) * (-T60_LN * t / t60).exp());
    let partial = sine_hz::<f32>(f * b.partial_ratio)
        * lfo(move |t: f32| rise(t, attack) * p_level * (-t / p_tau).exp());
    (Box::new(carrier * amp + partial), seconds)
}

fn pluck_string(p: &Pluck, f: f32) -> (Box<dyn AudioUnit>, f32) {
    let (hold, release) = (p.duration_s, p.release_ms / 1000.0);
    let damper = lfo(move |t: f32| {
        if t <= hold {
            1.0
        } else {
            1.0 - rise(t - hold, release)
        }
    });
    let string = zero() >> pluck(f, p.gain_per_second, p.damping);
    let unit = (string >> highpass_hz(f * p.thinness, 0.7) >> lowpass_hz(p.tone_hz, 0.5)) * damper;
    (Box::new(unit), hold + release)
}

fn bowed_string(b: &Bowed, f: f32) -> (Box<dyn AudioUnit>, f32) {
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
    let unit = (strings >> lowpass_hz(b.brightness_hz, b.resonance)) * swell;
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
}
