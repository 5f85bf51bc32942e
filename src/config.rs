//! carillon's configuration: every setting of the score, engine, sources and output.
//!
//! The defaults live in `config/default.toml`, compiled into the binary. A user file is
//! read over them, so it only names what it changes; an unknown key or a wrong type is
//! reported with the file, line and column, and what was expected.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use thiserror::Error;

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
}

/// The whole configuration. `Default` here is all zeros and empty lists, used only to
/// check a user file's keys and types; [`Config::defaults`] gives the real defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub score: ScoreConfig,
    pub engine: EngineConfig,
    pub output: OutputConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub spec: String,
    pub max_frame_bytes: usize,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub healthy_after_s: u64,
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
    pub volume: f32,
    pub instruments_dir: String,
    pub reverb: ReverbConfig,
    pub limiter: LimiterConfig,
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
    pub realtime_priority: i32,
    pub sample_rate: u32,
    pub buffer_frames: u32,
}

impl Config {
    /// The compiled-in defaults of `config/default.toml`.
    pub fn defaults() -> Config {
        static DEFAULTS: OnceLock<Config> = OnceLock::new();
        DEFAULTS
            .get_or_init(|| {
                match Config::from_toml(DEFAULT_TOML, Path::new("config/default.toml")) {
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
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Value {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let fail = |message: String| {
            Err(ConfigError::Value {
                path: path.to_owned(),
                message,
            })
        };
        let s = &self.score;
        if s.scale.is_empty() {
            return fail("score.scale must list at least one degree".into());
        }
        if s.steps == 0 {
            return fail("score.steps must be at least 1".into());
        }
        if s.fuzz_min > s.fuzz_max {
            return fail("score.fuzz_min must not exceed score.fuzz_max".into());
        }
        if s.min_step > s.max_step {
            return fail("score.min_step must not exceed score.max_step".into());
        }
        if s.new_member.steps.is_empty() {
            return fail("score.new_member.steps must list at least one step".into());
        }
        for (key, note) in [
            ("score.addition.base", &s.addition.base),
            ("score.removal.base", &s.removal.base),
            ("score.new_member.base", &s.new_member.base),
        ] {
            if crate::score::scale::parse_note(note).is_none() {
                return fail(format!(
                    "{key} = {note:?} is not a note: write a letter A-G, an optional # or b, and an octave, e.g. \"C#3\""
                ));
            }
        }
        if s.throttle.max_notes == 0 {
            return fail("score.throttle.max_notes must be at least 1".into());
        }
        if self.engine.polyphony == 0 {
            return fail("engine.polyphony must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.engine.volume) {
            return fail("engine.volume must be between 0 and 1".into());
        }
        let l = &self.engine.limiter;
        if !(l.ceiling > 0.0 && l.ceiling <= 1.0) {
            return fail("engine.limiter.ceiling must be in (0, 1]".into());
        }
        if !(8000..=192_000).contains(&self.output.sample_rate) {
            return fail("output.sample_rate must be between 8000 and 192000 Hz".into());
        }
        Ok(())
    }
}

/// Turn a toml error into one that names the file, line and column.
pub(crate) fn located(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        }
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
}
