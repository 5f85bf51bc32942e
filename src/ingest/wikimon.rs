//! The wikimon message format (the websocket feed behind Listen to Wikipedia), and the
//! EventStreams recentchange format that replay files may also hold.

use serde::Deserialize;
use thiserror::Error;

use crate::event::{Event, EventKind};

#[derive(Debug, Error, PartialEq)]
pub enum ParseError {
    #[error("not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("not a wikimon message: no page_title")]
    NotWikimon,
    #[error("EventStreams canary event")]
    Canary,
}

/// Titles of the new-user log in wikimon messages.
const NEW_USERS: &str = "Special:Log/newusers";
/// Log actions that create an account, in EventStreams' `log_action`.
const ACCOUNT_CREATIONS: [&str; 4] = ["create", "create2", "byemail", "autocreate"];

#[derive(Deserialize)]
struct Wikimon {
    change_size: Option<i64>,
    page_title: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    is_anon: Option<bool>,
    #[serde(default)]
    is_bot: Option<bool>,
    #[serde(default)]
    is_minor: Option<bool>,
    #[serde(default)]
    is_new: Option<bool>,
    #[serde(default)]
    ns: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

/// Parse one wikimon websocket message.
pub fn parse_wikimon(text: &str) -> Result<Event, ParseError> {
    let m: Wikimon = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    from_wikimon(m)
}

fn from_wikimon(m: Wikimon) -> Result<Event, ParseError> {
    let title = m.page_title.ok_or(ParseError::NotWikimon)?;
    let size = m.change_size.unwrap_or(0);
    // New accounts are keyed on the title, which both of wikimon's formats share: the
    // IRC-era one names the log action (`create`, `autocreate`…), the EventStreams-era
    // one says `newusers` and moves the action to `url`.
    let kind = if title == NEW_USERS {
        EventKind::NewMember
    } else if title.starts_with("Special:") {
        EventKind::Other
    } else {
        Event::kind_for_size(size)
    };
    Ok(Event {
        kind,
        size,
        title,
        user: m.user.unwrap_or_default(),
        is_bot: m.is_bot.unwrap_or(false),
        is_anon: m.is_anon.unwrap_or(false),
        is_minor: m.is_minor.unwrap_or(false),
        is_new_page: m.is_new.unwrap_or(false),
        namespace: m.ns.unwrap_or_default(),
        url: m.url.unwrap_or_default(),
        summary: m.summary.unwrap_or_default(),
        source: String::new(),
    })
}

#[derive(Deserialize)]
struct Length {
    old: Option<i64>,
    new: Option<i64>,
}

#[derive(Deserialize)]
struct Meta {
    domain: Option<String>,
}

#[derive(Deserialize)]
struct RecentChange {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    #[serde(default)]
    namespace: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    bot: Option<bool>,
    #[serde(default)]
    minor: Option<bool>,
    #[serde(default)]
    length: Option<Length>,
    #[serde(default)]
    log_type: Option<String>,
    #[serde(default)]
    log_action: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    notify_url: Option<String>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
}

/// Namespace numbers to the names wikimon uses, for the ones filters care about.
fn namespace_name(ns: i64) -> String {
    match ns {
        0 => "Main".into(),
        1 => "Talk".into(),
        2 => "User".into(),
        3 => "User talk".into(),
        4 => "Wikipedia".into(),
        6 => "File".into(),
        10 => "Template".into(),
        14 => "Category".into(),
        -1 => "Special".into(),
        n => format!("Namespace {n}"),
    }
}

/// Parse one EventStreams recentchange event (JSON).
pub fn parse_recentchange(text: &str) -> Result<Event, ParseError> {
    let rc: RecentChange =
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    if rc
        .meta
        .as_ref()
        .and_then(|m| m.domain.as_deref())
        .is_some_and(|d| d == "canary")
    {
        return Err(ParseError::Canary);
    }
    let size = rc
        .length
        .as_ref()
        // Lengths come from the wire: a forged pair must not overflow the subtraction.
        .map(|l| l.new.unwrap_or(0).saturating_sub(l.old.unwrap_or(0)))
        .unwrap_or(0);
    let kind = match rc.kind.as_str() {
        "edit" | "new" => Event::kind_for_size(size),
        "log"
            if rc.log_type.as_deref() == Some("newusers")
                && rc
                    .log_action
                    .as_deref()
                    .is_some_and(|a| ACCOUNT_CREATIONS.contains(&a)) =>
        {
            EventKind::NewMember
        }
        _ => EventKind::Other,
    };
    Ok(Event {
        kind,
        size,
        title: rc.title,
        user: rc.user.unwrap_or_default(),
        is_bot: rc.bot.unwrap_or(false),
        is_anon: false,
        is_minor: rc.minor.unwrap_or(false),
        is_new_page: rc.kind == "new",
        namespace: namespace_name(rc.namespace.unwrap_or(0)),
        url: rc.notify_url.unwrap_or_default(),
        summary: rc.comment.unwrap_or_default(),
        source: rc.server_name.unwrap_or_default(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

    fn corpus(path: &str) -> String {
        let full = format!("{CORPUS}/{path}");
        std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("cannot read the shared corpus file {full}: {e}"))
    }

    #[test]
    fn parses_every_new_user_action_of_the_corpus() {
        let text = corpus("wikimedia/wikimon_newuser_examples.jsonl");
        let kinds: Vec<EventKind> = text
            .lines()
            .map(|l| parse_wikimon(l).expect("corpus line parses").kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::NewMember,
                EventKind::NewMember,
                EventKind::NewMember,
                EventKind::NewMember,
                EventKind::Removal,
                EventKind::Addition,
                EventKind::Removal
            ]
        );
    }

    #[test]
    fn parses_the_whole_recorded_stream() {
        let text = corpus("wikimon/wikiticker-all-0600-1h.jsonl");
        let events: Vec<Event> = text
            .lines()
            .map(|l| parse_wikimon(l).expect("corpus line parses"))
            .collect();
        assert_eq!(events.len(), 2191);
        let new_members = events
            .iter()
            .filter(|e| e.kind == EventKind::NewMember)
            .count();
        assert_eq!(new_members, 71);
        assert_eq!(events[0].size, 30);
        assert_eq!(events[0].title, "Chamaepetes unicolor");
        assert!(events[0].is_bot);
    }

    #[test]
    fn new_members_are_keyed_on_the_page_title_in_both_of_wikimons_formats() {
        // The relay's EventStreams-era message for a new account, as sent today.
        let today = r#"{"action": "newusers", "change_size": 0, "ns": "Special", "page_title": "Special:Log/newusers", "url": "create", "user": "Newcomer"}"#;
        let irc_era = r#"{"action": "create", "change_size": null, "ns": "Special", "page_title": "Special:Log/newusers", "user": "Newcomer"}"#;
        for line in [today, irc_era] {
            let e = parse_wikimon(line).expect("parses");
            assert_eq!(
                (e.kind, e.user.as_str()),
                (EventKind::NewMember, "Newcomer"),
                "{line}"
            );
        }
        let other_log = r#"{"action": "delete", "change_size": null, "ns": "Special", "page_title": "Special:Log/delete"}"#;
        assert_eq!(
            parse_wikimon(other_log).expect("parses").kind,
            EventKind::Other
        );
    }

    #[test]
    fn null_change_size_is_zero() {
        let e =
            parse_wikimon(r#"{"action":"edit","change_size":null,"page_title":"A","ns":"Main"}"#)
                .unwrap();
        assert_eq!((e.kind, e.size), (EventKind::Removal, 0));
    }

    #[test]
    fn wrong_types_and_junk_are_errors() {
        assert!(parse_wikimon(r#"{"page_title":"A","change_size":"big"}"#).is_err());
        assert!(parse_wikimon(r#"{"page_title":42}"#).is_err());
        assert!(parse_wikimon("{not json").is_err());
        assert!(parse_wikimon("[1,2,3]").is_err());
        assert_eq!(parse_wikimon("{}"), Err(ParseError::NotWikimon));
    }

    #[test]
    fn a_recentchange_mentioning_page_title_is_still_a_recentchange() {
        let line = r#"{"type":"edit","title":"A","comment":"renamed \"page_title\"","length":{"old":10,"new":4}}"#;
        let e = parse_any(line).unwrap();
        assert_eq!(
            (e.kind, e.size, e.title.as_str()),
            (EventKind::Removal, -6, "A")
        );
    }

    #[test]
    fn lengths_at_the_ends_of_i64_saturate() {
        let line = r#"{"type":"edit","title":"A","length":{"old":-1,"new":9223372036854775807}}"#;
        assert_eq!(parse_recentchange(line).unwrap().size, i64::MAX);
        let line = r#"{"type":"edit","title":"A","length":{"old":1,"new":-9223372036854775808}}"#;
        assert_eq!(parse_recentchange(line).unwrap().size, i64::MIN);
    }

    #[test]
    fn parses_eventstreams_recentchange() {
        let text = corpus("wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson");
        let events: Vec<Event> = text
            .lines()
            .map(|l| parse_any(l).expect("corpus line parses"))
            .collect();
        assert_eq!(events.len(), 100);
        assert!(events.iter().any(|e| e.kind == EventKind::Addition));
        assert!(events.iter().any(|e| e.kind == EventKind::Removal));
    }
}
