//! Ingest: where events come from. Each source runs as a task on a tokio runtime: a
//! transport (`transport/`) receives its raw messages, a format (`format/`) reads them,
//! and what can sound goes, normalized, to the conductor over a bounded crossbeam
//! channel, never blocking; what it cannot understand is counted and skipped.

pub mod format;
pub mod plan;
pub mod record;
pub mod transport;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use thiserror::Error;

use crate::config::SourceConfig;
use crate::event::Event;
use crate::stats::Stats;
pub use format::{wikimon, Format, Message, Parsed};
pub use transport::{demo, replay, websocket};

/// Wikimedia's public EventStreams feed of recent changes on every wiki.
pub const EVENTSTREAMS_URL: &str = "https://stream.wikimedia.org/v2/stream/recentchange";
/// OpenStreetMap's minutely replication diffs.
pub const OSM_MINUTELY_URL: &str = "https://planet.openstreetmap.org/replication/minute/";
/// The wikimon relay behind Listen to Wikipedia, one language per connection.
pub const WIKIMON_URL: &str = "wss://wikimon.hatnote.com/";

/// Forges whose webhooks the local ingest endpoint understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    Forgejo,
    /// Any tool posting carillon's own event JSON (see `config/sources/generic.toml`).
    Generic,
}

impl Forge {
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Generic => "generic",
        }
    }
}

/// How lines arrive over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpLines {
    /// Server-Sent Events (`data:` lines; EventStreams, Mastodon).
    Sse,
    /// One JSON message per line (NDJSON).
    Ndjson,
}

/// A source, as given on the command line or in the config.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A `ws://` or `wss://` feed (wikimon format unless told otherwise).
    WebSocket(String),
    /// An `http://` or `https://` stream: Server-Sent Events in the EventStreams
    /// recentchange format unless told otherwise, or NDJSON (`ndjson+https://…`).
    Http { url: String, lines: HttpLines },
    /// Wikimedia EventStreams, every wiki or the ones listed (`eventstreams:enwiki,frwiki`).
    EventStreams { wikis: Vec<String> },
    /// OpenStreetMap's minutely diffs from a replication folder (`osm`, `osm:URL`).
    Osm(String),
    /// A forge's webhooks, posted to the local ingest endpoint (`webhook:github`).
    Webhook(Forge),
    /// Messages pushed by local tools over a websocket to the ingest endpoint (`push`).
    Push,
    /// The built-in generator.
    Demo,
    /// A JSONL file of messages with their recorded times.
    Replay(PathBuf),
}

#[derive(Debug, Error)]
pub enum SpecError {
    #[error(
        "unknown source {0:?}: use \"eventstreams[:WIKI,…]\", an http(s):// stream, a ws(s):// feed, \"wikimon:LANG\", \"osm[:URL]\", \"webhook:github|gitea|forgejo|generic\", \"push\", \"demo\", or \"replay:PATH\""
    )]
    Unknown(String),
}

impl std::str::FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let unknown = || SpecError::Unknown(spec.to_owned());
        Ok(if spec.starts_with("ws://") || spec.starts_with("wss://") {
            SourceSpec::WebSocket(spec.to_owned())
        } else if spec.starts_with("http://") || spec.starts_with("https://") {
            SourceSpec::Http {
                url: spec.to_owned(),
                lines: HttpLines::Sse,
            }
        } else if let Some(url) = spec.strip_prefix("ndjson+") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(unknown());
            }
            SourceSpec::Http {
                url: url.to_owned(),
                lines: HttpLines::Ndjson,
            }
        } else if spec == "eventstreams" || spec == "eventstreams:*" {
            SourceSpec::EventStreams { wikis: Vec::new() }
        } else if let Some(list) = spec.strip_prefix("eventstreams:") {
            let wikis: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            if wikis.is_empty() {
                return Err(unknown());
            }
            SourceSpec::EventStreams { wikis }
        } else if let Some(lang) = spec.strip_prefix("wikimon:") {
            if lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(unknown());
            }
            SourceSpec::WebSocket(format!("{WIKIMON_URL}{lang}/"))
        } else if spec == "osm" {
            SourceSpec::Osm(OSM_MINUTELY_URL.to_owned())
        } else if let Some(url) = spec.strip_prefix("osm:") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(unknown());
            }
            SourceSpec::Osm(url.to_owned())
        } else if let Some(forge) = spec.strip_prefix("webhook:") {
            SourceSpec::Webhook(match forge {
                "github" => Forge::GitHub,
                "gitea" => Forge::Gitea,
                "forgejo" => Forge::Forgejo,
                "generic" => Forge::Generic,
                _ => return Err(unknown()),
            })
        } else if spec == "push" {
            SourceSpec::Push
        } else if spec == "demo" {
            SourceSpec::Demo
        } else if let Some(path) = spec.strip_prefix("replay:") {
            SourceSpec::Replay(PathBuf::from(path))
        } else {
            return Err(unknown());
        })
    }
}

