//! The presets of `config/sources/` against real payloads of their feeds, from the
//! shared corpus: each payload's documented classification, field by field.

mod support;

use support::corpus_text;

use std::borrow::Cow;

use carillon::event::{Event, EventKind};
use carillon::ingest::format::rules::{Rules, PRESETS};
use carillon::ingest::format::{Format, Message, Parsed};

fn preset(name: &str) -> Rules {
    Rules::named(name, None).unwrap_or_else(|e| panic!("preset {name} does not load: {e}"))
}

fn event(parsed: Parsed) -> Event {
    match parsed {
        Parsed::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn skipped(name: &'static str) -> Parsed {
    Parsed::Skipped(Cow::Borrowed(name))
}

/// The fields a test pins down: kind, size, user, title, url.
type Fields<'a> = (EventKind, i64, &'a str, &'a str, &'a str);

fn summary(e: &Event) -> Fields<'_> {
    (
        e.kind,
        e.size,
        e.user.as_str(),
        e.title.as_str(),
        e.url.as_str(),
    )
}

#[test]
fn every_preset_loads_by_name() {
    for (name, _) in PRESETS {
        assert_eq!(preset(name).name(), name);
    }
}

#[test]
fn wikimon_preset_gives_the_built_in_formats_events_on_the_corpus() {
    let rules = preset("wikimon");
    let mut new_members = 0;
    let mut lines = 0;
    for file in [
        "wikimon/wikiticker-en-0600-1h.jsonl",
        "wikimon/wikiticker-all-0600-1h.jsonl",
        "wikimedia/wikimon_newuser_examples.jsonl",
    ] {
        for line in corpus_text(file).lines() {
            let message = Message::text(line);
            let built_in = Format::Wikimon.parse(&message);
            let by_rules = rules.apply(&message);
            assert_eq!(by_rules, built_in, "{file}: {line}");
            if matches!(&by_rules, Parsed::Event(e) if e.kind == EventKind::NewMember) {
                new_members += 1;
            }
            lines += 1;
        }
    }
    assert_eq!(lines, 373 + 2191 + 7);
    assert_eq!(new_members, 71 + 71 + 4);
}

fn is_ip(user: &str) -> bool {
    user.parse::<std::net::IpAddr>().is_ok()
}

/// Every recentchange message of the corpus, as text.
fn recentchanges() -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for file in [
        "wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson",
        "wikidata/editgroups_one_qs_batch.jsonl",
        "wikidata/editgroups_qs_batch_with_reverts.jsonl",
        "wikidata/editgroups_qs_batch_with_new_items.jsonl",
    ] {
        all.extend(corpus_text(file).lines().map(str::to_owned));
    }
    let fixtures: serde_json::Value =
        serde_json::from_str(&corpus_text("wikimedia/wikimon_test_fixtures.json"))
            .expect("the corpus fixtures are JSON");
    let fixtures = fixtures
        .as_array()
        .expect("the corpus fixtures are an array");
    all.extend(fixtures.iter().map(|v| v.to_string()));
    all
}

#[test]
fn eventstreams_preset_agrees_with_the_built_in_format_and_names_what_it_skips() {
    let rules = preset("eventstreams");
    let (mut events, mut anon, mut logs, mut categorized) = (0, 0, 0, 0);
    for line in recentchanges() {
        let message = Message::text(&line);
        let doc: serde_json::Value = serde_json::from_str(&line).expect("corpus line is JSON");
        match (Format::EventStreams.parse(&message), rules.apply(&message)) {
            (Parsed::Event(want), Parsed::Event(got)) => {
                // The wiki's name as source, and IP addresses as anonymous editors.
                assert_eq!(got.source, doc["wiki"].as_str().unwrap_or(""), "{line}");
                assert_eq!(got.is_anon, is_ip(&got.user), "{line}");
                anon += usize::from(got.is_anon);
                assert_eq!(got, want, "{line}");
                events += 1;
            }
            (Parsed::Skipped(built_in), Parsed::Skipped(named)) => {
                assert_eq!(built_in, named, "{line}");
                let want = match doc["type"].as_str() {
                    Some("log") => {
                        logs += 1;
                        "log"
                    }
                    Some("categorize") => {
                        categorized += 1;
                        "categorize"
                    }
                    _ => "other",
                };
                assert_eq!(named, want, "{line}");
            }
            (want, got) => panic!("built-in {want:?}, rules {got:?}: {line}"),
        }
    }
    assert_eq!(events, 5769, "events compared");
    assert_eq!(anon, 42, "edits by IP addresses in the corpus");
    assert!(logs > 0 && categorized > 0);
}

