//! The Wikimedia EventStreams recentchange format: one JSON object per event, as the
//! `data:` of Server-Sent Events or as NDJSON lines.

use serde::Deserialize;

use super::ParseError;
use crate::event::{Event, EventKind};

/// Log actions that create an account, in EventStreams' `log_action`.
const ACCOUNT_CREATIONS: [&str; 4] = ["create", "create2", "byemail", "autocreate"];

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

/// Classify one recentchange event: what can sound, and what is skipped by name.
pub fn classify(text: &str) -> super::Parsed {
    super::Parsed::from_result(parse_recentchange(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::format::parse_any;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

    fn corpus(path: &str) -> String {
        let full = format!("{CORPUS}/{path}");
        std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("cannot read the shared corpus file {full}: {e}"))
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
