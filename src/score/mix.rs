//! A source's place in the mix: where its notes sit in the stereo field, how loud and
//! how high they are, which instruments play them, and which of its events sound. Every
//! source has one; a lone source's default mix changes nothing of the score.

use regex::Regex;

use super::{InstrumentId, ScoreError};
use crate::config::SourceTable;
use crate::event::{Event, EventKind};

#[derive(Debug, Clone)]
pub struct Mix {
    /// Centre of the source's notes, -1..1.
    pub pan: f32,
    /// Multiplies its notes' velocity.
    pub gain: f32,
    /// Semitones added to its notes.
    pub transpose: i32,
    /// Instruments replacing the score's, per register.
    pub addition: Option<InstrumentId>,
    pub removal: Option<InstrumentId>,
    pub new_member: Option<InstrumentId>,
    /// Wikis heard; empty: all.
    pub wikis: Vec<String>,
    /// Namespaces heard, replacing the score's filter.
    pub namespaces: Option<Vec<String>>,
    /// Whether bots' edits sound, replacing the score's filter.
    pub bots: Option<bool>,
    pub minor: bool,
    pub title: Option<Regex>,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            pan: 0.0,
            gain: 1.0,
            transpose: 0,
            addition: None,
            removal: None,
            new_member: None,
            wikis: Vec::new(),
            namespaces: None,
            bots: None,
            minor: true,
            title: None,
        }
    }
}

impl Mix {
    /// The mix of a `[sources.NAME]` table; `instruments` are the engine's names.
    pub fn from_table(
        name: &str,
        table: &SourceTable,
        instruments: &[String],
    ) -> Result<Mix, ScoreError> {
        let instrument = |register: &'static str, wanted: &str| {
            if wanted.is_empty() {
                return Ok(None);
            }
            match instruments.iter().position(|n| n == wanted) {
                Some(id) => Ok(Some(InstrumentId(id as u8))),
                None => Err(ScoreError::UnknownSourceInstrument {
                    source_name: name.to_owned(),
                    register,
                    name: wanted.to_owned(),
                    known: instruments.join(", "),
                }),
            }
        };
        let title = if table.title.is_empty() {
            None
        } else {
            // Checked when the config was read; a bad one here is refused all the same.
            Some(Regex::new(&table.title).map_err(|e| ScoreError::BadTitle {
                source_name: name.to_owned(),
                error: e.to_string(),
            })?)
        };
        Ok(Mix {
            pan: table.pan.clamp(-1.0, 1.0),
            gain: table.gain.max(0.0),
            transpose: table.transpose,
            addition: instrument("addition", &table.addition)?,
            removal: instrument("removal", &table.removal)?,
            new_member: instrument("new_member", &table.new_member)?,
            wikis: table.wikis.clone(),
            namespaces: table.namespaces.clone(),
            bots: table.bots,
            minor: table.minor,
            title,
        })
    }

    /// Whether this source's own filters let the event through (the score's namespace
    /// and bot filters apply where the source sets none).
    pub fn admits(&self, event: &Event, namespaces: &[String], bots: bool) -> bool {
        if !self.wikis.is_empty() && !self.wikis.contains(&event.source) {
            return false;
        }
        match event.kind {
            EventKind::Other => false,
            // Account creations are logged in the Special namespace; the namespace
            // filter is about articles, so it does not apply to them.
            EventKind::NewMember => true,
            EventKind::Addition | EventKind::Removal => {
                let namespaces = self.namespaces.as_deref().unwrap_or(namespaces);
                (self.bots.unwrap_or(bots) || !event.is_bot)
                    && (self.minor || !event.is_minor)
                    && (namespaces.is_empty() || namespaces.contains(&event.namespace))
                    && self
                        .title
                        .as_ref()
                        .is_none_or(|re| re.is_match(&event.title))
            }
        }
    }

    /// A note's pan (-1..1, around the centre) placed in this source's part of the field:
    /// the spread narrows towards the edges, so that a source panned hard left stays there.
    pub fn place(&self, pan: f32) -> f32 {
        (self.pan + pan * (1.0 - self.pan.abs())).clamp(-1.0, 1.0)
    }
}
