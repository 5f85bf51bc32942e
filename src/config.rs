//! carillon's configuration: every setting of the score, engine, sources and output.
//!
//! The defaults live in `config/default.toml`, compiled into the binary. A user file is
//! read over them, so it only names what it changes; an unknown key or a wrong type is
//! reported with the file, line and column, and what was expected. So is a value out of
//! its range: every number is checked when it is read (NaN and the infinities, which
//! TOML allows, are refused everywhere), since a service left alone for months must not
//! be silenced or crashed by one value in its file.

mod check;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use check::{line_column, number, refuse};
pub use check::{Limits, Problem, Spans};

use crate::instrument::Instruments;
use crate::pitch::{midi_to_hz, note_name, parse_note};
use crate::score::scale::step_semitones;

/// Where the compiled-in defaults are said to come from in refusals.
pub const DEFAULT_PATH: &str = "config/default.toml";

/// The text of `config/default.toml`, as compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Value { path: PathBuf, message: String },
    /// Several refusals, one a line.
    #[error("{}", lines(.0))]
    Many(Vec<ConfigError>),
}

fn lines(errors: &[ConfigError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("\n")
}

impl ConfigError {
    /// Each refusal on its own.
    pub fn each(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(all) => all.iter().flat_map(ConfigError::each).collect(),
            one => vec![one],
        }
    }
}

/// The whole configuration. `Default` here is all zeros and empty lists, used only to
/// check a user file's keys and types; [`Config::defaults`] gives the real defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    /// Named sources, each with its own place in the mix; none: `source.spec` alone.
    pub sources: std::collections::BTreeMap<String, SourceTable>,
    pub ingest: IngestConfig,
    pub display: DisplayConfig,
    pub score: ScoreConfig,
    pub engine: EngineConfig,
    pub output: OutputConfig,
    /// The user's file this was read from, to point at its values in later refusals
    /// (a note the instrument cannot play at the device's rate); `None` for the defaults.
    #[serde(skip)]
    origin: Option<Arc<Origin>>,
}

#[derive(Debug)]
struct Origin {
    path: PathBuf,
    text: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub spec: String,
    pub max_frame_bytes: usize,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub healthy_after_s: u64,
    /// Longest wait for a connection to open (s).
    pub connect_timeout_s: u64,
    /// A connected feed silent this long is presumed dead and reconnected (s).
    pub silence_timeout_s: u64,
    /// How often polled sources (OpenStreetMap's replication state) are asked for news (s).
    pub poll_interval_s: u64,
}

/// One named source (`[sources.NAME]`): where it comes from, how its messages are read,
/// which of its events sound, and its place in the mix. Unset keys keep the score's
/// settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceTable {
    pub spec: String,
    /// The format its messages are read in: "wikimon", "eventstreams", a preset of
    /// `config/sources/` or a rules file; empty: the spec's own.
    pub format: String,
    /// Centre of its notes in the stereo field, -1 (left) .. 1 (right); its notes spread
    /// around it by `score.pan_spread`, narrowing towards the edges.
    pub pan: f32,
    /// Loudness of its notes relative to the others (0..4).
    pub gain: f32,
    /// Semitones its notes are moved by (-24..=12).
    pub transpose: i32,
    /// Instruments of its registers; empty: the score's.
    pub addition: String,
    pub removal: String,
    pub new_member: String,
    /// Wikis heard (EventStreams' `wiki`, e.g. "enwiki"); empty: all.
    pub wikis: Vec<String>,
    /// Namespaces heard; unset: `score.filter.namespaces`.
    pub namespaces: Option<Vec<String>>,
    /// Whether bots' edits sound; unset: `score.filter.bots`.
    pub bots: Option<bool>,
    /// Whether minor edits sound.
    pub minor: bool,
    /// Only titles matching this regular expression sound; empty: all.
    pub title: String,
    /// A webhook's secret, or the environment variable holding it.
    pub secret: String,
    pub secret_env: String,
    /// The environment variable holding an access token, sent as a bearer token
    /// (Mastodon's streaming API).
    pub token_env: String,
}

impl Default for SourceTable {
    fn default() -> Self {
        Self {
            spec: String::new(),
            format: String::new(),
            pan: 0.0,
            gain: 1.0,
            transpose: 0,
            addition: String::new(),
            removal: String::new(),
            new_member: String::new(),
            wikis: Vec::new(),
            namespaces: None,
            bots: None,
            minor: true,
            title: String::new(),
            secret: String::new(),
            secret_env: String::new(),
            token_env: String::new(),
        }
    }
}

/// The ambient display page.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Address it is served on; empty: off unless `play --display`.
    pub listen: String,
    /// Whether its controls (volume, mute, sources on and off) act on the sound.
    pub controls: bool,
}

/// The local ingest endpoint, for webhooks and pushed events.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Address to listen on; empty: off.
    pub listen: String,
    /// Largest request body, or pushed message (bytes).
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    pub scale: Vec<i32>,
    pub steps: u32,
    pub fuzz_min: i32,
    pub fuzz_max: i32,
    pub min_step: i32,
    pub max_step: i32,
    pub velocity_min: f32,
    pub velocity_max: f32,
    pub pan_spread: f32,
    pub addition: Register,
    pub removal: Register,
    pub new_member: NewMemberRegister,
    pub throttle: ThrottleConfig,
    pub filter: FilterConfig,
}

