//! The Wikimedia EventStreams recentchange format: one JSON object per event, as the
//! `data:` of Server-Sent Events or as NDJSON lines. Edits and new pages sound by
//! their change in size, account creations as newcomers; categorizations, other log
//! entries, canaries and any other type are understood and skipped by name.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

use super::{ParseError, Parsed};
use crate::event::{Event, EventKind};

#[derive(Deserialize)]
struct Length {
    old: Option<i64>,
    new: Option<i64>,
}

#[derive(Deserialize)]
struct Meta {
    domain: Option<String>,
    uri: Option<String>,
}

// Every field optional, so that a canary is recognized whatever else it lacks.
#[derive(Deserialize)]
struct RecentChange {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
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
    comment: Option<String>,
    #[serde(default)]
    notify_url: Option<String>,
    #[serde(default)]
    wiki: Option<String>,
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

/// Parse one EventStreams recentchange event (JSON). A kind that never sounds comes
/// back as an `Other` event, a canary as `ParseError::Canary`: the same reading as
/// [`classify`], for callers that want a `Result`.
pub fn parse_recentchange(text: &str) -> Result<Event, ParseError> {
    read(text).map(|(event, _)| event)
}

/// Classify one recentchange event: what can sound, and what is skipped by name.
pub fn classify(text: &str) -> Parsed {
    classify_for(text, &[])
}

/// Classify one recentchange event of the wikis listed (`enwiki`…; every wiki when the
/// list is empty): an event of any other wiki, whatever its kind, is skipped as
/// `other_wiki`. EventStreams has no filter of its own: every wiki's events arrive.
pub fn classify_for(text: &str, wikis: &[String]) -> Parsed {
    match read(text) {
        Ok((event, _)) if !wikis.is_empty() && !wikis.contains(&event.source) => {
            Parsed::Skipped(Cow::Borrowed("other_wiki"))
        }
        Ok((event, None)) => Parsed::Event(event),
        Ok((_, Some(skipped))) => Parsed::Skipped(skipped),
        Err(ParseError::Canary) => Parsed::Skipped(Cow::Borrowed("canary")),
        Err(e) => Parsed::Malformed(e.to_string()),
    }
}

/// The event, and the name it is skipped under when it never sounds (its kind is
/// then `Other`).
fn read(text: &str) -> Result<(Event, Option<Cow<'static, str>>), ParseError> {
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
    let Some(kind_name) = rc.kind else {
        return Err(ParseError::Json("no type".into()));
    };
    let Some(title) = rc.title else {
        return Err(ParseError::Json("no title".into()));
    };
    let is_new_page = kind_name == "new";
    let size = match &rc.length {
        // A new page has no old length; any the wire claims is not subtracted.
        Some(l) if is_new_page => l.new.unwrap_or(0),
        // Lengths come from the wire: a forged pair must not overflow the subtraction.
        Some(l) => l.new.unwrap_or(0).saturating_sub(l.old.unwrap_or(0)),
        None => 0,
    };
    let (kind, skipped) = match kind_name.as_str() {
        "edit" | "new" => (Event::kind_for_size(size), None),
        // Every newusers action is an account arriving (create, create2, byemail,
        // autocreate…), whichever the wiki logs.
        "log" if rc.log_type.as_deref() == Some("newusers") => (EventKind::NewMember, None),
        "log" => (EventKind::Other, Some(Cow::Borrowed("log"))),
        "categorize" => (EventKind::Other, Some(Cow::Borrowed("categorize"))),
        other => (EventKind::Other, Some(skipped_type(other))),
    };
    let user = rc.user.unwrap_or_default();
    let url = rc
        .notify_url
        .or_else(|| rc.meta.and_then(|m| m.uri))
        .unwrap_or_default();
    let event = Event {
        kind,
        size,
        title,
        is_anon: user.parse::<IpAddr>().is_ok(),
        user,
        is_bot: rc.bot.unwrap_or(false),
        is_minor: rc.minor.unwrap_or(false),
        is_new_page,
        namespace: namespace_name(rc.namespace.unwrap_or(0)),
        url,
        summary: rc.comment.unwrap_or_default(),
        // `wiki`, never `server_name`: account creations all come from
        // auth.wikimedia.org, whichever wiki the account was made on.
        source: rc.wiki.unwrap_or_default(),
    };
    Ok((event, skipped))
}

/// The name an unknown type is counted under: the type itself when it looks like one,
/// so that a feed's new kinds show in the summary, else "other" (the names are kept
/// for the whole run, so a sender must not be able to mint long or odd ones).
fn skipped_type(name: &str) -> Cow<'static, str> {
    match name {
        "external" => Cow::Borrowed("external"),
        _ if !name.is_empty()
            && name.len() <= 24
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
            }) =>
        {
            Cow::Owned(name.to_owned())
        }
        _ => Cow::Borrowed("other"),
    }
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

    /// What a file's lines came to: events by kind, skipped by name, malformed, and
    /// anonymous editors among the events.
    #[derive(Debug, Default, PartialEq)]
    struct Tally {
        additions: usize,
        removals: usize,
        new_members: usize,
        skipped: std::collections::BTreeMap<String, usize>,
        malformed: usize,
        anon: usize,
    }

    fn tally<'a>(lines: impl IntoIterator<Item = &'a str>) -> (Tally, Vec<Event>) {
        let mut t = Tally::default();
        let mut events = Vec::new();
        for line in lines {
            match classify(line) {
                Parsed::Event(e) => {
                    match e.kind {
                        EventKind::Addition => t.additions += 1,
                        EventKind::Removal => t.removals += 1,
                        EventKind::NewMember => t.new_members += 1,
                        EventKind::Other => panic!("an Other event was not skipped: {line}"),
                    }
                    t.anon += usize::from(e.is_anon);
                    events.push(e);
                }
                Parsed::Skipped(kind) => *t.skipped.entry(kind.into_owned()).or_default() += 1,
                Parsed::Malformed(_) => t.malformed += 1,
            }
        }
        (t, events)
    }

    fn skipped(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    /// The fixture file's events, one JSON text each.
    fn fixtures() -> Vec<String> {
        let text = corpus("wikimedia/wikimon_test_fixtures.json");
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        all.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn todays_fixtures_sound_edits_new_pages_and_accounts_and_skip_the_rest_by_name() {
        let lines = fixtures();
        let (t, events) = tally(lines.iter().map(String::as_str));
        assert_eq!(
            t,
            Tally {
                additions: 5,
                skipped: skipped(&[("categorize", 2), ("log", 2)]),
                new_members: 2,
                ..Tally::default()
            }
        );
        let new_pages: Vec<i64> = events
            .iter()
            .filter(|e| e.is_new_page)
            .map(|e| e.size)
            .collect();
        assert_eq!(new_pages, [22, 78153]);
        let accounts: Vec<(&str, &str, &str)> = events
            .iter()
            .filter(|e| e.kind == EventKind::NewMember)
            .map(|e| (e.user.as_str(), e.source.as_str(), e.url.as_str()))
            .collect();
        assert_eq!(
            accounts,
            [
                (
                    "ChristianKaenick",
                    "enwiki",
                    "https://auth.wikimedia.org/enwiki/wiki/User:ChristianKaenick"
                ),
                (
                    "Reflie Mokalu",
                    "enwiki",
                    "https://auth.wikimedia.org/enwiki/wiki/User:Reflie_Mokalu"
                ),
            ]
        );
        let first = &events[0];
        assert_eq!(
            (
                first.size,
                first.source.as_str(),
                first.namespace.as_str(),
                first.is_bot
            ),
            (353, "commonswiki", "File", true)
        );
        assert_eq!(
            first.url,
            "https://commons.wikimedia.org/w/index.php?diff=1195211658&oldid=583587054&rcid=3271487124"
        );
    }

    #[test]
    fn an_enwiki_sample_is_seventy_additions_thirty_removals_with_25_anonymous() {
        let text = corpus("wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson");
        let (t, events) = tally(text.lines());
        assert_eq!(
            t,
            Tally {
                additions: 70,
                removals: 30,
                anon: 25,
                ..Tally::default()
            }
        );
        assert!(events.iter().all(|e| e.source == "enwiki"));
        assert!(events.iter().all(|e| e.url.contains("diff=")));
        // IPv6 editors are written in capitals on the wikis.
        assert!(events
            .iter()
            .any(|e| e.is_anon && e.user == "2600:8801:8A00:980:8549:C495:5501:6623"));
    }

    #[test]
    fn wikidata_batches_in_the_2018_format_read_as_their_counts() {
        let cases = [
            ("editgroups_one_qs_batch.jsonl", 3735, 61, 22, 13),
            ("editgroups_qs_batch_with_new_items.jsonl", 82, 0, 0, 0),
            ("editgroups_qs_batch_with_reverts.jsonl", 1758, 26, 5, 4),
        ];
        for (file, additions, removals, logs, anon) in cases {
            let text = corpus(&format!("wikidata/{file}"));
            let (t, events) = tally(text.lines());
            let logs = if logs > 0 {
                skipped(&[("log", logs)])
            } else {
                skipped(&[])
            };
            assert_eq!(
                t,
                Tally {
                    additions,
                    removals,
                    skipped: logs,
                    anon,
                    ..Tally::default()
                },
                "{file}"
            );
            assert!(events.iter().all(|e| e.source == "wikidatawiki"), "{file}");
        }
    }

    #[test]
    fn canaries_and_unknown_types_are_skipped_by_name() {
        let lines = fixtures();
        let mut canary: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        canary["meta"]["domain"] = "canary".into();
        let canary = canary.to_string();
        assert_eq!(classify(&canary), Parsed::Skipped(Cow::Borrowed("canary")));
        assert_eq!(parse_recentchange(&canary), Err(ParseError::Canary));

        let mut external: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        external["type"] = "external".into();
        assert_eq!(
            classify(&external.to_string()),
            Parsed::Skipped(Cow::Borrowed("external"))
        );
        external["type"] = "flow".into();
        assert_eq!(
            classify(&external.to_string()),
            Parsed::Skipped(Cow::Borrowed("flow"))
        );
        external["type"] = "A very long type name, with spaces and more".into();
        assert_eq!(
            classify(&external.to_string()),
            Parsed::Skipped(Cow::Borrowed("other"))
        );
        // A canary needs nothing but its domain to be known for one.
        assert_eq!(
            classify(r#"{"meta":{"domain":"canary"}}"#),
            Parsed::Skipped(Cow::Borrowed("canary"))
        );
        for broken in ["{}", r#"{"type":"edit"}"#, "[1]", "not json"] {
            assert!(matches!(classify(broken), Parsed::Malformed(_)), "{broken}");
        }
    }

    #[test]
    fn only_the_wikis_listed_sound_and_the_rest_are_skipped_as_other_wiki() {
        let lines = fixtures();
        let wikis = ["enwiki".to_owned(), "commonswiki".to_owned()];
        let mut sources = Vec::new();
        let mut skipped_kinds = std::collections::BTreeMap::<String, usize>::new();
        for line in &lines {
            match classify_for(line, &wikis) {
                Parsed::Event(e) => sources.push(e.source),
                Parsed::Skipped(k) => *skipped_kinds.entry(k.into_owned()).or_default() += 1,
                Parsed::Malformed(why) => panic!("{why}: {line}"),
            }
        }
        assert_eq!(sources, ["commonswiki", "commonswiki", "enwiki", "enwiki"]);
        assert_eq!(
            skipped_kinds,
            skipped(&[("categorize", 1), ("other_wiki", 6)])
        );
        // An empty list is every wiki.
        for line in &lines {
            assert_eq!(classify_for(line, &[]), classify(line));
        }
    }

    #[test]
    fn every_newusers_action_is_a_new_member() {
        for action in [
            "create",
            "create2",
            "byemail",
            "autocreate",
            "forcecreatelocal",
        ] {
            let line = format!(
                r#"{{"type":"log","title":"User:A","user":"A","log_type":"newusers","log_action":"{action}","wiki":"frwiki"}}"#
            );
            let e = parse_recentchange(&line).unwrap();
            assert_eq!(
                (e.kind, e.source.as_str()),
                (EventKind::NewMember, "frwiki")
            );
        }
    }

    #[test]
    fn parse_recentchange_agrees_with_classify_on_the_whole_corpus() {
        let mut lines = fixtures();
        for file in [
            "wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson",
            "wikidata/editgroups_one_qs_batch.jsonl",
        ] {
            lines.extend(corpus(file).lines().map(str::to_owned));
        }
        for line in &lines {
            match (classify(line), parse_recentchange(line)) {
                (Parsed::Event(a), Ok(b)) => assert_eq!(a, b),
                (Parsed::Skipped(_), Ok(b)) => assert_eq!(b.kind, EventKind::Other),
                (c, p) => panic!("classify {c:?} but parse_recentchange {p:?}: {line}"),
            }
        }
    }

    #[test]
    fn a_new_page_is_its_new_length_even_if_an_old_one_is_given() {
        let line = r#"{"type":"new","title":"A","length":{"old":500,"new":20}}"#;
        let e = parse_recentchange(line).unwrap();
        assert_eq!(
            (e.kind, e.size, e.is_new_page),
            (EventKind::Addition, 20, true)
        );
        let line = r#"{"type":"new","title":"A","length":{"new":0}}"#;
        assert_eq!(parse_recentchange(line).unwrap().kind, EventKind::Removal);
    }
}
