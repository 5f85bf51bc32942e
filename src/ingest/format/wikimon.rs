//! The wikimon message format: the websocket feed behind Listen to Wikipedia, one JSON
//! object per frame, in its IRC-era and its EventStreams-era forms.

use serde::Deserialize;

use super::ParseError;
use crate::event::{Event, EventKind};

/// Titles of the new-user log in wikimon messages.
const NEW_USERS: &str = "Special:Log/newusers";

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
}
