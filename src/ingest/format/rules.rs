//! Rules: a feed of arbitrary JSON messages mapped to events by a TOML file instead of
//! code. Each `[[rule]]` names the messages it takes (by event name, and by conditions
//! on JSON Pointer paths) and how their fields make an event, or that they are skipped
//! under a name; the first rule that takes a message decides. The presets of
//! `config/sources/` (Mastodon, forge webhooks, carillon's own event JSON…) are such
//! files, compiled in; their comments are the reference for the format.
//!
//! A file is compiled once when it is loaded (pointers split into tokens, templates into
//! pieces, patterns into regexes), so that reading a message costs little more than
//! serde_json parsing it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{Message, Parsed};
use crate::config::located;
use crate::event::{Event, EventKind};

/// The presets of `config/sources/`, by name, as compiled in.
pub const PRESETS: [(&str, &str); 7] = [
    (
        "wikimon",
        include_str!("../../../config/sources/wikimon.toml"),
    ),
    (
        "eventstreams",
        include_str!("../../../config/sources/eventstreams.toml"),
    ),
    (
        "mastodon",
        include_str!("../../../config/sources/mastodon.toml"),
    ),
    (
        "github",
        include_str!("../../../config/sources/github.toml"),
    ),
    ("gitea", include_str!("../../../config/sources/gitea.toml")),
    (
        "forgejo",
        include_str!("../../../config/sources/forgejo.toml"),
    ),
    (
        "generic",
        include_str!("../../../config/sources/generic.toml"),
    ),
];

/// Compiled rules, ready to read messages.
#[derive(Debug)]
pub struct Rules {
    name: String,
    event: Option<Pointer>,
    payload: Option<Pointer>,
    unmatched: String,
    rules: Vec<Rule>,
}

impl Rules {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The preset of this name, or else the rules file at this path (relative to `dir`).
    pub fn named(name: &str, dir: Option<&Path>) -> Result<Rules, String> {
        if let Some((_, text)) = PRESETS.iter().find(|(preset, _)| *preset == name) {
            let path = format!("config/sources/{name}.toml");
            return Rules::from_toml(name, text, Path::new(&path));
        }
        let path = match dir {
            Some(dir) if Path::new(name).is_relative() => dir.join(name),
            _ => Path::new(name).to_owned(),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{name:?} is neither a preset ({}) nor a readable rules file: {}: {e}",
                PRESETS.map(|(n, _)| n).join(", "),
                path.display()
            )
        })?;
        Rules::from_toml(name, &text, &path)
    }

    /// Compile the rules of `text`, named `path` in errors.
    pub fn from_toml(name: &str, text: &str, path: &Path) -> Result<Rules, String> {
        let file: File = toml::from_str(text).map_err(|e| located(text, path, &e).to_string())?;
        if file.rules.is_empty() {
            return Err(format!(
                "{}: no [[rule]]: every message would be skipped",
                path.display()
            ));
        }
        Ok(Rules {
            name: name.to_owned(),
            event: file.event,
            payload: file.payload,
            unmatched: file.unmatched.unwrap_or_else(|| "unmatched".to_owned()),
            rules: file.rules,
        })
    }

    /// Read one message: the event of the first rule that takes it, or the name it is
    /// skipped under; `Malformed` if a rule needs its JSON and it has none, or a field
    /// has the wrong type.
    pub fn apply(&self, message: &Message) -> Parsed {
        let outer = serde_json::from_str::<Value>(message.data);
        let inner = match (&outer, &self.payload) {
            (Ok(outer), Some(payload)) => match payload.get(outer) {
                Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(v) => Some(v),
                    Err(e) => return Parsed::Malformed(format!("payload is not JSON: {e}")),
                },
                _ => None,
            },
            _ => None,
        };
        let root: Result<&Value, String> = match (&inner, &outer) {
            (Some(inner), _) => Ok(inner),
            (None, Ok(outer)) => Ok(self
                .payload
                .as_ref()
                .and_then(|p| p.get(outer))
                .filter(|v| v.is_object() || v.is_array())
                .unwrap_or(outer)),
            (None, Err(e)) => Err(format!("not JSON: {e}")),
        };
        let name = message.event.or_else(|| {
            let outer = outer.as_ref().ok()?;
            self.event.as_ref()?.get(outer)?.as_str()
        });

        for rule in &self.rules {
            if let Some(events) = &rule.events {
                if !name.is_some_and(|n| events.iter().any(|e| e == n)) {
                    continue;
                }
            }
            // A rule that only looks at the event name never needs the data: a feed's
            // notices without JSON (Mastodon's `filters_changed`) can be skipped by name.
            if rule.when.0.is_empty() {
                if let Then::Skip(skip) = &rule.then {
                    return Parsed::Skipped(skip.name(name));
                }
            }
            let doc = match &root {
                Ok(doc) => *doc,
                Err(e) => return Parsed::Malformed(e.clone()),
            };
            if !rule.when.hold(doc) {
                continue;
            }
            match &rule.then {
                Then::Skip(skip) => return Parsed::Skipped(skip.name(name)),
                Then::Event(make) => match make.event(doc) {
                    Ok(Some(event)) => return Parsed::Event(event),
                    // A kind mapped from a value the map does not know: not this rule's.
                    Ok(None) => continue,
                    Err(e) => return Parsed::Malformed(e),
                },
            }
        }
        match root {
            Ok(_) => Parsed::Skipped(Cow::Owned(self.unmatched.clone())),
            Err(e) => Parsed::Malformed(e),
        }
    }
}

