//! Range checks for values read from outside, and where in its file a refused value is.
//!
//! Everything carillon reads (a configuration, an instrument recipe, a command-line
//! flag) goes through [`Limits`], so that one refusal reads like another. A refusal
//! names the file, line and column of the value: the text is parsed a second time into
//! toml's spanned tables, in which a dotted key such as `engine.reverb.wet` is looked up.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// The range a number must lie in, and how to say so to a person. NaN and the infinities
/// are outside every range (TOML accepts `nan` and `inf` literals).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    min: f64,
    max: f64,
    /// The minimum itself is refused: the range is `min < x <= max`.
    above_min: bool,
    integer: bool,
}

impl Limits {
    /// A finite number in `min..=max`.
    pub const fn real(min: f64, max: f64) -> Limits {
        Limits {
            min,
            max,
            above_min: false,
            integer: false,
        }
    }

    /// A finite number above `min` and at most `max`.
    pub const fn above(min: f64, max: f64) -> Limits {
        Limits {
            min,
            max,
            above_min: true,
            integer: false,
        }
    }

    /// Any finite number above 0.
    pub const fn positive() -> Limits {
        Limits::above(0.0, f64::MAX)
    }

    /// A whole number in `min..=max`.
    pub const fn whole(min: f64, max: f64) -> Limits {
        Limits {
            min,
            max,
            above_min: false,
            integer: true,
        }
    }

    pub fn contains(&self, value: f64) -> bool {
        let low = if self.above_min {
            value > self.min
        } else {
            value >= self.min
        };
        value.is_finite() && low && value <= self.max
    }

    /// What the range allows, as it ends a refusal: "a finite number in 0..=1".
    pub fn expected(&self) -> String {
        let (min, max) = (number(self.min), number(self.max));
        match (self.integer, self.above_min) {
            (false, true) if self.max == f64::MAX => format!("a finite number above {min}"),
            (true, _) => format!("a whole number in {min}..={max}"),
            (false, false) => format!("a finite number in {min}..={max}"),
            (false, true) => format!("a finite number above {min} and at most {max}"),
        }
    }

    /// `Ok` if `value` is in range, else the refusal of `name = value`, e.g.
    /// "--volume = 2 is not allowed: expected a finite number in 0..=1".
    pub fn check(&self, name: &str, value: f64) -> Result<(), String> {
        if self.contains(value) {
            Ok(())
        } else {
            Err(format!(
                "{name} = {} is not allowed: expected {}",
                number(value),
                self.expected()
            ))
        }
    }
}

/// A number as a person would write it: no ".0" on whole numbers, `nan` and `inf` as
/// TOML spells them, and an `f32` setting widened to `f64` as it was written (0.9, not
/// 0.8999999761581421).
pub fn number(x: f64) -> String {
    let narrow = x as f32;
    if x.is_finite() && narrow as f64 == x {
        format!("{narrow}")
    } else if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x}")
    }
}

/// A refused value: the key it was read from (with `[i]` for an array element), keys
/// that also took part (the other side of a `min <= max`), and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub also: Vec<String>,
    /// The value as written, used when the key cannot be found in any text.
    pub value: String,
    /// Everything after "key = value ".
    pub complaint: String,
}

impl Problem {
    /// `key = value` outside `limits`, if it is.
    pub fn range(key: &str, value: f64, limits: Limits) -> Option<Problem> {
        (!limits.contains(value)).then(|| Problem {
            key: key.to_owned(),
            also: Vec::new(),
            value: number(value),
            complaint: format!("is not allowed: expected {}", limits.expected()),
        })
    }

    pub fn new(key: &str, value: impl Into<String>, complaint: impl Into<String>) -> Problem {
        Problem {
            key: key.to_owned(),
            also: Vec::new(),
            value: value.into(),
            complaint: complaint.into(),
        }
    }

    /// The same problem, which also involves `other`: if the user's file sets only that
    /// one, it is where the refusal points.
    pub fn also(mut self, other: &str) -> Problem {
        self.also.push(other.to_owned());
        self
    }
}

/// A TOML text with the spans of its values, to say where a key's value is written.
pub struct Spans<'a> {
    path: PathBuf,
    text: &'a str,
    root: Option<DeValue<'a>>,
}

impl<'a> Spans<'a> {
    /// `text`, named `path` in refusals. A text toml cannot parse finds no key; its
    /// syntax errors are reported by the first, typed parse.
    pub fn new(text: &'a str, path: &Path) -> Spans<'a> {
        Spans {
            path: path.to_owned(),
            text,
            root: DeTable::parse(text)
                .ok()
                .map(|t| DeValue::Table(t.into_inner())),
        }
    }

    /// The byte span of the value of a dotted key such as `score.scale[2]`.
    pub fn find(&self, key: &str) -> Option<Range<usize>> {
        let mut value = self.root.as_ref()?;
        let mut span = None;
        for part in key.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let found = value.get(name)?;
            span = Some(found.span());
            value = found.get_ref();
            if let Some(i) = index {
                let element = value.get(i)?;
                span = Some(element.span());
                value = element.get_ref();
            }
        }
        span
    }