impl SourceSpec {
    /// Whether the source has recorded times, so that it can be rendered offline.
    pub fn is_offline(&self) -> bool {
        matches!(self, SourceSpec::Demo | SourceSpec::Replay(_))
    }

    /// The format its messages are read in unless the source's table names one.
    pub fn default_format(&self) -> Result<Format, String> {
        match self {
            SourceSpec::WebSocket(_) => Ok(Format::Wikimon),
            SourceSpec::EventStreams { wikis } if !wikis.is_empty() => {
                Ok(Format::EventStreamsOf(wikis.as_slice().into()))
            }
            SourceSpec::Http { .. } | SourceSpec::EventStreams { .. } => Ok(Format::EventStreams),
            SourceSpec::Webhook(forge) => Format::named(forge.name(), None),
            SourceSpec::Push => Format::named("generic", None),
            SourceSpec::Demo | SourceSpec::Replay(_) | SourceSpec::Osm(_) => Ok(Format::Auto),
        }
    }

    /// Whether the source is a live network feed (for the status line).
    pub fn is_feed(&self) -> bool {
        !self.is_offline()
    }
}

/// Index of a source among those playing, in the order they were given.
pub type SourceId = u16;

/// An event, which source it came from, and the instant it arrived (or, for a source
/// that spreads a batch over the time it covers, the instant it is due).
#[derive(Debug)]
pub struct Arrival {
    pub event: Event,
    pub at: Instant,
    pub source: SourceId,
}

/// Where a source delivers: the conductor's channel, its counters, its format, and a
/// recorder when its raw messages are being saved.
#[derive(Clone)]
pub struct Delivery {
    pub tx: Sender<Arrival>,
    pub stats: Arc<Stats>,
    pub source: SourceId,
    pub format: Format,
    pub recorder: Option<Arc<record::Recorder>>,
}

impl Delivery {
    pub fn new(tx: Sender<Arrival>, stats: Arc<Stats>, source: SourceId, format: Format) -> Self {
        Self {
            tx,
            stats,
            source,
            format,
            recorder: None,
        }
    }

    /// One raw message from the transport: recorded if asked, read in the source's
    /// format, and delivered or counted.
    pub fn message(&self, message: &Message) {
        self.message_at(message, Instant::now());
    }

    /// [`Delivery::message`] for a message that arrived at `at`: its event sounds as if
    /// it had arrived then, whenever it is read and parsed.
    pub fn message_at(&self, message: &Message, at: Instant) {
        if let Some(recorder) = &self.recorder {
            recorder.write(message);
        }
        self.deliver_at(self.format.parse(message), at);
    }

    /// What the format made of a message.
    pub fn deliver(&self, parsed: Parsed) {
        self.deliver_at(parsed, Instant::now());
    }

    fn deliver_at(&self, parsed: Parsed, at: Instant) {
        match parsed {
            Parsed::Event(event) => self.send_at(event, at),
            Parsed::Skipped(kind) => self.skipped(kind),
            Parsed::Malformed(why) => {
                self.malformed();
                tracing::debug!("skipped a message: {why}");
            }
        }
    }

    /// Hand an event to the conductor without ever blocking the source.
    pub fn send(&self, event: Event) {
        self.send_at(event, Instant::now());
    }