/// A rules file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    event: Option<Pointer>,
    payload: Option<Pointer>,
    unmatched: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
}

/// A JSON Pointer (RFC 6901), split into its reference tokens once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
struct Pointer(Vec<Token>);

#[derive(Debug, Clone, PartialEq)]
struct Token {
    key: String,
    /// The token as an array index, where it is one (no sign, no leading zero).
    index: Option<usize>,
}

impl TryFrom<String> for Pointer {
    type Error = String;

    fn try_from(text: String) -> Result<Pointer, String> {
        Pointer::parse(&text)
    }
}

impl Pointer {
    fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer(Vec::new()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must be empty or start with '/' (RFC 6901)"
            ));
        };
        rest.split('/')
            .map(|raw| {
                let mut key = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '~') {
                        (_, false) => key.push(c),
                        (_, true) => match chars.next() {
                            Some('0') => key.push('~'),
                            Some('1') => key.push('/'),
                            _ => {
                                return Err(format!(
                                    "{text:?} is not a JSON pointer: '~' must be followed by 0 or 1 (RFC 6901)"
                                ))
                            }
                        },
                    }
                }
                let index = match key.as_bytes() {
                    [b'0'] => Some(0),
                    [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
                        key.parse().ok()
                    }
                    _ => None,
                };
                Ok(Token { key, index })
            })
            .collect::<Result<_, _>>()
            .map(Pointer)
    }

    fn get<'v>(&self, mut value: &'v Value) -> Option<&'v Value> {
        for token in &self.0 {
            value = match value {
                Value::Object(map) => map.get(&token.key)?,
                Value::Array(items) => items.get(token.index?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// A scalar of the rules file, compared with JSON values.
#[derive(Debug, Clone)]
enum Literal {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Literal {
    fn from_toml(value: toml::Value) -> Result<Literal, String> {
        Ok(match value {
            toml::Value::String(s) => Literal::Text(s),
            toml::Value::Integer(i) => Literal::Int(i),
            toml::Value::Float(f) => Literal::Float(f),
            toml::Value::Boolean(b) => Literal::Bool(b),
            other => {
                return Err(format!(
                    "expected a string, number or boolean to compare with, found {}",
                    other.type_str()
                ))
            }
        })
    }

    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::Text(a), Value::String(b)) => a == b,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Int(a), Value::Number(b)) => match b.as_i64() {
                Some(b) => *a == b,
                None => b.as_f64() == Some(*a as f64),
            },
            (Literal::Float(a), Value::Number(b)) => b.as_f64() == Some(*a),
            _ => false,
        }
    }
}

/// What a condition asks of the value at its pointer.
#[derive(Debug)]
enum Test {
    OneOf(Vec<Literal>),
    NoneOf(Vec<Literal>),
    Exists(bool),
    Matches(Regex),
}

impl Test {
    fn from_toml(value: toml::Value) -> Result<Test, String> {
        let list = |value: toml::Value| match value {
            toml::Value::Array(items) => items.into_iter().map(Literal::from_toml).collect(),
            one => Literal::from_toml(one).map(|l| vec![l]),
        };
        match value {
            toml::Value::Table(table) => {
                let mut entries = table.into_iter();
                let (Some((key, value)), None) = (entries.next(), entries.next()) else {
                    return Err(
                        "a test table has exactly one of `exists`, `not`, `matches`".to_owned()
                    );
                };
                match key.as_str() {
                    "exists" => match value {
                        toml::Value::Boolean(b) => Ok(Test::Exists(b)),
                        other => Err(format!(
                            "`exists` takes true or false, not {}",
                            other.type_str()
                        )),
                    },
                    "not" => list(value).map(Test::NoneOf),
                    "matches" => match value {
                        toml::Value::String(pattern) => Regex::new(&pattern)
                            .map(Test::Matches)
                            .map_err(|e| format!("`matches`: {e}")),
                        other => Err(format!(
                            "`matches` takes a regex string, not {}",
                            other.type_str()
                        )),
                    },
                    other => Err(format!(
                        "unknown test `{other}`: expected `exists`, `not` or `matches`"
                    )),
                }
            }
            value => list(value).map(Test::OneOf),
        }
    }

