//! Formats: how one raw message of a feed becomes a normalized event. A format knows
//! nothing of how its messages travel (see `transport`), so a new feed is one format
//! file or one rules preset, never a new transport.

pub mod eventstreams;
pub mod osmchange;
pub mod rules;
pub mod wikimon;

use std::borrow::Cow;
use std::sync::Arc;

use thiserror::Error;

use crate::event::{Event, EventKind};
pub use eventstreams::parse_recentchange;
pub use wikimon::parse_wikimon;

#[derive(Debug, Error, PartialEq)]
pub enum ParseError {
    #[error("not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("not a wikimon message: no page_title")]
    NotWikimon,
    #[error("EventStreams canary event")]
    Canary,
}

/// One raw message as a transport received it: its text, and the event name that came
/// with it where the transport has one (an SSE `event:` field, a webhook's
/// `X-GitHub-Event` header).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub event: Option<&'a str>,
    pub data: &'a str,
}

impl<'a> Message<'a> {
    pub fn text(data: &'a str) -> Self {
        Self { event: None, data }
    }
}

/// What a format made of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An event that can sound (an edit, a new page, an account creation…).
    Event(Event),
    /// Understood, but of a kind that never sounds (a canary, a categorization, a log
    /// entry other than an account creation): counted under this name, not as an event.
    Skipped(Cow<'static, str>),
    /// Not understood: counted as malformed and skipped.
    Malformed(String),
}

impl Parsed {
    /// From the older parsers' result: `Other` events and canaries are skipped kinds.
    pub fn from_result(result: Result<Event, ParseError>) -> Parsed {
        match result {
            // Wikimon files every log entry under a `Special:Log/…` title.
            Ok(e) if e.kind == EventKind::Other && e.title.starts_with("Special:Log/") => {
                Parsed::Skipped(Cow::Borrowed("log"))
            }
            Ok(e) if e.kind == EventKind::Other => Parsed::Skipped(Cow::Borrowed("other")),
            Ok(e) => Parsed::Event(e),
            Err(ParseError::Canary) => Parsed::Skipped(Cow::Borrowed("canary")),
            Err(e) => Parsed::Malformed(e.to_string()),
        }
    }
}

/// The format a source's messages are read in.
#[derive(Clone)]
pub enum Format {
    Wikimon,
    EventStreams,
    /// EventStreams, sounding only the wikis listed (`eventstreams:enwiki,frwiki`).
    EventStreamsOf(Arc<[String]>),
    /// Wikimon or EventStreams, told apart line by line (replay files).
    Auto,
    /// Arbitrary JSON mapped to events by rules (a preset of `config/sources/`, or a
    /// user's file).
    Rules(Arc<rules::Rules>),
}

impl Format {
    pub fn parse(&self, message: &Message) -> Parsed {
        match self {
            Format::Wikimon => Parsed::from_result(parse_wikimon(message.data)),
            Format::EventStreams => eventstreams::classify(message.data),
            Format::EventStreamsOf(wikis) => eventstreams::classify_for(message.data, wikis),
            Format::Auto => Parsed::from_result(parse_any(message.data)),
            Format::Rules(rules) => rules.apply(message),
        }
    }

    /// The format of this name: `wikimon`, `eventstreams`, `eventstreams:WIKI,…` (only
    /// those wikis), `auto`, a preset of `config/sources/` (built into the binary), or
    /// the path of a rules file (relative to `dir`).
    pub fn named(name: &str, dir: Option<&std::path::Path>) -> Result<Format, String> {
        if let Some(list) = name.strip_prefix("eventstreams:") {
            let wikis: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            return Ok(Format::EventStreamsOf(wikis.into()));
        }
        Ok(match name {
            "wikimon" => Format::Wikimon,
            "eventstreams" => Format::EventStreams,
            "auto" => Format::Auto,
            _ => Format::Rules(Arc::new(rules::Rules::named(name, dir)?)),
        })
    }

    /// Its name, as a record file's header gives it back to a replay.
    pub fn name(&self) -> String {
        match self {
            Format::Wikimon => "wikimon".into(),
            Format::EventStreams => "eventstreams".into(),
            // So that a recording of some wikis replays as those wikis only.
            Format::EventStreamsOf(wikis) => format!("eventstreams:{}", wikis.join(",")),
            Format::Auto => "auto".into(),
            Format::Rules(rules) => rules.name().to_owned(),
        }
    }
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

/// Parse a line that may be either format: wikimon if it has `page_title`, else
/// EventStreams recentchange.
pub fn parse_any(text: &str) -> Result<Event, ParseError> {
    // A wikimon message names its `page_title` key literally; looking for it first
    // parses each line once (the key inside some other string only costs a retry).
    if text.contains("\"page_title\"") {
        match parse_wikimon(text) {
            Err(ParseError::NotWikimon) => {}
            other => return other,
        }
    }
    parse_recentchange(text)
}
