//! Which sources play: the `--source` flags, else the config's `[sources.NAME]` tables,
//! else `source.spec`; each resolved to its spec, its format, its place in the mix, and
//! the secrets it needs from the environment, before anything is started, so that every
//! mistake is reported at once.

use std::path::Path;

use thiserror::Error;

use super::{Format, SourceSpec, SpecError};
use crate::config::{Config, SourceTable};
use crate::score::{Mix, ScoreError};

/// A source ready to open.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Its name in the status line and summary: the table's, or the spec as given.
    pub name: String,
    /// The spec as written.
    pub spec_text: String,
    pub spec: SourceSpec,
    pub format: Format,
    pub mix: Mix,
    /// A webhook's secret.
    pub secret: Option<Vec<u8>>,
    /// A bearer token for an HTTP stream.
    pub bearer: Option<String>,
}

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("source {name}: {error}")]
    Spec { name: String, error: SpecError },
    #[error("source {name}: format {format:?}: {error}")]
    Format {
        name: String,
        format: String,
        error: String,
    },
    #[error("source {name}: the environment variable {var} ({key}) is not set")]
    MissingEnv {
        name: String,
        var: String,
        key: &'static str,
    },
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error("two sources are named {0:?}")]
    Duplicate(String),
}

/// The sources to play. `flags` are the `--source` values: a table's name, `NAME=SPEC`,
/// or a spec; `instruments` are the engine's instrument names.
pub fn plan(
    config: &Config,
    config_path: Option<&Path>,
    flags: &[String],
    instruments: &[String],
) -> Result<Vec<Planned>, PlanError> {
    let dir = config_path.and_then(Path::parent);
    let mut tables: Vec<(String, SourceTable)> = Vec::new();
    if !flags.is_empty() {
        for flag in flags {
            if let Some(table) = config.sources.get(flag) {
                tables.push((flag.clone(), table.clone()));
                continue;
            }
            let (name, spec) = match flag.split_once('=') {
                Some((name, spec)) if is_name(name) => (name.to_owned(), spec.to_owned()),
                _ => (flag.clone(), flag.clone()),
            };
            tables.push((
                name,
                SourceTable {
                    spec,
                    ..SourceTable::default()
                },
            ));
        }
    } else if !config.sources.is_empty() {
        tables.extend(config.sources.iter().map(|(n, t)| (n.clone(), t.clone())));
    } else {
        tables.push((
            config.source.spec.clone(),
            SourceTable {
                spec: config.source.spec.clone(),
                ..SourceTable::default()
            },
        ));
    }
    let mut out: Vec<Planned> = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        if out.iter().any(|p| p.name == name) {
            return Err(PlanError::Duplicate(name));
        }
        out.push(resolve(&name, &table, dir, instruments)?);
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn resolve(
    name: &str,
    table: &SourceTable,
    dir: Option<&Path>,
    instruments: &[String],
) -> Result<Planned, PlanError> {
    let spec: SourceSpec = table.spec.parse().map_err(|error| PlanError::Spec {
        name: name.to_owned(),
        error,
    })?;
    let format = if table.format.is_empty() {
        spec.default_format()
    } else {
        Format::named(&table.format, dir)
    }
    .map_err(|error| PlanError::Format {
        name: name.to_owned(),
        format: if table.format.is_empty() {
            "(the spec's own)".to_owned()
        } else {
            table.format.clone()
        },
        error,
    })?;
    // An EventStreams source hears the wikis its table lists, else its spec's; the
    // others are skipped as they arrive, as `other_wiki` (they could never sound).
    let format = match (format, table.wikis.is_empty()) {
        (Format::EventStreams | Format::EventStreamsOf(_), false) => {
            Format::EventStreamsOf(table.wikis.as_slice().into())
        }
        (format, _) => format,
    };
    let mut mix = Mix::from_table(name, table, instruments)?;
    if matches!(format, Format::EventStreams | Format::EventStreamsOf(_)) {
        mix.wikis.clear();
    }
    let env = |var: &str, key: &'static str| {
        std::env::var(var).map_err(|_| PlanError::MissingEnv {
            name: name.to_owned(),
            var: var.to_owned(),
            key,
        })
    };
    let secret = if !table.secret_env.is_empty() {
        Some(env(&table.secret_env, "secret_env")?.into_bytes())
    } else if !table.secret.is_empty() {
        Some(table.secret.clone().into_bytes())
    } else {
        None
    };
    let bearer = if table.token_env.is_empty() {
        None
    } else {
        Some(env(&table.token_env, "token_env")?)
    };
    Ok(Planned {
        name: name.to_owned(),
        spec_text: table.spec.clone(),
        spec,
        format,
        mix,
        secret,
        bearer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["celesta", "clavichord", "violin"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn flags_name_tables_or_give_specs() {
        let config = Config::from_toml(
            "[sources.left]\nspec = \"demo\"\npan = -1.0\n[sources.right]\nspec = \"demo\"\npan = 1.0\n",
            Path::new("site.toml"),
        )
        .expect("valid");
        let all = plan(&config, None, &[], &names()).expect("plans");
        assert_eq!(
            all.iter()
                .map(|p| (p.name.as_str(), p.mix.pan))
                .collect::<Vec<_>>(),
            vec![("left", -1.0), ("right", 1.0)]
        );
        let flags = [
            "right".to_owned(),
            "fr=eventstreams:frwiki".to_owned(),
            "replay:x.jsonl".to_owned(),
        ];
        let some = plan(&config, None, &flags, &names()).expect("plans");
        assert_eq!(some[0].name, "right");
        assert_eq!(some[1].name, "fr");
        assert!(
            matches!(&some[1].format, Format::EventStreamsOf(w) if w.as_ref() == ["frwiki".to_owned()])
        );
        assert_eq!(some[2].name, "replay:x.jsonl");
        let none = plan(&Config::defaults(), None, &[], &names()).expect("plans");
        assert_eq!(
            none[0].spec,
            SourceSpec::EventStreams {
                wikis: vec!["enwiki".into()]
            }
        );
    }

    #[test]
    fn a_missing_environment_variable_is_named() {
        let config = Config::from_toml(
            "[ingest]\nlisten = \"127.0.0.1:0\"\n[sources.forge]\nspec = \"push\"\nformat = \"wikimon\"\nsecret_env = \"CARILLON_TEST_UNSET_SECRET\"\n",
            Path::new("site.toml"),
        )
        .expect("valid");
        let e = plan(&config, None, &[], &names())
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("CARILLON_TEST_UNSET_SECRET") && e.contains("forge"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_instrument_of_a_source_is_named() {
        let config = Config::from_toml(
            "[sources.x]\nspec = \"demo\"\naddition = \"bells\"\n",
            Path::new("site.toml"),
        )
        .expect("valid");
        let e = plan(&config, None, &[], &names())
            .expect_err("refused")
            .to_string();
        assert!(e.contains("sources.x.addition = \"bells\""), "{e}");
    }
}