/// Which instrument plays a kind of event, and from which note its scale starts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Register {
    pub instrument: String,
    pub base: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewMemberRegister {
    pub instrument: String,
    pub base: String,
    pub steps: Vec<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    pub max_notes: usize,
    pub window_ms: u64,
    /// At most this many new-member swells start in any `swells_window_ms` window.
    pub swells_max: usize,
    pub swells_window_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    pub namespaces: Vec<String>,
    pub bots: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub polyphony: usize,
    pub latency_ms: f64,
    pub margin_ms: f64,
    /// When a note starts: `"fixed"`, `latency_ms` after its arrival; `"asap"`, in the
    /// first block not yet rendered (see [`Schedule`]).
    pub schedule: String,
    pub volume: f32,
    pub instruments_dir: String,
    pub reverb: ReverbConfig,
    pub limiter: LimiterConfig,
    pub density: DensityConfig,
}

/// How the conductor places a note on the stream clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `engine.latency_ms` after its event arrived (at least the floor): every note at
    /// the same distance from its arrival, wherever in a buffer the event landed.
    Fixed,
    /// In the first block the audio half has not rendered yet: the lowest latency there
    /// is, paid for with up to one device buffer of jitter.
    Asap,
}

impl Schedule {
    pub const NAMES: &'static str = "\"fixed\" or \"asap\"";

    pub fn parse(name: &str) -> Option<Schedule> {
        match name {
            "fixed" => Some(Schedule::Fixed),
            "asap" => Some(Schedule::Asap),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Fixed => "fixed",
            Schedule::Asap => "asap",
        }
    }
}