#[test]
fn eventstreams_preset_skips_canaries_by_name() {
    let rules = preset("eventstreams");
    let canary =
        r#"{"type":"edit","title":"Canary","meta":{"domain":"canary"},"length":{"old":1,"new":2}}"#;
    assert_eq!(rules.apply(&Message::text(canary)), skipped("canary"));
}

/// The messages of an SSE capture: (event name, data), one per blank-line-ended block.
fn sse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut event, mut data) = (String::new(), Vec::new());
    for line in text.lines().chain([""]) {
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push(d);
        } else if line.is_empty() && !data.is_empty() {
            out.push((std::mem::take(&mut event), data.join("\n")));
            data.clear();
        }
    }
    out
}

#[test]
fn mastodon_preset_reads_the_documented_sse_examples() {
    let rules = preset("mastodon");
    let messages = sse(&corpus_text(
        "mastodon/mastodon_docs_streaming_examples.sse.txt",
    ));
    assert_eq!(messages.len(), 27);
    let parsed: Vec<Parsed> = messages
        .iter()
        .map(|(event, data)| {
            rules.apply(&Message {
                event: Some(event),
                data,
            })
        })
        .collect();

    let count = |kind: EventKind| {
        parsed
            .iter()
            .filter(|p| matches!(p, Parsed::Event(e) if e.kind == kind))
            .count()
    };
    assert_eq!(count(EventKind::Addition), 7 + 7, "updates and edits");
    assert_eq!(count(EventKind::Removal), 6, "deletes");
    let skips: Vec<&Parsed> = parsed
        .iter()
        .filter(|p| matches!(p, Parsed::Skipped(_)))
        .collect();
    assert_eq!(
        skips,
        [
            "notification",
            "filters_changed",
            "announcement",
            "announcement.reaction",
            "announcement.delete",
            "notification",
            "conversation"
        ]
        .map(skipped)
        .iter()
        .collect::<Vec<_>>()
    );

    // A new status: sized by the bytes of its HTML content, placed by its account.
    let first = event(parsed[0].clone());
    let url = "https://letsalllovela.in/objects/e9cebb0c-7c75-414f-9608-20b5628e52d7";
    let who = "freon@letsalllovela.in";
    assert_eq!(summary(&first), (EventKind::Addition, 198, who, who, url));
    assert!(!first.is_minor && !first.is_bot);
    assert_eq!(
        (first.namespace.as_str(), first.source.as_str()),
        ("Main", "mastodon")
    );
    // An edit: the same, marked minor.
    let edit = event(parsed[6].clone());
    let url = "http://mastodon.local/@admin/109348677773283527";
    assert_eq!(
        summary(&edit),
        (EventKind::Addition, 13, "admin", "admin", url)
    );
    assert!(edit.is_minor);
    // A deletion: the status id is all there is.
    let delete = event(parsed[9].clone());
    assert_eq!(
        summary(&delete),
        (EventKind::Removal, 0, "", "107214471804101576", "")
    );
}