    fn holds(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        match self {
            Test::OneOf(all) => value.is_some_and(|v| all.iter().any(|l| l.equals(v))),
            Test::NoneOf(all) => !value.is_some_and(|v| all.iter().any(|l| l.equals(v))),
            Test::Exists(wanted) => value.is_some() == *wanted,
            Test::Matches(re) => value
                .and_then(Value::as_str)
                .is_some_and(|s| re.is_match(s)),
        }
    }
}

/// Conditions that must all hold: a table of pointers to tests.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "toml::Table")]
struct Conditions(Vec<(Pointer, Test)>);

impl TryFrom<toml::Table> for Conditions {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<Conditions, String> {
        table
            .into_iter()
            .map(|(key, value)| Ok((Pointer::parse(&key)?, Test::from_toml(value)?)))
            .collect::<Result<_, String>>()
            .map(Conditions)
    }
}

impl Conditions {
    fn hold(&self, doc: &Value) -> bool {
        self.0.iter().all(|(p, test)| test.holds(p.get(doc)))
    }
}

/// A text with `{/pointer}` placeholders (`{{` and `}}` for braces).
#[derive(Debug)]
struct Template(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Text(String),
    Value(Pointer),
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut inside = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inside.push(c),
                            None => return Err(format!("{text:?}: '{{' without its '}}'")),
                        }
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Value(Pointer::parse(&inside)?));
                }
                '}' => return Err(format!("{text:?}: '}}' without its '{{' (write '}}}}')")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The text, or `None` if a placeholder's value is missing or null.
    fn render(&self, doc: &Value) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(p) => out.push_str(&scalar(p.get(doc)?)?),
            }
        }
        Some(out)
    }
}