    /// The refusal of `problem` at its key's value in this text, if the key is here.
    fn locate(&self, problem: &Problem, key: &str) -> Option<ConfigError> {
        // An element the file does not have (scale[7] of a shorter list) is the array's.
        let span = self
            .find(key)
            .or_else(|| key.split_once('[').and_then(|(array, _)| self.find(array)))?;
        let (line, column) = line_column(self.text, span.start);
        let written = self.text.get(span.clone()).map(str::trim);
        let value = match written {
            // The key's own value, as the user wrote it (`nan`, `"C#8"`), unless this is
            // the other key of the problem.
            Some(w) if key == problem.key && !w.contains('\n') => w,
            _ => problem.value.as_str(),
        };
        Some(ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            message: format!("{} = {value} {}", problem.key, problem.complaint),
        })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Turn problems into refusals, each at its value in the first text that has it: the
/// user's file, else the defaults. `None` if there are none.
pub fn refuse(problems: Vec<Problem>, texts: &[&Spans]) -> Option<ConfigError> {
    let errors: Vec<ConfigError> = problems
        .iter()
        .map(|p| {
            texts
                .iter()
                .find_map(|t| {
                    std::iter::once(&p.key)
                        .chain(&p.also)
                        .find_map(|k| t.locate(p, k))
                })
                .unwrap_or_else(|| ConfigError::Value {
                    path: texts.first().map_or_else(PathBuf::new, |t| t.path.clone()),
                    message: format!("{} = {} {}", p.key, p.value, p.complaint),
                })
        })
        .collect();
    match errors.len() {
        0 => None,
        1 => errors.into_iter().next(),
        _ => Some(ConfigError::Many(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinities_are_outside_every_range() {
        for limits in [
            Limits::real(f64::MIN, f64::MAX),
            Limits::above(0.0, 1.0),
            Limits::whole(0.0, 10.0),
        ] {
            for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                assert!(!limits.contains(x), "{limits:?} holds {x}");
            }
        }
    }

    #[test]
    fn bounds_are_inclusive_unless_above() {
        assert!(Limits::real(0.0, 1.0).contains(0.0));
        assert!(Limits::real(0.0, 1.0).contains(1.0));
        assert!(!Limits::above(0.0, 1.0).contains(0.0));
        assert!(Limits::above(0.0, 1.0).contains(1.0));
        assert!(!Limits::whole(16.0, 8192.0).contains(15.0));
        assert!(Limits::positive().contains(1e300));
        assert!(!Limits::positive().contains(0.0));
        assert_eq!(Limits::positive().expected(), "a finite number above 0");
    }

    #[test]
    fn refusals_say_the_range() {
        let err = Limits::real(0.0, 1.0).check("--volume", 2.0).unwrap_err();
        assert_eq!(
            err,
            "--volume = 2 is not allowed: expected a finite number in 0..=1"
        );
        let err = Limits::above(0.0, 1.0).check("x", f64::NAN).unwrap_err();
        assert!(err.contains("nan") && err.contains("above 0"), "{err}");
    }

    #[test]
    fn finds_values_of_dotted_keys_and_array_elements() {
        let text =
            "[engine]\nvolume = 0.5\n[engine.reverb]\nwet = nan\n[score]\nscale = [0, 2, 14]\n";
        let spans = Spans::new(text, Path::new("s.toml"));
        let at = |key| spans.find(key).map(|r| line_column(text, r.start));
        assert_eq!(at("engine.reverb.wet"), Some((4, 7)));
        assert_eq!(at("engine.volume"), Some((2, 10)));
        assert_eq!(at("score.scale[2]"), Some((6, 16)));
        assert_eq!(at("score.steps"), None);
    }

    #[test]
    fn a_refusal_points_at_the_file_that_sets_the_value() {
        let user = Spans::new("[score]\nvelocity_max = 0.5\n", Path::new("u.toml"));
        let defaults = Spans::new(
            "[score]\nvelocity_min = 0.55\nvelocity_max = 0.9\n",
            Path::new("d.toml"),
        );
        let problem = Problem::new("score.velocity_min", "0.55", "is above score.velocity_max")
            .also("score.velocity_max");
        let err = refuse(vec![problem], &[&user, &defaults]).unwrap();
        assert_eq!(
            err.to_string(),
            "u.toml:2:16: score.velocity_min = 0.55 is above score.velocity_max"
        );
    }
}
