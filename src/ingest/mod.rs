//! Ingest: where events come from. Each source runs as a task on a tokio runtime and
//! sends what it receives, normalized, to the conductor over a bounded crossbeam
//! channel, never blocking; what it cannot understand is counted and skipped.

pub mod demo;
pub mod replay;
pub mod websocket;
pub mod wikimon;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use thiserror::Error;

use crate::config::SourceConfig;
use crate::event::Event;
use crate::stats::Stats;

/// A source, as given on the command line or in the config.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A `ws://` or `wss://` feed speaking the wikimon format.
    WebSocket(String),
    /// The built-in generator.
    Demo,
    /// A JSONL file of messages with their recorded times.
    Replay(PathBuf),
}

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("unknown source {0:?}: use a ws:// or wss:// URL, \"demo\", or \"replay:PATH\"")]
    Unknown(String),
}

impl std::str::FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        if spec.starts_with("ws://") || spec.starts_with("wss://") {
            Ok(SourceSpec::WebSocket(spec.to_owned()))
        } else if spec == "demo" {
            Ok(SourceSpec::Demo)
        } else if let Some(path) = spec.strip_prefix("replay:") {
            Ok(SourceSpec::Replay(PathBuf::from(path)))
        } else {
            Err(SpecError::Unknown(spec.to_owned()))
        }
    }
}

/// An event and the instant it arrived.
#[derive(Debug)]
pub struct Arrival {
    pub event: Event,
    pub at: Instant,
}

/// Where sources deliver: the conductor's channel, and the shared counters.
#[derive(Clone)]
pub struct Delivery {
    pub tx: Sender<Arrival>,
    pub stats: Arc<Stats>,
}

impl Delivery {
    /// Hand an event to the conductor without ever blocking the source.
    pub fn send(&self, event: Event) {
        Stats::add(&self.stats.events, 1);
        let arrival = Arrival {
            event,
            at: Instant::now(),
        };
        match self.tx.try_send(arrival) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Stats::add(&self.stats.backlog, 1),
            // The conductor has stopped; nothing left to do with the event.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn malformed(&self) {
        Stats::add(&self.stats.malformed, 1);
    }
}

/// Timed events from a source with recorded times (the demo, a replay file).
pub type TimedEvents = Box<dyn Iterator<Item = replay::Timed> + Send>;

/// A source ready to run: a live feed, or timed events already loaded (so that a
/// missing file is reported before anything plays).
pub enum Source {
    WebSocket(String),
    Timed(TimedEvents),
}

impl Source {
    /// Prepare a source; `seed` seeds the demo.
    pub fn open(spec: &SourceSpec, seed: u64) -> Result<Source, replay::ReplayError> {
        Ok(match spec {
            SourceSpec::WebSocket(url) => Source::WebSocket(url.clone()),
            SourceSpec::Demo => Source::Timed(Box::new(demo::Demo::timed(seed))),
            SourceSpec::Replay(path) => Source::Timed(Box::new(replay::load(path)?.into_iter())),
        })
    }
}

/// Run a source until it ends (a replay file does; a feed and the demo never do).
pub async fn run(source: Source, config: SourceConfig, speed: f64, out: Delivery) {
    match source {
        Source::WebSocket(url) => websocket::run(&url, &config, out).await,
        Source::Timed(events) => replay::pace(events, speed, out).await,
    }
}
