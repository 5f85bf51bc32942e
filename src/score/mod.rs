//! The score: which events sound, and how. Pure and deterministic, no I/O.
//!
//! Listen to Wikipedia's mapping is the default and reproduced exactly: additions ring
//! the célesta, removals pluck the clavichord, a new member gets a violin swell; the
//! bigger the edit, the lower the note, on a pentatonic scale, with a little per-page
//! fuzz so that edits of one size don't all land on one note.

pub mod mix;
pub mod scale;
mod throttle;

use thiserror::Error;

use crate::config::ScoreConfig;
use crate::event::{Event, EventKind};
use crate::pitch;
use crate::rng::{fnv1a, Rng};
pub use mix::Mix;
pub use throttle::{FairThrottle, Throttle};

/// Listen to Wikipedia's logarithm base for mapping sizes to pitch steps.
const LTW_BASE: f64 = 1.071_530_780_811_148_7;

/// Index into the engine's table of instruments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstrumentId(pub u8);

/// One note to play: everything the engine needs, nothing it must look up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    pub instrument: InstrumentId,
    /// Fundamental frequency in Hz.
    pub frequency: f32,
    /// MIDI note number (for display and tests).
    pub midi: i32,
    /// 0..1.
    pub velocity: f32,
    /// -1 (left) .. 1 (right).
    pub pan: f32,
    /// Seeds the voice's own randomness (e.g. a string's initial noise), so renders repeat.
    pub seed: u64,
    pub kind: EventKind,
}

/// What the score made of an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Play(Note),
    /// Left out by a filter (namespace, bots) or not a playable kind.
    Filtered,
    /// Over the density limit.
    Throttled,
}

#[derive(Debug, Error)]
pub enum ScoreError {
    #[error("score.{register}.instrument = {name:?} names no instrument; known: {known}")]
    UnknownInstrument {
        register: &'static str,
        name: String,
        known: String,
    },
    #[error("sources.{source_name}.{register} = {name:?} names no instrument; known: {known}")]
    UnknownSourceInstrument {
        source_name: String,
        register: &'static str,
        name: String,
        known: String,
    },
    #[error("sources.{source_name}.title is not a regular expression: {error}")]
    BadTitle { source_name: String, error: String },
    #[error("score.{register}.base = {note:?} is not a note name such as \"C#3\"")]
    BadNote {
        register: &'static str,
        note: String,
    },
}

struct Register {
    instrument: InstrumentId,
    base_midi: i32,
}

pub struct Score {
    config: ScoreConfig,
    addition: Register,
    removal: Register,
    new_member: Register,
    throttle: FairThrottle,
    /// New-member swells' own, gentler bound: they are long and loud, and an account
    /// creation spam wave would otherwise start hundreds a second.
    swells: FairThrottle,
    /// Each source's place in the mix, by source index.
    mixes: Vec<Mix>,
}

/// Listen to Wikipedia's pitch step for an edit size, before fuzz: 0 for the biggest
/// edits, up to `steps - 1` for the smallest.
pub fn base_step(size: i64, steps: u32) -> i32 {
    let r = ((size.unsigned_abs() as f64).sqrt() * 5.0).max(3.0);
    let p = 100.0 - ((r + LTW_BASE).ln() / LTW_BASE.ln()).min(100.0);
    (p / 100.0 * steps as f64).floor() as i32
}

impl Score {
    /// Build a score for the given configuration; `instruments` are the engine's
    /// instrument names, in the order of their ids.
    pub fn new(config: &ScoreConfig, instruments: &[String]) -> Result<Score, ScoreError> {
        Score::with_mixes(config, instruments, vec![Mix::default()])
    }