impl EngineConfig {
    /// The schedule named by `schedule` (a checked configuration names one).
    pub fn schedule(&self) -> Schedule {
        Schedule::parse(&self.schedule).unwrap_or(Schedule::Fixed)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DensityConfig {
    /// Whether note gains follow the rate of notes (false: Listen to Wikipedia's
    /// behaviour, every note at its own gain whatever the rate).
    pub enabled: bool,
    /// Notes a second up to which every note keeps its full gain.
    pub reference_rate: f64,
    /// How much of a rise in rate is taken back: 0.5 keeps the summed power of
    /// overlapping notes steady; 0, nothing.
    pub exponent: f64,
    /// Time constant of the rate estimate (s).
    pub time_s: f64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReverbConfig {
    pub room_size: f64,
    pub time: f64,
    pub damping: f64,
    pub wet: f32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimiterConfig {
    pub attack_ms: f32,
    pub release_ms: f32,
    pub ceiling: f32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub host: String,
    /// Output device name; empty for the host's default.
    pub device: String,
    /// A device missing at start is waited for rather than an exit.
    pub wait_for_device: bool,
    pub realtime_priority: i32,
    pub sample_rate: u32,
    pub buffer_frames: u32,
    /// Seconds of silence after which the device is released until the next note; 0
    /// keeps it open.
    pub suspend_after_s: f64,
}

impl Config {
    /// The compiled-in defaults of `config/default.toml`.
    pub fn defaults() -> Config {
        static DEFAULTS: OnceLock<Config> = OnceLock::new();
        DEFAULTS
            .get_or_init(|| {
                match Config::from_toml(DEFAULT_TOML, Path::new(DEFAULT_PATH)) {
                    Ok(config) => config,
                    // Compiled in and checked by unit tests: failing here is a build defect.
                    Err(e) => panic!("built-in defaults are invalid: {e}"),
                }
            })
            .clone()
    }

    /// Read a configuration file over the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parse `text` (named `path` in errors) over the defaults.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // First pass on the user's own text: toml reports unknown keys and wrong types
        // with their position there, which the merged table below no longer has.
        toml::from_str::<Config>(text).map_err(|e| located(text, path, &e))?;
        let user: toml::Table = toml::from_str(text).map_err(|e| located(text, path, &e))?;
        let mut merged: toml::Table = if std::ptr::eq(text, DEFAULT_TOML) {
            toml::Table::new()
        } else {
            toml::from_str(DEFAULT_TOML).map_err(|e| located(DEFAULT_TOML, path, &e))?
        };
        merge(&mut merged, user);
        let mut config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Value {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?;
        if !std::ptr::eq(text, DEFAULT_TOML) {
            config.origin = Some(Arc::new(Origin {
                path: path.to_owned(),
                text: text.to_owned(),
            }));
        }
        match config.refuse(config.problems()) {
            Some(e) => Err(e),
            None => Ok(config),
        }
    }

    /// Refusals of `problems`, each pointing at its value: in the user's file if it sets
    /// it, else in the defaults.
    fn refuse(&self, problems: Vec<Problem>) -> Option<ConfigError> {
        let defaults = Spans::new(DEFAULT_TOML, Path::new(DEFAULT_PATH));
        match &self.origin {
            Some(o) => refuse(problems, &[&Spans::new(&o.text, &o.path), &defaults]),
            None => refuse(problems, &[&defaults]),
        }
    }

    /// Every value out of its range, and every pair out of order.
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut range = |key: &str, value: f64, limits: Limits| {
            out.extend(Problem::range(key, value, limits));
        };
        let whole = Limits::whole;
        let real = Limits::real;

        let src = &self.source;
        range(
            "source.max_frame_bytes",
            src.max_frame_bytes as f64,
            whole(256.0, MAX_FRAME_BYTES),
        );
        // Under 100 ms a dead server is hammered with reconnections.
        range(
            "source.backoff_initial_ms",
            src.backoff_initial_ms as f64,
            whole(100.0, 60_000.0),
        );
        range(
            "source.backoff_max_ms",
            src.backoff_max_ms as f64,
            whole(100.0, 600_000.0),
        );
        range(
            "source.healthy_after_s",
            src.healthy_after_s as f64,
            whole(1.0, 86_400.0),
        );
        range(
            "source.connect_timeout_s",
            src.connect_timeout_s as f64,
            whole(1.0, 600.0),
        );
        range(
            "source.silence_timeout_s",
            src.silence_timeout_s as f64,
            whole(1.0, 86_400.0),
        );
        range(
            "source.poll_interval_s",
            src.poll_interval_s as f64,
            whole(1.0, 86_400.0),
        );

        let s = &self.score;
        for (i, degree) in s.scale.iter().enumerate() {
            range(
                &format!("score.scale[{i}]"),
                *degree as f64,
                whole(0.0, 11.0),
            );
        }
        range("score.steps", s.steps as f64, whole(1.0, 128.0));
        for key in ["fuzz_min", "fuzz_max", "min_step", "max_step"] {
            let value = match key {
                "fuzz_min" => s.fuzz_min,
                "fuzz_max" => s.fuzz_max,
                "min_step" => s.min_step,
                _ => s.max_step,
            };
            range(&format!("score.{key}"), value as f64, whole(-128.0, 128.0));
        }
        range("score.velocity_min", s.velocity_min as f64, real(0.0, 1.0));
        range("score.velocity_max", s.velocity_max as f64, real(0.0, 1.0));
        range("score.pan_spread", s.pan_spread as f64, real(0.0, 1.0));
        for (i, step) in s.new_member.steps.iter().enumerate() {
            range(
                &format!("score.new_member.steps[{i}]"),
                *step as f64,
                whole(-128.0, 128.0),
            );
        }
        let t = &s.throttle;
        range(
            "score.throttle.max_notes",
            t.max_notes as f64,
            whole(1.0, 100_000.0),
        );
        range(
            "score.throttle.window_ms",
            t.window_ms as f64,
            whole(1.0, 3_600_000.0),
        );
        range(
            "score.throttle.swells_max",
            t.swells_max as f64,
            whole(1.0, 100_000.0),
        );
        range(
            "score.throttle.swells_window_ms",
            t.swells_window_ms as f64,
            whole(1.0, 3_600_000.0),
        );

        let e = &self.engine;
        range("engine.polyphony", e.polyphony as f64, whole(1.0, 4096.0));
        range("engine.latency_ms", e.latency_ms, real(0.0, 1000.0));
        range("engine.margin_ms", e.margin_ms, real(0.0, 1000.0));
        range("engine.volume", e.volume as f64, real(0.0, 1.0));
        let r = &e.reverb;
        // The reverb scales its lines by room_size / 18 m, clamped to 0.2..=4.
        range("engine.reverb.room_size", r.room_size, real(3.6, 72.0));
        range("engine.reverb.time", r.time, real(0.05, 60.0));
        range("engine.reverb.damping", r.damping, real(0.0, 1.0));
        range("engine.reverb.wet", r.wet as f64, real(0.0, 1.0));
        let d = &e.density;
        range(
            "engine.density.reference_rate",
            d.reference_rate,
            Limits::above(0.0, 1000.0),
        );
        range("engine.density.exponent", d.exponent, real(0.0, 1.0));
        range("engine.density.time_s", d.time_s, Limits::above(0.0, 600.0));
        let l = &e.limiter;
        range(
            "engine.limiter.attack_ms",
            l.attack_ms as f64,
            real(0.0, 50.0),
        );
        range(
            "engine.limiter.release_ms",
            l.release_ms as f64,
            real(1.0, 5000.0),
        );
        range(
            "engine.limiter.ceiling",
            l.ceiling as f64,
            Limits::above(0.0, 1.0),
        );

        let o = &self.output;
        range(
            "output.realtime_priority",
            o.realtime_priority as f64,
            whole(0.0, 99.0),
        );
        range("output.sample_rate", o.sample_rate as f64, SAMPLE_RATE);
        range(
            "output.suspend_after_s",
            o.suspend_after_s,
            real(0.0, 86_400.0),
        );
        if o.buffer_frames != 0 {
            out.extend(
                Problem::range(
                    "output.buffer_frames",
                    o.buffer_frames as f64,
                    BUFFER_FRAMES,
                )
                .map(|p| Problem {
                    complaint: format!(
                        "is not allowed: expected 0 (the device's default) or {}",
                        BUFFER_FRAMES.expected()
                    ),
                    ..p
                }),
            );
        }

        if let Err(e) = src.spec.parse::<crate::ingest::SourceSpec>() {
            out.push(Problem::new(
                "source.spec",
                format!("{:?}", src.spec),
                format!("is not a source: {e}"),
            ));
        }
        if src.backoff_max_ms < src.backoff_initial_ms {
            out.push(
                Problem::new(
                    "source.backoff_max_ms",
                    src.backoff_max_ms.to_string(),
                    format!(
                        "is not allowed: expected at least source.backoff_initial_ms ({})",
                        src.backoff_initial_ms
                    ),
                )
                .also("source.backoff_initial_ms"),
            );
        }
        if Schedule::parse(&self.engine.schedule).is_none() {
            out.push(Problem::new(
                "engine.schedule",
                format!("{:?}", self.engine.schedule),
                format!("is not a schedule: expected {}", Schedule::NAMES),
            ));
        }
        if s.scale.is_empty() {
            out.push(Problem::new(
                "score.scale",
                "[]",
                "is not allowed: expected at least one degree, each in 0..=11",
            ));
        }
        if s.new_member.steps.is_empty() {
            out.push(Problem::new(
                "score.new_member.steps",
                "[]",
                "is not allowed: expected at least one step",
            ));
        }
        for (low, high, a, b) in [
            ("fuzz_min", "fuzz_max", s.fuzz_min, s.fuzz_max),
            ("min_step", "max_step", s.min_step, s.max_step),
        ] {
            if a > b {
                out.push(
                    Problem::new(
                        &format!("score.{low}"),
                        a.to_string(),
                        format!("is not allowed: expected at most score.{high} ({b})"),
                    )
                    .also(&format!("score.{high}")),
                );
            }
        }
        if s.velocity_min > s.velocity_max {
            out.push(
                Problem::new(
                    "score.velocity_min",
                    number(s.velocity_min as f64),
                    format!(
                        "is not allowed: expected at most score.velocity_max ({})",
                        number(s.velocity_max as f64)
                    ),
                )
                .also("score.velocity_max"),
            );
        }
        for (register, note) in [
            ("addition", &s.addition.base),
            ("removal", &s.removal.base),
            ("new_member", &s.new_member.base),
        ] {
            if parse_note(note).is_none() {
                out.push(Problem::new(
                    &format!("score.{register}.base"),
                    format!("{note:?}"),
                    "is not a note: write a letter A-G, an optional # or b, and an octave -1..=9, e.g. \"C#3\"",
                ));
            }
        }
        let ingest = &self.ingest;
        out.extend(Problem::range(
            "ingest.max_body_bytes",
            ingest.max_body_bytes as f64,
            whole(1024.0, 64.0 * 1024.0 * 1024.0),
        ));
        if !ingest.listen.is_empty() && ingest.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(Problem::new(
                "ingest.listen",
                format!("{:?}", ingest.listen),
                "is not an address: expected IP:PORT such as \"127.0.0.1:8090\", or \"\" for off",
            ));
        }
        let display = &self.display;
        if !display.listen.is_empty() && display.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(Problem::new(
                "display.listen",
                format!("{:?}", display.listen),
                "is not an address: expected IP:PORT such as \"127.0.0.1:8080\", or \"\" for off",
            ));
        }
        for (name, table) in &self.sources {
            let key = |k: &str| format!("sources.{name}.{k}");
            out.extend(Problem::range(
                &key("pan"),
                table.pan as f64,
                real(-1.0, 1.0),
            ));
            out.extend(Problem::range(
                &key("gain"),
                table.gain as f64,
                real(0.0, 4.0),
            ));
            out.extend(Problem::range(
                &key("transpose"),
                table.transpose as f64,
                whole(-24.0, 12.0),
            ));
            match table.spec.parse::<crate::ingest::SourceSpec>() {
                Err(e) => out.push(Problem::new(
                    &key("spec"),
                    format!("{:?}", table.spec),
                    format!("is not a source: {e}"),
                )),
                Ok(crate::ingest::SourceSpec::Webhook(_) | crate::ingest::SourceSpec::Push)
                    if ingest.listen.is_empty() =>
                {
                    out.push(
                        Problem::new(
                            &key("spec"),
                            format!("{:?}", table.spec),
                            "is received by the local ingest endpoint, which is off: set ingest.listen (e.g. \"127.0.0.1:8090\")",
                        )
                        .also("ingest.listen"),
                    );
                }
                Ok(_) => {}
            }
            if let Err(e) = regex::Regex::new(&table.title) {
                out.push(Problem::new(
                    &key("title"),
                    format!("{:?}", table.title),
                    format!("is not a regular expression: {e}"),
                ));
            }
        }
        out
    }
}

/// Largest websocket frame a source may accept (bytes): 64 MiB.
const MAX_FRAME_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// Sample rates carillon renders at (Hz), from the config or `--sample-rate`.
pub const SAMPLE_RATE: Limits = Limits::whole(8000.0, 192_000.0);

/// Device buffer sizes (frames) besides 0, the device's default.
pub const BUFFER_FRAMES: Limits = Limits::whole(16.0, 8192.0);

/// The lowest note any register may reach (Hz): below it is a flutter, not a pitch.
pub const LOWEST_NOTE_HZ: f64 = 8.0;

/// Refusals of `problems` found in `text` (named `path`), each at its value there.
pub(crate) fn refuse_in(problems: Vec<Problem>, text: &str, path: &Path) -> Option<ConfigError> {
    refuse(problems, &[&Spans::new(text, path)])
}

/// Refuse a configuration whose registers reach notes their instruments cannot play at
/// `sample_rate`: too high for the model (see [`crate::instrument::Recipe::highest_playable_hz`];
/// a plucked string panics in fundsp past it) or below [`LOWEST_NOTE_HZ`]. Call it once
/// the sample rate is known (the config's, or `--sample-rate`), before playing. Also
/// refuses a register naming no instrument. Every problem is reported, each pointing at
/// the register's `base` (or `instrument`) in the user's file.
pub fn check_playable(
    config: &Config,
    instruments: &Instruments,
    sample_rate: u32,
) -> Result<(), ConfigError> {
    match config.refuse(playable_problems(config, instruments, sample_rate)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn playable_problems(config: &Config, instruments: &Instruments, sample_rate: u32) -> Vec<Problem> {
    let s = &config.score;
    let mut out = Vec::new();
    if s.scale.is_empty() {
        // Refused when read; there is no note to check.
        return out;
    }
    let edit_steps: Vec<i32> = (s.min_step..=s.max_step).collect();
    let registers = [
        (
            "addition",
            &s.addition.instrument,
            &s.addition.base,
            &edit_steps,
            "score.max_step",
        ),
        (
            "removal",
            &s.removal.instrument,
            &s.removal.base,
            &edit_steps,
            "score.max_step",
        ),
        (
            "new_member",
            &s.new_member.instrument,
            &s.new_member.base,
            &s.new_member.steps,
            "score.new_member.steps",
        ),
    ];
    for &(register, instrument, base, steps, steps_key) in &registers {
        let Some(recipe) = instruments.recipe(instrument) else {
            out.push(Problem::new(
                &format!("score.{register}.instrument"),
                format!("{instrument:?}"),
                format!(
                    "names no instrument; known: {}",
                    instruments.names().join(", ")
                ),
            ));
            continue;
        };
        let Some((low, high)) = register_range(base, steps, &s.scale) else {
            continue;
        };
        let key = format!("score.{register}.base");
        let limit = recipe.highest_playable_hz(sample_rate as f64);
        if score_hz(high) >= limit {
            out.push(
                Problem::new(
                    &key,
                    format!("{base:?}"),
                    format!(
                        "is too high at {sample_rate} Hz: the {register} register reaches {} ({:.1} Hz), \
                         but {instrument} plays only notes below {limit:.1} Hz there ({}); \
                         use a lower base, fewer steps ({steps_key}) or a higher sample rate",
                        note_name(high),
                        score_hz(high),
                        recipe.limit_reason(),
                    ),
                )
                .also(steps_key)
                .also(&format!("score.{register}.instrument")),
            );
        }
        if let Some((midi, why)) = unreachable(instruments, instrument, base, steps, &s.scale, 0) {
            out.push(
                Problem::new(
                    &key,
                    format!("{base:?}"),
                    format!(
                        "reaches a note {instrument} cannot play: the {register} register's {} \
                         ({:.1} Hz) has no recording near enough: {why}; record a note \
                         nearer it, raise max_transpose, or use another base or fewer steps \
                         ({steps_key})",
                        note_name(midi),
                        score_hz(midi),
                    ),
                )
                .also(steps_key)
                .also(&format!("score.{register}.instrument")),
            );
        }
        if score_hz(low) < LOWEST_NOTE_HZ {
            out.push(
                Problem::new(
                    &key,
                    format!("{base:?}"),
                    format!(
                        "is too low: the {register} register reaches {} ({:.2} Hz), below \
                         {LOWEST_NOTE_HZ} Hz; use a higher base or fewer steps down",
                        note_name(low),
                        score_hz(low),
                    ),
                )
                .also("score.min_step"),
            );
        }
    }
    // Each source's registers: moved by its transposition, played by its instruments
    // where it names its own.
    for (name, t) in &config.sources {
        let overrides = [&t.addition, &t.removal, &t.new_member];
        for ((register, instrument, base, steps, _), own) in registers.iter().zip(overrides) {
            if t.transpose == 0 && own.is_empty() {
                continue;
            }
            let instrument = if own.is_empty() { *instrument } else { own };
            // An unknown instrument of a source is refused by the source plan.
            let Some(recipe) = instruments.recipe(instrument) else {
                continue;
            };
            let Some((low, high)) = register_range(base, steps, &s.scale) else {
                continue;
            };
            let (low, high) = (low + t.transpose, high + t.transpose);
            let limit = recipe.highest_playable_hz(sample_rate as f64);
            let key = format!("sources.{name}.transpose");
            if score_hz(high) >= limit {
                out.push(Problem::new(
                    &key,
                    t.transpose.to_string(),
                    format!(
                        "is too high at {sample_rate} Hz: the source's {register} register reaches {} ({:.1} Hz), \
                         but {instrument} plays only notes below {limit:.1} Hz there ({})",
                        note_name(high),
                        score_hz(high),
                        recipe.limit_reason(),
                    ),
                ));
            }
            if let Some((midi, why)) =
                unreachable(instruments, instrument, base, steps, &s.scale, t.transpose)
            {
                out.push(Problem::new(
                    &key,
                    t.transpose.to_string(),
                    format!(
                        "reaches a note {instrument} cannot play: the source's {register} \
                         register's {} ({:.1} Hz) has no recording near enough: {why}",
                        note_name(midi),
                        score_hz(midi),
                    ),
                ));
            }
            if score_hz(low) < LOWEST_NOTE_HZ {
                out.push(Problem::new(
                    &key,
                    t.transpose.to_string(),
                    format!(
                        "is too low: the source's {register} register reaches {} ({:.2} Hz), below {LOWEST_NOTE_HZ} Hz",
                        note_name(low),
                        score_hz(low),
                    ),
                ));
            }
        }
    }
    out
}

/// The lowest and highest MIDI notes of a register: its base, moved by the lowest and
/// the highest of its steps on the scale. None if the base is not a note or there is
/// no step.
fn register_range(base: &str, steps: &[i32], scale: &[i32]) -> Option<(i32, i32)> {
    let base = parse_note(base)?;
    let semitones = steps.iter().map(|&step| step_semitones(scale, step));
    Some((base + semitones.clone().min()?, base + semitones.max()?))
}

/// The first note of a register (moved by `transpose`) that a sampled instrument has
/// no recording near enough to play, and why. A sampler's reach can have holes between
/// its recordings, so every note is checked, not only the lowest and highest.
fn unreachable(
    instruments: &Instruments,
    instrument: &str,
    base: &str,
    steps: &[i32],
    scale: &[i32],
    transpose: i32,
) -> Option<(i32, String)> {
    let base = parse_note(base)? + transpose;
    steps.iter().find_map(|&step| {
        let midi = base + step_semitones(scale, step);
        let why = instruments.out_of_reach(instrument, score_hz(midi))?;
        Some((midi, why))
    })
}

/// The frequency of a MIDI note as the score computes it: in f32.
fn score_hz(midi: i32) -> f64 {
    midi_to_hz(midi as f64) as f32 as f64
}

/// Turn a toml error into one that names the file, line and column.
pub(crate) fn located(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => line_column(text, span.start),
        None => (1, 1),
    };
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message: e.message().to_owned(),
    }
}

/// Deep-merge `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The directory a relative path in the config is resolved against: the config file's.
pub fn relative_to(config_path: Option<&Path>, value: &str) -> PathBuf {
    let p = PathBuf::from(value);
    match config_path.and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let path = format!("{prefix}{k}");
                keys(v, &format!("{path}."), out);
                out.push(path);
            }
        }
    }

    #[test]
    fn default_file_sets_every_key() {
        let from_file: toml::Value = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
        let from_struct = toml::Value::try_from(Config::default()).expect("serializes");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&from_file, "", &mut a);
        keys(&from_struct, "", &mut b);
        a.sort();
        b.sort();
        assert_eq!(a, b, "config/default.toml must set every setting, no more");
    }

    #[test]
    fn defaults_are_listen_to_wikipedias() {
        let c = Config::defaults();
        assert_eq!(c.score.scale, vec![0, 2, 5, 7, 9]);
        assert_eq!(c.score.addition.base, "C#3");
        assert_eq!(c.score.removal.base, "C#1");
        assert_eq!(c.score.throttle.max_notes, 15);
        assert_eq!(c.score.throttle.window_ms, 300);
        assert_eq!(c.score.filter.namespaces, vec!["Main".to_string()]);
        assert_eq!(c.engine.polyphony, 64);
    }

    #[test]
    fn user_file_overrides_only_what_it_names() {
        let c = Config::from_toml("[engine]\npolyphony = 8\n", Path::new("my.toml")).unwrap();
        assert_eq!(c.engine.polyphony, 8);
        assert_eq!(c.engine.volume, Config::defaults().engine.volume);
        assert_eq!(c.score.addition.instrument, "celesta");
    }

    #[test]
    fn unknown_key_is_reported_with_file_and_line() {
        let text = "[score]\nsteps = 24\n\n[engine]\npolyphonie = 8\n";
        let err = Config::from_toml(text, Path::new("site.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("site.toml:5:"), "{msg}");
        assert!(msg.contains("polyphonie"), "{msg}");
    }

    #[test]
    fn wrong_type_is_reported_with_file_and_line() {
        let text = "[engine]\nvolume = \"loud\"\n";
        let msg = Config::from_toml(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("c.toml:2:"), "{msg}");
    }

    #[test]
    fn bad_note_name_is_explained() {
        let text = "[score.addition]\nbase = \"H2\"\n";
        let msg = Config::from_toml(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("score.addition.base") && msg.contains("C#3"),
            "{msg}"
        );
    }

    fn refusal(text: &str) -> String {
        Config::from_toml(text, Path::new("site.toml"))
            .expect_err("the file should be refused")
            .to_string()
    }

    #[test]
    fn a_sources_bad_values_are_refused_at_their_lines() {
        let text = "[sources.en]\nspec = \"eventstreams:enwiki\"\npan = 3\n[sources.fr]\nspec = \"gopher://x\"\ntitle = \"(\"\ntranspose = 13\n";
        let e = refusal(text);
        assert!(
            e.contains("site.toml:3:7: sources.en.pan = 3 is not allowed"),
            "{e}"
        );
        assert!(
            e.contains("site.toml:5:8: sources.fr.spec = \"gopher://x\" is not a source"),
            "{e}"
        );
        assert!(
            e.contains("site.toml:6:9: sources.fr.title = \"(\" is not a regular expression"),
            "{e}"
        );
        assert!(
            e.contains("site.toml:7:13: sources.fr.transpose = 13 is not allowed"),
            "{e}"
        );
        let e = refusal("[sources.forge]\nspec = \"webhook:gitea\"\n");
        assert!(
            e.contains("sources.forge.spec") && e.contains("set ingest.listen"),
            "{e}"
        );
        let e = refusal("[sources.x]\nspec = \"demo\"\nloudness = 2\n");
        assert!(e.contains("site.toml:3:1") && e.contains("loudness"), "{e}");
    }

    #[test]
    fn an_unknown_schedule_is_refused_at_its_line_naming_the_two() {
        assert_eq!(
            refusal("[engine]\nlatency_ms = 0\nschedule = \"soon\"\n"),
            "site.toml:3:12: engine.schedule = \"soon\" is not a schedule: expected \"fixed\" or \"asap\""
        );
    }

    #[test]
    fn the_schedule_is_fixed_unless_asap_is_asked_for() {
        assert_eq!(Config::defaults().engine.schedule(), Schedule::Fixed);
        let asap = Config::from_toml("[engine]\nschedule = \"asap\"\n", Path::new("site.toml"))
            .expect("a valid configuration");
        assert_eq!(asap.engine.schedule(), Schedule::Asap);
    }

    #[test]
    fn nan_is_refused_at_its_line_and_column_with_the_range() {
        let text = "[engine]\nvolume = 0.5\n\n[engine.reverb]\nwet = nan\n";
        assert_eq!(
            refusal(text),
            "site.toml:5:7: engine.reverb.wet = nan is not allowed: expected a finite number in 0..=1"
        );
    }

    #[test]
    fn infinities_are_refused() {
        for (text, at) in [
            (
                "[engine]\nlatency_ms = inf\n",
                "site.toml:2:14: engine.latency_ms = inf",
            ),
            (
                "[score]\npan_spread = -inf\n",
                "site.toml:2:14: score.pan_spread = -inf",
            ),
            (
                "[engine.limiter]\nceiling = +inf\n",
                "site.toml:2:11: engine.limiter.ceiling = +inf",
            ),
        ] {
            let msg = refusal(text);
            assert!(msg.starts_with(at), "{msg}");
            assert!(msg.contains("expected a finite number"), "{msg}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_range() {
        for (text, expected) in [
            (
                "[source]\nbackoff_initial_ms = 0\n",
                "site.toml:2:22: source.backoff_initial_ms = 0 is not allowed: expected a whole number in 100..=60000",
            ),
            (
                "[output]\nsample_rate = 1000\n",
                "site.toml:2:15: output.sample_rate = 1000 is not allowed: expected a whole number in 8000..=192000",
            ),
            (
                "[output]\nbuffer_frames = 8\n",
                "site.toml:2:17: output.buffer_frames = 8 is not allowed: expected 0 (the device's default) or a whole number in 16..=8192",
            ),
            (
                "[engine.limiter]\nceiling = 0.0\n",
                "site.toml:2:11: engine.limiter.ceiling = 0.0 is not allowed: expected a finite number above 0 and at most 1",
            ),
            (
                "[score.throttle]\nswells_max = 0\n",
                "site.toml:2:14: score.throttle.swells_max = 0 is not allowed: expected a whole number in 1..=100000",
            ),
            (
                "[source]\nsilence_timeout_s = 0\n",
                "site.toml:2:21: source.silence_timeout_s = 0 is not allowed: expected a whole number in 1..=86400",
            ),
        ] {
            assert_eq!(refusal(text), expected);
        }
    }

    #[test]
    fn a_bad_array_element_is_pointed_at() {
        let msg = refusal("[score]\nscale = [0, 2, 12]\n");
        assert_eq!(
            msg,
            "site.toml:2:16: score.scale[2] = 12 is not allowed: expected a whole number in 0..=11"
        );
        let msg = refusal("[score]\nscale = []\n");
        assert!(msg.starts_with("site.toml:2:9: score.scale = []"), "{msg}");
    }

    #[test]
    fn keys_out_of_order_point_at_the_one_the_user_set() {
        // The user lowers the cap under the default first delay (500 ms).
        let msg = refusal("[source]\nbackoff_max_ms = 200\n");
        assert_eq!(
            msg,
            "site.toml:2:18: source.backoff_max_ms = 200 is not allowed: expected at least source.backoff_initial_ms (500)"
        );
        // The user raises the floor over the default ceiling (0.9).
        let msg = refusal("[score]\nvelocity_min = 0.95\n");
        assert!(
            msg.starts_with("site.toml:2:16: score.velocity_min = 0.95"),
            "{msg}"
        );
        assert!(msg.contains("score.velocity_max (0.9)"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_one_a_line() {
        let text = "[engine]\nvolume = 2\npolyphony = 0\n[engine.reverb]\ntime = nan\n";
        let err = Config::from_toml(text, Path::new("site.toml")).unwrap_err();
        let lines: Vec<String> = err.each().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        for at in ["site.toml:2:10: ", "site.toml:3:13: ", "site.toml:5:8: "] {
            assert!(lines.iter().any(|l| l.starts_with(at)), "{at} in {lines:?}");
        }
        assert_eq!(err.to_string(), lines.join("\n"));
    }

    #[test]
    fn a_value_only_the_defaults_set_is_pointed_at_in_them() {
        let defaults = Spans::new(DEFAULT_TOML, Path::new(DEFAULT_PATH));
        let user = Spans::new("[score]\n", Path::new("site.toml"));
        let problem = Problem::new("engine.reverb.wet", "0.22", "is refused here");
        let msg = refuse(vec![problem], &[&user, &defaults])
            .unwrap()
            .to_string();
        assert!(msg.starts_with("config/default.toml:"), "{msg}");
        assert!(
            msg.contains(": engine.reverb.wet = 0.22 is refused here"),
            "{msg}"
        );
    }

    #[test]
    fn every_number_in_the_defaults_is_range_checked() {
        // Each numeric key of default.toml, set to nan (or, for integers, to a value
        // beyond any range), must be refused by name: none is left unchecked.
        let mut numeric = Vec::new();
        let defaults: toml::Value = toml::from_str(DEFAULT_TOML).expect("parses");
        fn walk(v: &toml::Value, prefix: &str, out: &mut Vec<(String, bool)>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        walk(v, &format!("{prefix}{k}."), out);
                    }
                }
                toml::Value::Float(_) => out.push((prefix.trim_end_matches('.').into(), true)),
                toml::Value::Integer(_) => out.push((prefix.trim_end_matches('.').into(), false)),
                _ => {}
            }
        }
        walk(&defaults, "", &mut numeric);
        assert!(numeric.len() > 30, "{numeric:?}");
        for (key, float) in numeric {
            let (table, name) = key.rsplit_once('.').expect("every key is in a table");
            let value = if float { "nan" } else { "1000000000" };
            let text = format!("[{table}]\n{name} = {value}\n");
            let msg = Config::from_toml(&text, Path::new("site.toml"))
                .map(|_| String::from("accepted"))
                .unwrap_or_else(|e| e.to_string());
            assert!(
                msg.starts_with(&format!("site.toml:2:{}: {key} = {value}", name.len() + 4)),
                "{key} = {value}: {msg}"
            );
        }
    }

    fn playable(text: &str, sample_rate: u32) -> Result<(), String> {
        let config = Config::from_toml(text, Path::new("site.toml")).map_err(|e| e.to_string())?;
        let instruments = Instruments::built_in().map_err(|e| e.to_string())?;
        check_playable(&config, &instruments, sample_rate).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_playable_from_44_1_khz() {
        for sample_rate in [44_100, 48_000, 96_000, 192_000] {
            assert_eq!(playable("", sample_rate), Ok(()), "at {sample_rate} Hz");
        }
    }

    #[test]
    fn a_pluck_above_its_string_is_refused_naming_everything() {
        let text = "[score.removal]\nbase = \"C#8\"\n";
        let msg = playable(text, 48_000).unwrap_err();
        assert!(
            msg.starts_with("site.toml:2:8: score.removal.base = \"C#8\" is too high at 48000 Hz"),
            "{msg}"
        );
        // C#8 + 55 semitones (23 steps up the pentatonic scale) = G#12.
        for part in [
            "G#12",
            "clavichord",
            "21818.2 Hz",
            "lower base",
            "score.max_step",
            "higher sample rate",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }

    #[test]
    fn the_bell_and_the_bow_have_their_own_limits() {
        // The celesta's top note (C#3 + 55 semitones = G#7, 3322 Hz) has its overtone at
        // four times that: past Nyquist at 22.05 kHz.
        let msg = playable("", 22_050).unwrap_err();
        assert!(msg.starts_with("config/default.toml:"), "{msg}");
        assert!(
            msg.contains("celesta") && msg.contains("2756.2 Hz"),
            "{msg}"
        );
        let msg = playable("[score.new_member]\nbase = \"C#9\"\n", 8000).unwrap_err();
        assert!(
            msg.contains("violin") && msg.contains("new_member.steps"),
            "{msg}"
        );
    }

    #[test]
    fn a_source_transposed_past_its_instrument_is_refused() {
        // The célesta reaches G#7 (3.3 kHz): a fifth up stays under its 6 kHz at 48 kHz,
        // an octave up does not; a clavichord from C#0 two octaves down is below 8 Hz.
        assert_eq!(
            playable("[sources.a]\nspec = \"demo\"\ntranspose = 7\n", 48_000),
            Ok(())
        );
        let e = playable("[sources.a]\nspec = \"demo\"\ntranspose = 12\n", 48_000)
            .expect_err("refused");
        assert!(
            e.contains("sources.a.transpose = 12 is too high") && e.contains("celesta"),
            "{e}"
        );
        let e = playable(
            "[sources.a]\nspec = \"demo\"\ntranspose = -24\n[score.removal]\nbase = \"C#0\"\n",
            48_000,
        )
        .expect_err("refused");
        assert!(
            e.contains("site.toml:3:13: sources.a.transpose = -24 is too low"),
            "{e}"
        );
        // A source's own instrument is checked at its own register's notes: the célesta
        // playing removals from C#1 is fine, transposed or not.
        assert_eq!(
            playable(
                "[sources.a]\nspec = \"demo\"\ntranspose = 5\nremoval = \"celesta\"\n",
                48_000
            ),
            Ok(())
        );
    }

    #[test]
    fn a_note_below_8_hz_is_refused() {
        let msg = playable("[score]\nmin_step = -20\n", 48_000).unwrap_err();
        assert!(msg.contains("too low") && msg.contains("removal"), "{msg}");
        assert!(
            msg.starts_with("site.toml:2:12: score.removal.base"),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_instrument_is_pointed_at() {
        let msg = playable("[score.removal]\ninstrument = \"harp\"\n", 48_000).unwrap_err();
        assert!(
            msg.starts_with(
                "site.toml:2:14: score.removal.instrument = \"harp\" names no instrument"
            ),
            "{msg}"
        );
    }
}