/// A JSON value as text: strings as they are, numbers and booleans written out, other
/// values as compact JSON; `None` for null.
fn scalar(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// One way of making a text field.
#[derive(Debug)]
enum TextSource {
    Template(Template),
    /// The value at `path` looked up in `map`; `default` for other values.
    Map {
        path: Pointer,
        map: HashMap<String, String>,
        default: Option<Template>,
    },
}

impl TextSource {
    fn from_toml(value: toml::Value) -> Result<TextSource, String> {
        match value {
            toml::Value::String(s) => Template::parse(&s).map(TextSource::Template),
            toml::Value::Table(mut t) => {
                let path = take_pointer(&mut t, "path")?;
                let map = match t.remove("map") {
                    Some(toml::Value::Table(map)) => map
                        .into_iter()
                        .map(|(k, v)| match v {
                            toml::Value::String(s) => Ok((k, s)),
                            other => {
                                Err(format!("map values are strings, not {}", other.type_str()))
                            }
                        })
                        .collect::<Result<_, String>>()?,
                    _ => return Err("a mapped text needs `map`, a table of values to texts".into()),
                };
                let default = match t.remove("default") {
                    Some(toml::Value::String(s)) => Some(Template::parse(&s)?),
                    None => None,
                    Some(other) => {
                        return Err(format!("`default` is a text, not {}", other.type_str()))
                    }
                };
                no_more(t, "path, map, default")?;
                Ok(TextSource::Map { path, map, default })
            }
            other => Err(format!(
                "expected a text template or a {{ path, map, default }} table, found {}",
                other.type_str()
            )),
        }
    }

    fn render(&self, doc: &Value) -> Option<String> {
        match self {
            TextSource::Template(t) => t.render(doc),
            TextSource::Map { path, map, default } => {
                let key = scalar(path.get(doc)?)?;
                match map.get(key.as_ref()) {
                    Some(text) => Some(text.clone()),
                    None => default.as_ref()?.render(doc),
                }
            }
        }
    }
}

/// A text field: its ways, tried in order; the first that renders wins (else empty).
#[derive(Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
struct Text(Vec<TextSource>);

impl TryFrom<toml::Value> for Text {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Text, String> {
        match value {
            toml::Value::Array(all) => all.into_iter().map(TextSource::from_toml).collect(),
            one => TextSource::from_toml(one).map(|s| vec![s]),
        }
        .map(Text)
    }
}

impl Text {
    fn render(&self, doc: &Value) -> String {
        self.0
            .iter()
            .find_map(|s| s.render(doc))
            .unwrap_or_default()
    }
}

fn take_pointer(table: &mut toml::Table, key: &str) -> Result<Pointer, String> {
    match table.remove(key) {
        Some(toml::Value::String(s)) => Pointer::parse(&s),
        Some(other) => Err(format!(
            "`{key}` is a JSON pointer string, not {}",
            other.type_str()
        )),
        None => Err(format!("`{key}` is missing")),
    }
}

fn no_more(table: toml::Table, known: &str) -> Result<(), String> {
    match table.keys().next() {
        Some(key) => Err(format!("unknown key `{key}`, expected one of {known}")),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Addition,
    Removal,
    NewMember,
    /// An addition if the size is positive, else a removal (as wiki edits).
    BySize,
}

impl Kind {
    fn parse(text: &str) -> Result<Kind, String> {
        Ok(match text {
            "addition" => Kind::Addition,
            "removal" => Kind::Removal,
            "new_member" => Kind::NewMember,
            "by_size" => Kind::BySize,
            other => {
                return Err(format!(
                    "unknown kind {other:?}: expected addition, removal, new_member or by_size"
                ))
            }
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
enum KindRule {
    Fixed(Kind),
    Map {
        path: Pointer,
        map: HashMap<String, Kind>,
    },
}

impl TryFrom<toml::Value> for KindRule {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<KindRule, String> {
        match value {
            toml::Value::String(s) => Kind::parse(&s).map(KindRule::Fixed),
            toml::Value::Table(mut t) => {
                let path = take_pointer(&mut t, "path")?;
                let map = match t.remove("map") {
                    Some(toml::Value::Table(map)) => map
                        .into_iter()
                        .map(|(k, v)| match v {
                            toml::Value::String(s) => Ok((k, Kind::parse(&s)?)),
                            other => Err(format!("map values are kinds, not {}", other.type_str())),
                        })
                        .collect::<Result<_, String>>()?,
                    _ => return Err("a mapped kind needs `map`, a table of values to kinds".into()),
                };
                no_more(t, "path, map")?;
                Ok(KindRule::Map { path, map })
            }
            other => Err(format!(
                "expected a kind or a {{ path, map }} table, found {}",
                other.type_str()
            )),
        }
    }
}

#[derive(Debug)]
enum SizeFrom {
    Fixed(i64),
    Number(Pointer),
    Length(Pointer),
    Difference(Pointer, Pointer),
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
struct Size {
    from: SizeFrom,
    times: i64,
}

impl TryFrom<toml::Value> for Size {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Size, String> {
        let from = match value {
            toml::Value::Integer(n) => SizeFrom::Fixed(n),
            toml::Value::String(s) => SizeFrom::Number(Pointer::parse(&s)?),
            toml::Value::Table(mut t) => {
                let times = match t.remove("times") {
                    Some(toml::Value::Integer(n)) => n,
                    None => 1,
                    Some(other) => {
                        return Err(format!("`times` is an integer, not {}", other.type_str()))
                    }
                };
                let from = if t.contains_key("path") {
                    SizeFrom::Number(take_pointer(&mut t, "path")?)
                } else if t.contains_key("length") {
                    SizeFrom::Length(take_pointer(&mut t, "length")?)
                } else {
                    match t.remove("difference") {
                        Some(toml::Value::Array(pair)) if pair.len() == 2 => {
                            let mut p = pair.into_iter().map(|v| match v {
                                toml::Value::String(s) => Pointer::parse(&s),
                                other => Err(format!(
                                    "`difference` takes two pointers, not {}",
                                    other.type_str()
                                )),
                            });
                            let (Some(a), Some(b)) = (p.next(), p.next()) else {
                                return Err("`difference` takes two pointers".into());
                            };
                            SizeFrom::Difference(a?, b?)
                        }
                        _ => {
                            return Err(
                                "a size table needs `path`, `length` or `difference = [A, B]`"
                                    .into(),
                            )
                        }
                    }
                };
                no_more(t, "path, length, difference, times")?;
                return Ok(Size { from, times });
            }
            other => {
                return Err(format!(
                    "expected an integer, a pointer or a size table, found {}",
                    other.type_str()
                ))
            }
        };
        Ok(Size { from, times: 1 })
    }
}

impl Size {
    fn eval(&self, doc: &Value) -> Result<i64, String> {
        let n = match &self.from {
            SizeFrom::Fixed(n) => *n,
            SizeFrom::Number(p) => number(p, doc)?,
            SizeFrom::Length(p) => match p.get(doc) {
                None | Some(Value::Null) => 0,
                Some(Value::Array(a)) => len(a.len()),
                Some(Value::String(s)) => len(s.len()),
                Some(Value::Object(o)) => len(o.len()),
                Some(other) => return Err(format!("the length of a {}", json_type(other))),
            },
            // Numbers come from the wire: a forged pair must not overflow.
            SizeFrom::Difference(a, b) => number(a, doc)?.saturating_sub(number(b, doc)?),
        };
        Ok(n.saturating_mul(self.times))
    }
}

fn len(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The number at `p`: 0 when missing or null, an error for any other type.
fn number(p: &Pointer, doc: &Value) -> Result<i64, String> {
    match p.get(doc) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => Ok(n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates, and NaN cannot come out of JSON.
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64)),
        Some(other) => Err(format!("expected a number, found a {}", json_type(other))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
enum Flag {
    Fixed(bool),
    /// A boolean at this pointer (false when missing or null).
    At(Pointer),
    When(Conditions),
}

impl TryFrom<toml::Value> for Flag {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Flag, String> {
        match value {
            toml::Value::Boolean(b) => Ok(Flag::Fixed(b)),
            toml::Value::String(s) => Pointer::parse(&s).map(Flag::At),
            toml::Value::Table(t) => Conditions::try_from(t).map(Flag::When),
            other => Err(format!(
                "expected true/false, a pointer to a boolean, or conditions, found {}",
                other.type_str()
            )),
        }
    }
}

impl Flag {
    fn eval(&self, doc: &Value) -> Result<bool, String> {
        match self {
            Flag::Fixed(b) => Ok(*b),
            Flag::At(p) => match p.get(doc) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(format!("expected a boolean, found a {}", json_type(other))),
            },
            Flag::When(c) => Ok(c.hold(doc)),
        }
    }
}

#[derive(Debug)]
enum Skip {
    Named(String),
    /// Under the message's event name, which the rule's `event` list bounds.
    ByEvent,
}

impl Skip {
    fn name(&self, event: Option<&str>) -> Cow<'static, str> {
        match (self, event) {
            (Skip::Named(n), _) => Cow::Owned(n.clone()),
            (Skip::ByEvent, Some(e)) => Cow::Owned(e.to_owned()),
            (Skip::ByEvent, None) => Cow::Borrowed("unnamed"),
        }
    }
}

/// How a rule's fields make an event.
#[derive(Debug)]
struct Make {
    kind: KindRule,
    size: Option<Size>,
    title: Option<Text>,
    user: Option<Text>,
    url: Option<Text>,
    summary: Option<Text>,
    namespace: Option<Text>,
    source: Option<Text>,
    bot: Option<Flag>,
    anon: Option<Flag>,
    minor: Option<Flag>,
    new_page: Option<Flag>,
}

impl Make {
    fn event(&self, doc: &Value) -> Result<Option<Event>, String> {
        let kind = match &self.kind {
            KindRule::Fixed(k) => *k,
            KindRule::Map { path, map } => {
                match path
                    .get(doc)
                    .and_then(scalar)
                    .and_then(|k| map.get(k.as_ref()))
                {
                    Some(k) => *k,
                    None => return Ok(None),
                }
            }
        };
        let size = match &self.size {
            Some(s) => s.eval(doc).map_err(|e| format!("size: {e}"))?,
            None => 0,
        };
        let text = |t: &Option<Text>| t.as_ref().map(|t| t.render(doc)).unwrap_or_default();
        let flag = |name: &str, f: &Option<Flag>| match f {
            Some(f) => f.eval(doc).map_err(|e| format!("{name}: {e}")),
            None => Ok(false),
        };
        Ok(Some(Event {
            kind: match kind {
                Kind::Addition => EventKind::Addition,
                Kind::Removal => EventKind::Removal,
                Kind::NewMember => EventKind::NewMember,
                Kind::BySize => Event::kind_for_size(size),
            },
            size,
            title: text(&self.title),
            user: text(&self.user),
            is_bot: flag("bot", &self.bot)?,
            is_anon: flag("anon", &self.anon)?,
            is_minor: flag("minor", &self.minor)?,
            is_new_page: flag("new_page", &self.new_page)?,
            namespace: text(&self.namespace),
            url: text(&self.url),
            summary: text(&self.summary),
            source: text(&self.source),
        }))
    }
}

#[derive(Debug)]
enum Then {
    Skip(Skip),
    Event(Box<Make>),
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "RawRule")]
struct Rule {
    events: Option<Vec<String>>,
    when: Conditions,
    then: Then,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A `[[rule]]` as written, checked whole into a [`Rule`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    event: Option<OneOrMany>,
    #[serde(default)]
    when: Conditions,
    skip: Option<toml::Value>,
    kind: Option<KindRule>,
    size: Option<Size>,
    title: Option<Text>,
    user: Option<Text>,
    url: Option<Text>,
    summary: Option<Text>,
    namespace: Option<Text>,
    source: Option<Text>,
    bot: Option<Flag>,
    anon: Option<Flag>,
    minor: Option<Flag>,
    new_page: Option<Flag>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;

    fn try_from(r: RawRule) -> Result<Rule, String> {
        let events = r.event.map(|e| match e {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        });
        let fields = [
            r.size.is_some(),
            r.title.is_some(),
            r.user.is_some(),
            r.url.is_some(),
            r.summary.is_some(),
            r.namespace.is_some(),
            r.source.is_some(),
            r.bot.is_some(),
            r.anon.is_some(),
            r.minor.is_some(),
            r.new_page.is_some(),
        ];
        let then = match (r.skip, r.kind) {
            (Some(_), Some(_)) => return Err("a rule either skips or has a kind, not both".into()),
            (None, None) => return Err("a rule needs a `kind` (or `skip`)".into()),
            (Some(skip), None) => {
                if fields.iter().any(|&f| f) {
                    return Err("a rule that skips makes no event: it takes no fields".into());
                }
                Then::Skip(match skip {
                    toml::Value::String(name) => Skip::Named(name),
                    toml::Value::Boolean(true) if events.is_some() => Skip::ByEvent,
                    toml::Value::Boolean(true) => {
                        return Err(
                            "`skip = true` counts under the event name: it needs an `event` list"
                                .into(),
                        )
                    }
                    _ => return Err("`skip` is a name, or true for the event's name".into()),
                })
            }
            (None, Some(kind)) => Then::Event(Box::new(Make {
                kind,
                size: r.size,
                title: r.title,
                user: r.user,
                url: r.url,
                summary: r.summary,
                namespace: r.namespace,
                source: r.source,
                bot: r.bot,
                anon: r.anon,
                minor: r.minor,
                new_page: r.new_page,
            })),
        };
        Ok(Rule {
            events,
            when: r.when,
            then,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        match Rules::from_toml("test", text, Path::new("feed.toml")) {
            Ok(r) => r,
            Err(e) => panic!("rules do not load: {e}"),
        }
    }

    fn refusal(text: &str) -> String {
        match Rules::from_toml("test", text, Path::new("feed.toml")) {
            Ok(_) => panic!("rules load, but should not:\n{text}"),
            Err(e) => e,
        }
    }

    fn apply(r: &Rules, event: Option<&str>, data: &str) -> Parsed {
        r.apply(&Message { event, data })
    }

    fn kind_of(p: Parsed) -> Option<EventKind> {
        match p {
            Parsed::Event(e) => Some(e.kind),
            _ => None,
        }
    }

    fn skipped(name: &'static str) -> Parsed {
        Parsed::Skipped(Cow::Borrowed(name))
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let doc: Value = serde_json::json!({
            "a/b": 1, "m~n": 2, "list": [10, 11], "": 3, "01": 4, "o": {"0": 5}
        });
        let at = |p: &str| Pointer::parse(p).expect("valid").get(&doc).cloned();
        assert_eq!(at(""), Some(doc.clone()));
        assert_eq!(at("/a~1b"), Some(1.into()));
        assert_eq!(at("/m~0n"), Some(2.into()));
        assert_eq!(at("/list/1"), Some(11.into()));
        assert_eq!(at("/list/01"), None, "a leading zero is no index");
        assert_eq!(at("/list/2"), None);
        assert_eq!(at("/"), Some(3.into()));
        assert_eq!(at("/01"), Some(4.into()));
        assert_eq!(at("/o/0"), Some(5.into()), "an index-like key of an object");
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn conditions_test_values_lists_absence_and_patterns() {
        let r = rules(
            r#"
            [[rule]]
            when = { "/a" = "x", "/n" = 2, "/b" = true }
            kind = "addition"
            [[rule]]
            when = { "/a" = ["y", "z"] }
            kind = "removal"
            [[rule]]
            when = { "/a" = { not = ["w", "x", "y", "z"] }, "/gone" = { exists = false } }
            kind = "new_member"
            [[rule]]
            when = { "/a" = { matches = "^w+$" }, "/gone" = { exists = true } }
            kind = "removal"
            "#,
        );
        let k = |data: &str| kind_of(apply(&r, None, data));
        assert_eq!(k(r#"{"a":"x","n":2,"b":true}"#), Some(EventKind::Addition));
        assert_eq!(
            k(r#"{"a":"x","n":2.0,"b":true}"#),
            Some(EventKind::Addition)
        );
        assert_eq!(
            k(r#"{"a":"x","n":"2","b":true}"#),
            None,
            "a string is no number"
        );
        assert_eq!(k(r#"{"a":"x","n":2,"b":false}"#), None);
        assert_eq!(k(r#"{"a":"z"}"#), Some(EventKind::Removal));
        assert_eq!(k(r#"{"a":"q"}"#), Some(EventKind::NewMember));
        assert_eq!(k(r#"{"a":"q","gone":1}"#), None);
        assert_eq!(
            k(r#"{"a":"q","gone":null}"#),
            Some(EventKind::NewMember),
            "null is absent"
        );
        assert_eq!(k(r#"{"a":"www","gone":0}"#), Some(EventKind::Removal));
        assert_eq!(k(r#"{"a":"wwx","gone":0}"#), None);
    }

    #[test]
    fn the_first_rule_that_matches_decides() {
        let r = rules(
            r#"
            [[rule]]
            when = { "/t" = "a" }
            kind = "removal"
            [[rule]]
            kind = "addition"
            [[rule]]
            when = { "/t" = "a" }
            kind = "new_member"
            "#,
        );
        assert_eq!(
            kind_of(apply(&r, None, r#"{"t":"a"}"#)),
            Some(EventKind::Removal)
        );
        assert_eq!(
            kind_of(apply(&r, None, r#"{"t":"b"}"#)),
            Some(EventKind::Addition)
        );
    }

    #[test]
    fn event_names_come_from_the_transport_or_from_the_message() {
        let r = rules(
            r#"
            event = "/event"
            [[rule]]
            event = ["push", "create"]
            kind = "addition"
            [[rule]]
            event = "gone"
            skip = true
            "#,
        );
        assert_eq!(
            kind_of(apply(&r, Some("push"), "{}")),
            Some(EventKind::Addition)
        );
        assert_eq!(
            kind_of(apply(&r, None, r#"{"event":"create"}"#)),
            Some(EventKind::Addition)
        );
        // The transport's name wins over the message's.
        assert_eq!(
            apply(&r, Some("gone"), r#"{"event":"push"}"#),
            skipped("gone")
        );
        assert_eq!(
            apply(&r, None, r#"{"event":"other"}"#),
            skipped("unmatched")
        );
        assert_eq!(apply(&r, None, "{}"), skipped("unmatched"));
    }

    #[test]
    fn a_json_string_payload_is_parsed_a_second_time() {
        let r = rules(
            r#"
            event = "/event"
            payload = "/payload"
            [[rule]]
            event = "update"
            when = { "/kind" = "status" }
            kind = "addition"
            size = { length = "/content" }
            title = "{/id}"
            "#,
        );
        let frame = r#"{"event":"update","payload":"{\"kind\":\"status\",\"id\":7,\"content\":\"hello\"}"}"#;
        let Parsed::Event(e) = apply(&r, None, frame) else {
            panic!("the payload's fields make an event")
        };
        assert_eq!((e.size, e.title.as_str()), (5, "7"));
        // A payload already an object is read as it is.
        let frame = r#"{"event":"update","payload":{"kind":"status","id":8,"content":"hi"}}"#;
        assert_eq!(kind_of(apply(&r, None, frame)), Some(EventKind::Addition));
        let frame = r#"{"event":"update","payload":"{not json"}"#;
        assert!(matches!(apply(&r, None, frame), Parsed::Malformed(_)));
    }

    #[test]
    fn data_that_is_not_json_is_malformed_unless_skipped_by_name_alone() {
        let r = rules(
            r#"
            [[rule]]
            event = "filters_changed"
            skip = true
            [[rule]]
            event = "update"
            kind = "addition"
            "#,
        );
        assert_eq!(
            apply(&r, Some("filters_changed"), "undefined"),
            skipped("filters_changed")
        );
        assert!(matches!(
            apply(&r, Some("update"), "undefined"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(
            apply(&r, Some("other"), "undefined"),
            Parsed::Malformed(_)
        ));
        assert_eq!(apply(&r, Some("other"), "1"), skipped("unmatched"));
    }

    #[test]
    fn sizes_numbers_lengths_and_differences() {
        let r = rules(
            r#"
            [[rule]]
            when = { "/how" = "n" }
            kind = "by_size"
            size = "/n"
            [[rule]]
            when = { "/how" = "len" }
            kind = "addition"
            size = { length = "/v", times = 100 }
            [[rule]]
            when = { "/how" = "diff" }
            kind = "by_size"
            size = { difference = ["/new", "/old"] }
            "#,
        );
        let size = |data: &str| match apply(&r, None, data) {
            Parsed::Event(e) => Ok((e.kind, e.size)),
            // Whether it was refused as malformed.
            other => Err(matches!(other, Parsed::Malformed(_))),
        };
        assert_eq!(size(r#"{"how":"n","n":-5}"#), Ok((EventKind::Removal, -5)));
        assert_eq!(size(r#"{"how":"n","n":null}"#), Ok((EventKind::Removal, 0)));
        assert_eq!(
            size(r#"{"how":"n","n":1e300}"#),
            Ok((EventKind::Addition, i64::MAX))
        );
        assert!(matches!(size(r#"{"how":"n","n":"big"}"#), Err(true)));
        assert_eq!(
            size(r#"{"how":"len","v":[1,2,3]}"#),
            Ok((EventKind::Addition, 300))
        );
        assert_eq!(
            size(r#"{"how":"len","v":"héllo"}"#),
            Ok((EventKind::Addition, 600))
        );
        assert_eq!(size(r#"{"how":"len"}"#), Ok((EventKind::Addition, 0)));
        assert!(matches!(size(r#"{"how":"len","v":true}"#), Err(true)));
        assert_eq!(
            size(r#"{"how":"diff","new":130,"old":100}"#),
            Ok((EventKind::Addition, 30))
        );
        let extreme = r#"{"how":"diff","new":9223372036854775807,"old":-1}"#;
        assert_eq!(size(extreme), Ok((EventKind::Addition, i64::MAX)));
    }

    #[test]
    fn texts_templates_alternatives_and_maps() {
        let r = rules(
            r#"
            [[rule]]
            kind = "addition"
            title = ["{/repo} {/ref}", "{/repo}", "untitled"]
            user = "{{{/user}}}"
            namespace = [{ path = "/ns", map = { "0" = "Main", "1" = "Talk" }, default = "Namespace {/ns}" }, "Main"]
            url = "{/missing}"
            "#,
        );
        let get = |data: &str| match apply(&r, None, data) {
            Parsed::Event(e) => (e.title, e.user, e.namespace, e.url),
            other => panic!("{other:?}"),
        };
        let e = get(r#"{"repo":"a/b","ref":"main","user":"ada","ns":1}"#);
        assert_eq!(
            e,
            (
                "a/b main".into(),
                "{ada}".into(),
                "Talk".into(),
                String::new()
            )
        );
        let e = get(r#"{"repo":"a/b","ref":null,"ns":7}"#);
        assert_eq!((e.0.as_str(), e.2.as_str()), ("a/b", "Namespace 7"));
        let e = get(r#"{"ns":0}"#);
        assert_eq!((e.0.as_str(), e.2.as_str()), ("untitled", "Main"));
        assert_eq!(get("{}").2, "Main");
    }

    #[test]
    fn kinds_mapped_from_a_field_fall_through_on_unknown_values() {
        let r = rules(
            r#"
            unmatched = "no kind"
            [[rule]]
            kind = { path = "/action", map = { created = "addition", deleted = "removal" } }
            "#,
        );
        assert_eq!(
            kind_of(apply(&r, None, r#"{"action":"deleted"}"#)),
            Some(EventKind::Removal)
        );
        assert_eq!(
            apply(&r, None, r#"{"action":"renamed"}"#),
            skipped("no kind")
        );
    }

    #[test]
    fn flags_from_booleans_and_conditions() {
        let r = rules(
            r#"
            [[rule]]
            kind = "addition"
            bot = "/bot"
            anon = { "/user" = { matches = '^\d+\.\d+\.\d+\.\d+$' } }
            minor = true
            "#,
        );
        let Parsed::Event(e) = apply(&r, None, r#"{"bot":true,"user":"192.0.2.1"}"#) else {
            panic!("an event")
        };
        assert!(e.is_bot && e.is_anon && e.is_minor && !e.is_new_page);
        let Parsed::Event(e) = apply(&r, None, r#"{"user":"Ada"}"#) else {
            panic!("an event")
        };
        assert!(!e.is_bot && !e.is_anon);
        assert!(matches!(
            apply(&r, None, r#"{"bot":"yes"}"#),
            Parsed::Malformed(_)
        ));
    }

    #[test]
    fn loading_errors_name_the_file_and_line() {
        let cases = [
            (
                "[[rule]]\nkind = \"addition\"\ncolour = \"red\"\n",
                3,
                "colour",
            ),
            (
                "[[rule]]\nkind = \"addition\"\ntitle = \"{x}\"\n",
                3,
                "JSON pointer",
            ),
            (
                "[[rule]]\nkind = \"addition\"\nwhen = { \"type\" = \"x\" }\n",
                3,
                "JSON pointer",
            ),
            ("event = 3\n[[rule]]\nkind = \"addition\"\n", 1, "string"),
            (
                "[[rule]]\nkind = \"addition\"\nsize = true\n",
                3,
                "found boolean",
            ),
            ("[[rule]]\nkind = \"growth\"\n", 2, "unknown kind"),
            (
                "[[rule]]\nwhen = { \"/a\" = { matches = \"(\" } }\nkind = \"addition\"\n",
                2,
                "matches",
            ),
            (
                "\n[[rule]]\nkind = \"addition\"\nskip = \"x\"\n",
                2,
                "not both",
            ),
            ("[[rule]]\nskip = true\n", 1, "event"),
        ];
        for (text, line, words) in cases {
            let e = refusal(text);
            assert!(
                e.starts_with(&format!("feed.toml:{line}:")),
                "{e}\n--\n{text}"
            );
            assert!(e.contains(words), "{e} (wanted {words:?})");
        }
        assert!(refusal("unmatched = \"x\"\n").contains("no [[rule]]"));
    }

    #[test]
    fn named_loads_presets_and_files_relative_to_a_directory() {
        assert_eq!(
            Rules::named("mastodon", None).map(|r| r.name().to_owned()),
            Ok("mastodon".into())
        );
        let dir = std::env::temp_dir().join(format!("carillon-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("feed.toml"), "[[rule]]\nkind = \"addition\"\n").expect("written");
        let r = Rules::named("feed.toml", Some(&dir));
        std::fs::write(dir.join("bad.toml"), "[[rule]]\nkind = 1\n").expect("written");
        let bad = Rules::named("bad.toml", Some(&dir)).map(|_| ());
        let missing = Rules::named("nowhere.toml", Some(&dir)).map(|_| ());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            kind_of(r.expect("loads").apply(&Message::text("{}"))),
            Some(EventKind::Addition)
        );
        let bad = bad.expect_err("refused");
        assert!(bad.contains("bad.toml:2:"), "{bad}");
        assert!(missing.expect_err("refused").contains("neither a preset"));
    }
}