    /// A score for several sources, each with its mix (by source index).
    pub fn with_mixes(
        config: &ScoreConfig,
        instruments: &[String],
        mut mixes: Vec<Mix>,
    ) -> Result<Score, ScoreError> {
        if mixes.is_empty() {
            mixes.push(Mix::default());
        }
        let register = |register: &'static str, name: &str, base: &str| {
            let id = instruments.iter().position(|n| n == name).ok_or_else(|| {
                ScoreError::UnknownInstrument {
                    register,
                    name: name.to_owned(),
                    known: instruments.join(", "),
                }
            })?;
            let base_midi = pitch::parse_note(base).ok_or_else(|| ScoreError::BadNote {
                register,
                note: base.to_owned(),
            })?;
            Ok::<_, ScoreError>(Register {
                instrument: InstrumentId(id as u8),
                base_midi,
            })
        };
        Ok(Score {
            addition: register(
                "addition",
                &config.addition.instrument,
                &config.addition.base,
            )?,
            removal: register("removal", &config.removal.instrument, &config.removal.base)?,
            new_member: register(
                "new_member",
                &config.new_member.instrument,
                &config.new_member.base,
            )?,
            throttle: FairThrottle::new(
                config.throttle.max_notes,
                config.throttle.window_ms,
                mixes.len(),
            ),
            swells: FairThrottle::new(
                config.throttle.swells_max,
                config.throttle.swells_window_ms,
                mixes.len(),
            ),
            mixes,
            config: config.clone(),
        })
    }

    /// Whether the filters let this event of the first source sound.
    pub fn admits(&self, event: &Event) -> bool {
        self.admits_from(0, event)
    }

    /// Whether the filters (the score's, and the source's own) let this event sound.
    pub fn admits_from(&self, source: usize, event: &Event) -> bool {
        let f = &self.config.filter;
        self.mix(source).admits(event, &f.namespaces, f.bots)
    }

    fn mix(&self, source: usize) -> &Mix {
        self.mixes.get(source).unwrap_or(&self.mixes[0])
    }

    /// The pitch step an edit of this size on this page plays: Listen to Wikipedia's
    /// base step plus the page's fuzz, clamped.
    pub fn step(&self, size: i64, title: &str) -> i32 {
        let c = &self.config;
        let span = (c.fuzz_max - c.fuzz_min + 1) as u64;
        let fuzz = c.fuzz_min + Rng::from_text(title).below(span) as i32;
        (base_step(size, c.steps) + fuzz).clamp(c.min_step, c.max_step)
    }

    /// Map an event of the first source arriving at stream time `at` (seconds) to what
    /// should sound.
    pub fn map(&mut self, event: &Event, at: f64) -> Outcome {
        self.map_from(0, event, at)
    }

    /// Map an event of `source` arriving at stream time `at` (seconds) to what should
    /// sound, in that source's place in the mix.
    pub fn map_from(&mut self, source: usize, event: &Event, at: f64) -> Outcome {
        if !self.admits_from(source, event) {
            return Outcome::Filtered;
        }
        let source = if source < self.mixes.len() { source } else { 0 };
        let mix = &self.mixes[source];
        let c = &self.config;
        let note = match event.kind {
            EventKind::NewMember => {
                let steps = &c.new_member.steps;
                let pick = Rng::from_text(&event.user).below(steps.len() as u64) as usize;
                let midi = self.new_member.base_midi
                    + scale::step_semitones(&c.scale, steps[pick])
                    + mix.transpose;
                Note {
                    instrument: mix.new_member.unwrap_or(self.new_member.instrument),
                    frequency: pitch::midi_to_hz(midi as f64) as f32,
                    midi,
                    velocity: c.velocity_max * mix.gain,
                    pan: mix.place(0.0),
                    seed: fnv1a(event.user.as_bytes()),
                    kind: event.kind,
                }
            }
            EventKind::Addition | EventKind::Removal => {
                let (register, instead) = if event.kind == EventKind::Addition {
                    (&self.addition, mix.addition)
                } else {
                    (&self.removal, mix.removal)
                };
                let step = self.step(event.size, &event.title);
                let midi =
                    register.base_midi + scale::step_semitones(&c.scale, step) + mix.transpose;
                // Bigger edits sound lower and a little louder.
                let weight = 1.0 - step as f32 / c.steps as f32;
                let title_hash = fnv1a(event.title.as_bytes());
                let pan = ((title_hash >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32;
                Note {
                    instrument: instead.unwrap_or(register.instrument),
                    frequency: pitch::midi_to_hz(midi as f64) as f32,
                    midi,
                    velocity: (c.velocity_min + (c.velocity_max - c.velocity_min) * weight)
                        * mix.gain,
                    pan: mix.place(pan * c.pan_spread),
                    seed: title_hash ^ event.size as u64,
                    kind: event.kind,
                }
            }
            EventKind::Other => return Outcome::Filtered,
        };
        // Swells are rare and the point of the piece: they do not compete with edits for
        // the density limit, only with each other.
        let throttle = if event.kind == EventKind::NewMember {
            &mut self.swells
        } else {
            &mut self.throttle
        };
        if !throttle.admit(at, source) {
            return Outcome::Throttled;
        }
        Outcome::Play(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn score() -> Score {
        let names = ["celesta", "clavichord", "violin"].map(String::from);
        Score::new(&Config::defaults().score, &names).unwrap()
    }

    #[test]
    fn reproduces_listen_to_wikipedias_table() {
        let table = [
            (0, 19),
            (1, 17),
            (10, 14),
            (100, 10),
            (1_000, 6),
            (10_000, 2),
            (40_000, 0),
        ];
        for (size, step) in table {
            assert_eq!(base_step(size, 24), step, "size {size}");
            assert_eq!(base_step(-size, 24), step, "size -{size}");
        }
    }

    #[test]
    fn fuzz_is_within_listen_to_wikipedias_range_and_stable_per_title() {
        let s = score();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            let title = format!("Page {i}");
            let step = s.step(100, &title);
            assert_eq!(step, s.step(100, &title), "same title, same step");
            seen.insert(step - 10);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![-2, -1, 0, 1]);
    }

    #[test]
    fn steps_are_clamped_to_1_through_23() {
        let s = score();
        for i in 0..200 {
            let title = format!("T{i}");
            assert!((1..=23).contains(&s.step(1_000_000, &title)));
            assert!((1..=23).contains(&s.step(0, &title)));
        }
    }

    #[test]
    fn addition_rings_celesta_from_csharp3() {
        let mut s = score();
        let e = Event::new(EventKind::Addition, 100, "Lyon");
        let Outcome::Play(n) = s.map(&e, 0.0) else {
            panic!("addition should play")
        };
        assert_eq!(n.instrument, InstrumentId(0));
        let step = s.step(100, "Lyon");
        assert_eq!(n.midi, 49 + scale::step_semitones(&[0, 2, 5, 7, 9], step));
    }

    #[test]
    fn removal_plucks_clavichord_from_csharp1() {
        let mut s = score();
        let e = Event::new(EventKind::Removal, -10, "Lyon");
        let Outcome::Play(n) = s.map(&e, 0.0) else {
            panic!("removal should play")
        };
        assert_eq!(n.instrument, InstrumentId(1));
        let step = s.step(-10, "Lyon");
        assert_eq!(n.midi, 25 + scale::step_semitones(&[0, 2, 5, 7, 9], step));
    }

    #[test]
    fn bigger_edits_sound_lower() {
        let s = score();
        assert!(s.step(40_000, "X") < s.step(10, "X"));
    }

    fn new_member(user: &str) -> Event {
        let mut e = Event::new(EventKind::NewMember, 0, "Special:Log/newusers");
        e.user = user.into();
        e.namespace = "Special".into();
        e
    }

    #[test]
    fn new_member_swells_on_violin_outside_the_edits_throttle() {
        let mut s = score();
        // The edits' density limit is full...
        let edit = Event::new(EventKind::Addition, 5, "A");
        for _ in 0..15 {
            assert!(matches!(s.map(&edit, 0.0), Outcome::Play(_)));
        }
        assert_eq!(s.map(&edit, 0.0), Outcome::Throttled);
        // ...and a newcomer is still welcomed, on the violin.
        match s.map(&new_member("Newcomer"), 0.0) {
            Outcome::Play(n) => assert_eq!(n.instrument, InstrumentId(2)),
            other => panic!("the swell was {other:?}"),
        }
    }

    #[test]
    fn a_wave_of_new_members_starts_at_most_3_swells_in_10_s() {
        let mut s = score();
        // 40 account creations a second for a minute.
        let outcomes: Vec<(f64, Outcome)> = (0..2400)
            .map(|i| {
                let at = i as f64 / 40.0;
                (at, s.map(&new_member(&format!("spam{i}")), at))
            })
            .collect();
        let started: Vec<f64> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Play(_)))
            .map(|(at, _)| *at)
            .collect();
        let throttled = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Throttled)
            .count();
        assert_eq!(started.len(), 18, "3 in each of the six 10 s windows");
        assert_eq!(throttled, 2400 - 18);
        for (i, at) in started.iter().enumerate() {
            let in_window = started[i..].iter().take_while(|t| **t < at + 10.0).count();
            assert!(in_window <= 3, "{in_window} swells in the 10 s from {at}");
        }
    }

    #[test]
    fn at_most_15_notes_in_300_ms() {
        let mut s = score();
        let e = Event::new(EventKind::Addition, 5, "A");
        let played = (0..40)
            .filter(|i| matches!(s.map(&e, *i as f64 * 0.001), Outcome::Play(_)))
            .count();
        assert_eq!(played, 15);
        // Once the window has passed, notes sound again.
        assert!(matches!(s.map(&e, 0.301), Outcome::Play(_)));
    }

    #[test]
    fn other_namespaces_and_bots_follow_the_filter() {
        let mut s = score();
        let mut talk = Event::new(EventKind::Addition, 5, "Talk:A");
        talk.namespace = "Talk".into();
        assert_eq!(s.map(&talk, 0.0), Outcome::Filtered);
        let mut bot = Event::new(EventKind::Addition, 5, "A");
        bot.is_bot = true;
        assert!(matches!(s.map(&bot, 0.0), Outcome::Play(_)));

        let mut config = Config::defaults().score;
        config.filter.bots = false;
        config.filter.namespaces.clear();
        let names = ["celesta", "clavichord", "violin"].map(String::from);
        let mut s = Score::new(&config, &names).unwrap();
        assert_eq!(s.map(&bot, 0.0), Outcome::Filtered);
        assert!(matches!(s.map(&talk, 0.0), Outcome::Play(_)));
    }

    #[test]
    fn unknown_instrument_is_named() {
        let mut config = Config::defaults().score;
        config.removal.instrument = "harpsichord".into();
        let names = ["celesta", "clavichord", "violin"].map(String::from);
        let err = Score::new(&config, &names).err().unwrap().to_string();
        assert!(
            err.contains("harpsichord") && err.contains("clavichord"),
            "{err}"
        );
    }
}