#[test]
fn mastodon_preset_counts_admin_sign_ups_and_follows_as_new_members() {
    let rules = preset("mastodon");
    let messages = sse(&corpus_text(
        "mastodon/mastodon_docs_streaming_examples.sse.txt",
    ));
    let (name, mention) = &messages[1];
    assert_eq!(name, "notification");
    assert!(mention.contains(r#""type":"mention""#));
    // The corpus has only mentions: the same notification, of the two other types.
    for kind in ["admin.sign_up", "follow"] {
        let data = mention.replacen(r#""type":"mention""#, &format!(r#""type":"{kind}""#), 1);
        let e = event(rules.apply(&Message {
            event: Some("notification"),
            data: &data,
        }));
        assert_eq!(
            summary(&e),
            (
                EventKind::NewMember,
                0,
                "a@pl.nulled.red",
                "a@pl.nulled.red",
                "https://pl.nulled.red/users/a"
            ),
            "{kind}"
        );
        assert!(e.is_bot, "the account says it is a bot");
    }
}

#[test]
fn mastodon_preset_reads_websocket_frames_and_their_json_string_payloads() {
    let rules = preset("mastodon");
    let text = corpus_text("mastodon/mastodon_docs_streaming_examples.ws.jsonl");
    let parsed: Vec<Parsed> = text
        .lines()
        .map(|line| rules.apply(&Message::text(line)))
        .collect();
    assert_eq!(parsed.len(), 3);
    let who = "tobtobxx@fosstodon.org";
    let url = "https://fosstodon.org/@tobtobxx/108913983628474640";
    assert_eq!(
        summary(&event(parsed[0].clone())),
        (EventKind::Addition, 98, who, who, url)
    );
    assert_eq!(
        summary(&event(parsed[1].clone())),
        (EventKind::Removal, 0, "", "106692867363994015", "")
    );
    assert_eq!(parsed[2], skipped("filters_changed"));
}

/// The octokit webhook examples: file, event name (the `X-GitHub-Event` header).
const WEBHOOKS: [(&str, &str); 11] = [
    ("push_payload.json", "push"),
    ("create_payload.json", "create"),
    ("delete_payload.json", "delete"),
    ("fork_payload.json", "fork"),
    ("gollum_payload.json", "gollum"),
    ("member_added.payload.json", "member"),
    ("issues_opened.payload.json", "issues"),
    ("pull_request_opened.payload.json", "pull_request"),
    ("watch_started.payload.json", "watch"),
    ("star_created.payload.json", "star"),
    ("organization_member_added.payload.json", "organization"),
];

fn webhook(rules: &Rules, file: &str, event: &str) -> Parsed {
    let data = corpus_text(&format!("github/octokit-webhook-examples/{file}"));
    rules.apply(&Message {
        event: Some(event),
        data: &data,
    })
}

#[test]
fn github_preset_classifies_every_octokit_example_as_documented() {
    let rules = preset("github");
    let repo = "https://github.com/Codertocat/Hello-World";
    let compare = "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000";
    let tag = "Codertocat/Hello-World simple-tag";
    let issue = "Codertocat/Hello-World#1 Spelling error in the README file";
    let pull = "Codertocat/Hello-World#2 Update the README with new information.";
    let wanted: [Option<Fields>; 11] = [
        // The example push deletes a tag.
        Some((
            EventKind::Removal,
            0,
            "Codertocat",
            "Codertocat/Hello-World refs/tags/simple-tag",
            compare,
        )),
        Some((EventKind::Addition, 10, "Codertocat", tag, repo)),
        Some((EventKind::Removal, 10, "Codertocat", tag, repo)),
        Some((
            EventKind::Addition,
            10,
            "Octocoders",
            "Octocoders/Hello-World",
            "https://github.com/Octocoders/Hello-World",
        )),
        Some((
            EventKind::Addition,
            100,
            "rachmari",
            "Codertocat/Hello-World wiki: Home",
            "https://github.com/Codertocat/Hello-World/wiki/Home",
        )),
        Some((
            EventKind::NewMember,
            0,
            "hacktocat",
            "Codertocat/Hello-World",
            "https://github.com/hacktocat",
        )),
        Some((
            EventKind::Addition,
            60,
            "Codertocat",
            issue,
            "https://github.com/Codertocat/Hello-World/issues/1",
        )),
        Some((
            EventKind::Addition,
            1,
            "Codertocat",
            pull,
            "https://github.com/Codertocat/Hello-World/pull/2",
        )),
        None,
        None,
        Some((
            EventKind::NewMember,
            0,
            "hacktocat",
            "Octocoders",
            "https://github.com/hacktocat",
        )),
    ];
    for ((file, name), want) in WEBHOOKS.iter().zip(wanted) {
        let got = webhook(&rules, file, name);
        match want {
            Some(want) => {
                let e = event(got);
                assert_eq!(summary(&e), want, "{file}");
                assert_eq!(
                    (e.namespace.as_str(), e.source.as_str()),
                    ("Main", "github"),
                    "{file}"
                );
            }
            None => assert_eq!(got, Parsed::Skipped(Cow::Owned(name.to_string())), "{file}"),
        }
    }
}

#[test]
fn github_push_is_sized_by_its_commits() {
    let rules = preset("github");
    let data = corpus_text("github/octokit-webhook-examples/push_payload.json");
    let doc: serde_json::Value = serde_json::from_str(&data).expect("the payload is JSON");
    // The example deletes its ref; the same push creating a branch with three commits.
    let mut push = doc.clone();
    push["deleted"] = false.into();
    push["created"] = true.into();
    push["ref"] = "refs/heads/main".into();
    push["commits"] = serde_json::json!([{"id": "a"}, {"id": "b"}, {"id": "c"}]);
    push["head_commit"] = serde_json::json!({"message": "Third", "url": "https://example.org/c"});
    let data = push.to_string();
    let e = event(rules.apply(&Message {
        event: Some("push"),
        data: &data,
    }));
    let compare = "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000";
    assert_eq!(
        summary(&e),
        (
            EventKind::Addition,
            300,
            "Codertocat",
            "Codertocat/Hello-World refs/heads/main",
            compare
        )
    );
    assert_eq!(e.summary, "Third");
    assert!(e.is_new_page);
}

#[test]
fn gitea_and_forgejo_presets_read_githubs_shapes_and_their_wiki_event() {
    for name in ["gitea", "forgejo"] {
        let rules = preset(name);
        let repo = "https://github.com/Codertocat/Hello-World";
        let tag = "Codertocat/Hello-World simple-tag";
        let e = event(webhook(&rules, "create_payload.json", "create"));
        assert_eq!(
            summary(&e),
            (EventKind::Addition, 10, "Codertocat", tag, repo)
        );
        assert_eq!(e.source, name);
        let e = event(webhook(&rules, "delete_payload.json", "delete"));
        assert_eq!(
            summary(&e),
            (EventKind::Removal, 10, "Codertocat", tag, repo)
        );
        let e = event(webhook(&rules, "issues_opened.payload.json", "issues"));
        assert_eq!((e.kind, e.size), (EventKind::Addition, 60));
        assert_eq!(
            webhook(&rules, "star_created.payload.json", "star"),
            skipped("star")
        );
        assert_eq!(
            webhook(&rules, "member_added.payload.json", "member"),
            skipped("other")
        );
        // Gitea's wiki payload (action, repository, sender, page, comment), from its
        // documented struct: no such delivery is recorded in the corpus.
        for (action, kind) in [
            ("created", EventKind::Addition),
            ("edited", EventKind::Addition),
            ("deleted", EventKind::Removal),
        ] {
            let data = format!(
                r#"{{"action":"{action}","page":"Home","comment":"Update Home","repository":{{"full_name":"ada/notes","html_url":"https://git.example/ada/notes"}},"sender":{{"login":"ada","username":"ada"}}}}"#
            );
            let e = event(rules.apply(&Message {
                event: Some("wiki"),
                data: &data,
            }));
            assert_eq!(
                summary(&e),
                (
                    kind,
                    100,
                    "ada",
                    "ada/notes wiki: Home",
                    "https://git.example/ada/notes/wiki"
                ),
                "{name} {action}"
            );
            assert_eq!(e.is_new_page, action == "created");
        }
    }
}

#[test]
fn generic_preset_reads_carillons_own_event_json() {
    let rules = preset("generic");
    let line = r#"{"kind":"addition","size":120,"title":"Lyon","user":"Ada","url":"https://example.org/Lyon","bot":true}"#;
    let e = event(rules.apply(&Message::text(line)));
    assert_eq!(
        summary(&e),
        (
            EventKind::Addition,
            120,
            "Ada",
            "Lyon",
            "https://example.org/Lyon"
        )
    );
    assert!(e.is_bot && !e.is_anon);
    assert_eq!(e.namespace, "Main");
    let e = event(rules.apply(&Message::text(r#"{"kind":"new_member","user":"Bo"}"#)));
    assert_eq!((e.kind, e.user.as_str()), (EventKind::NewMember, "Bo"));
    let e = event(rules.apply(&Message::text(
        r#"{"kind":"removal","size":-40,"namespace":"Talk"}"#,
    )));
    assert_eq!(
        (e.kind, e.size, e.namespace.as_str()),
        (EventKind::Removal, -40, "Talk")
    );
    assert_eq!(
        rules.apply(&Message::text(r#"{"kind":"explosion"}"#)),
        skipped("unknown kind")
    );
    assert!(matches!(
        rules.apply(&Message::text(r#"{"kind":"addition","size":"big"}"#)),
        Parsed::Malformed(_)
    ));
    assert!(matches!(
        rules.apply(&Message::text("kind=addition")),
        Parsed::Malformed(_)
    ));
}

#[test]
fn the_documented_example_of_a_rules_file_reads_its_sample_lines() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let rules = Rules::named("commits.toml", Some(std::path::Path::new(dir)))
        .unwrap_or_else(|e| panic!("{e}"));
    let line = r#"{"type":"commit","repo":"ada/notes","author":{"name":"Ada"},"lines":{"added":40,"removed":3},"link":"https://git.example/c/1"}"#;
    let e = event(rules.apply(&Message::text(line)));
    assert_eq!(
        summary(&e),
        (
            EventKind::Addition,
            37,
            "Ada",
            "ada/notes",
            "https://git.example/c/1"
        )
    );
    assert!(!e.is_bot);
    let bot = r#"{"type":"commit","repo":"a/b","author":{"name":"fixer[bot]"},"lines":{"added":1,"removed":9}}"#;
    let e = event(rules.apply(&Message::text(bot)));
    assert_eq!((e.kind, e.size, e.is_bot), (EventKind::Removal, -8, true));
    let e = event(rules.apply(&Message::text(r#"{"type":"commit","repo":"a/b"}"#)));
    assert_eq!(e.user, "anonymous");
    assert_eq!(
        rules.apply(&Message::text(r#"{"type":"ping"}"#)),
        skipped("ping")
    );
    assert_eq!(
        rules.apply(&Message::text(r#"{"type":"star"}"#)),
        skipped("other")
    );
    let e = event(rules.apply(&Message::text(r#"{"type":"signup","user":"Bo"}"#)));
    assert_eq!((e.kind, e.user.as_str()), (EventKind::NewMember, "Bo"));
}