    /// Hand an event to the conductor, to sound as if it had arrived at `at`.
    pub fn send_at(&self, event: Event, at: Instant) {
        Stats::add(&self.stats.events, 1);
        let arrival = Arrival {
            event,
            at,
            source: self.source,
        };
        match self.tx.try_send(arrival) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Stats::add(&self.stats.backlog, 1),
            // The conductor has stopped; nothing left to do with the event.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A message understood, of a kind that never sounds.
    pub fn skipped(&self, kind: Cow<'static, str>) {
        self.stats.skip(kind);
    }

    pub fn malformed(&self) {
        Stats::add(&self.stats.malformed, 1);
    }
}

/// Timed messages from a source with recorded times (the demo, a replay file), already
/// read in the source's format.
pub type TimedEvents = Box<dyn Iterator<Item = replay::Timed> + Send>;

/// A source ready to run: a live feed, or timed events already loaded (so that a
/// missing file is reported before anything plays).
pub enum Source {
    /// `bearer`: a token sent as `Authorization: Bearer …` (Mastodon's streaming API).
    WebSocket {
        url: String,
        bearer: Option<String>,
    },
    /// `bearer`: a token sent as `Authorization: Bearer …` (Mastodon's streaming API).
    Http {
        url: String,
        lines: HttpLines,
        bearer: Option<String>,
    },
    Osm(String),
    /// Served by the local ingest endpoint, which delivers for it: nothing to run.
    Endpoint,
    Timed(TimedEvents),
}

impl Source {
    /// Prepare a source; `seed` seeds the demo, `format` reads a replay file's lines.
    pub fn open(
        spec: &SourceSpec,
        seed: u64,
        format: &Format,
    ) -> Result<Source, replay::ReplayError> {
        Ok(match spec {
            SourceSpec::WebSocket(url) => Source::WebSocket {
                url: url.clone(),
                bearer: None,
            },
            SourceSpec::Http { url, lines } => Source::Http {
                url: url.clone(),
                lines: *lines,
                bearer: None,
            },
            SourceSpec::EventStreams { .. } => Source::Http {
                url: EVENTSTREAMS_URL.to_owned(),
                lines: HttpLines::Sse,
                bearer: None,
            },
            SourceSpec::Osm(url) => Source::Osm(url.clone()),
            SourceSpec::Webhook(_) | SourceSpec::Push => Source::Endpoint,
            SourceSpec::Demo => Source::Timed(Box::new(demo::Demo::timed(seed))),
            SourceSpec::Replay(path) => {
                Source::Timed(Box::new(replay::load(path, format)?.into_iter()))
            }
        })
    }

    /// Its address, for messages.
    pub fn describe(&self) -> &str {
        match self {
            Source::WebSocket { url, .. } | Source::Http { url, .. } | Source::Osm(url) => url,
            Source::Endpoint => "the local ingest endpoint",
            Source::Timed(_) => "recorded events",
        }
    }
}

/// Run a source until it ends (a replay file does; a feed and the demo never do).
pub async fn run(source: Source, config: SourceConfig, speed: f64, out: Delivery) {
    match source {
        Source::WebSocket { url, bearer } => websocket::run(&url, bearer, &config, out).await,
        Source::Http { url, lines, bearer } => {
            transport::http::run(&url, lines, bearer, &config, out).await
        }
        Source::Osm(url) => transport::osm::run(&url, &config, out).await,
        Source::Endpoint => std::future::pending().await,
        Source::Timed(events) => replay::pace(events, speed, out).await,
    }
}

/// Start the local ingest endpoint on `addr` for the sources received there: `hooks`
/// are each source's name, spec, secret and delivery. A refusal to serve (an address in
/// use, a hook without a secret on an address beyond this machine) is an error here,
/// before anything plays.
pub fn serve_endpoint(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    hooks: Vec<(String, SourceSpec, Option<Vec<u8>>, Delivery)>,
    max_body_bytes: usize,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use transport::endpoint::{self, Hook, HookKind, Limits};
    let hooks = hooks
        .into_iter()
        .filter_map(|(name, spec, secret, delivery)| {
            let kind = match spec {
                SourceSpec::Webhook(forge) => HookKind::Webhook(forge),
                SourceSpec::Push => HookKind::Push,
                _ => return None,
            };
            Some((
                name,
                Hook {
                    delivery,
                    kind,
                    secret,
                },
            ))
        })
        .collect();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("the ingest endpoint cannot listen on {addr}"))?;
    let limits = Limits {
        max_body_bytes,
        max_message_bytes: max_body_bytes,
    };
    let mut served = runtime.spawn(endpoint::serve(listener, hooks, limits));
    // It checks its hooks before it serves: a refusal comes back at once.
    let checked = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut served).await
    });
    match checked {
        Err(_) => Ok(()),
        Ok(Ok(Ok(()))) => anyhow::bail!("the ingest endpoint on {addr} stopped at once"),
        Ok(Ok(Err(e))) => Err(e).with_context(|| format!("the ingest endpoint on {addr}")),
        Ok(Err(e)) => Err(e).with_context(|| format!("the ingest endpoint on {addr} failed")),
    }
}
