//! The EventStreams source over HTTP, against a real SSE server on 127.0.0.1 serving
//! real recorded recentchange events: resume across dropped connections with
//! `Last-Event-ID`, heartbeats and silence, refusals, an oversized line, bytes that
//! are not UTF-8, the kinds that are skipped by name, and NDJSON.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carillon::config::{Config, SourceConfig};
use carillon::event::{Event, EventKind};
use carillon::ingest::transport::http;
use carillon::ingest::{Arrival, Delivery, Format, HttpLines, SourceSpec};
use carillon::stats::Stats;
use crossbeam_channel::Receiver;
use support::corpus_text;
use support::sse::{encode, Request, SseServer, Step, Wire};

/// An EventStreams id: a JSON array of Kafka positions, opaque to the client.
fn kafka_id(offset: u64) -> String {
    format!(r#"[{{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":{offset}}}]"#)
}

/// The hundred enwiki edits of 2023-07-29, each with its real Kafka offset as its id.
fn enwiki() -> Vec<(String, String)> {
    corpus_text("wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let offset = v["meta"]["offset"].as_u64().unwrap();
            (kafka_id(offset), line.to_owned())
        })
        .collect()
}

/// Each event's `notify_url`, which names its revision: what tells events apart.
fn urls(events: &[(String, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, data)| {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            v["notify_url"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Quick reconnection, so that tests spend their time on what they test.
fn config(silence_timeout_s: u64) -> SourceConfig {
    SourceConfig {
        backoff_initial_ms: 20,
        backoff_max_ms: 100,
        connect_timeout_s: 1,
        silence_timeout_s,
        ..Config::defaults().source
    }
}

/// A running client: its runtime, the server it reads, what it delivers.
struct Run {
    rt: Option<tokio::runtime::Runtime>,
    server: SseServer,
    rx: Receiver<Arrival>,
    stats: Arc<Stats>,
}

fn start(
    events: Vec<(String, String)>,
    wire: Wire,
    lines: HttpLines,
    bearer: Option<&str>,
    config: SourceConfig,
    script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
) -> Run {
    start_as(
        Format::EventStreams,
        events,
        wire,
        lines,
        bearer,
        config,
        script,
    )
}

fn start_as(
    format: Format,
    events: Vec<(String, String)>,
    wire: Wire,
    lines: HttpLines,
    bearer: Option<&str>,
    config: SourceConfig,
    script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(SseServer::start(events, wire, script));
    let (tx, rx) = crossbeam_channel::bounded(10_000);
    let stats = Arc::new(Stats::default());
    let out = Delivery::new(tx, stats.clone(), 0, format);
    let url = server.url();
    let bearer = bearer.map(str::to_owned);
    rt.spawn(async move { http::run(&url, lines, bearer, &config, out).await });
    Run {
        rt: Some(rt),
        server,
        rx,
        stats,
    }
}

impl Run {
    /// The next `n` events, failing after `limit`.
    fn take(&self, n: usize, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(arrival) => got.push(arrival.event),
                Err(_) => panic!(
                    "{} of {n} events after {limit:?}; {}; requests {:?}",
                    got.len(),
                    self.stats.summary(),
                    self.server.requests()
                ),
            }
        }
        got
    }

    /// Whether anything more arrives within `wait`.
    fn assert_nothing_more(&self, wait: Duration) {
        if let Ok(extra) = self.rx.recv_timeout(wait) {
            panic!("an event more than served: {:?}", extra.event.url);
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    fn get(&self, counter: impl Fn(&Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        Stats::get(counter(&self.stats))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The client reconnects forever: leave its task behind rather than wait on it.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[test]
fn every_event_arrives_once_in_order_across_dropped_connections() {
    let events = enwiki();
    // Seventeen events, then half of the eighteenth, then the connection drops.
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(30),
        |_| vec![Step::Events(17), Step::HalfEvent],
    );
    let got = run.take(100, Duration::from_secs(15));
    let got_urls: Vec<String> = got.iter().map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    run.assert_nothing_more(Duration::from_millis(300));
    assert_eq!(run.get(|s| &s.events), 100);
    assert_eq!(run.get(|s| &s.malformed), 0);

    let requests = run.requests();
    assert!(requests.len() >= 6, "{requests:?}");
    assert_eq!(requests[0].last_event_id, None);
    // Each reconnection names the last event delivered, never the half-sent one.
    for (k, request) in requests.iter().enumerate().take(6).skip(1) {
        assert_eq!(
            request.last_event_id.as_deref(),
            Some(events[17 * k - 1].0.as_str()),
            "request {k}"
        );
    }
    let first = &requests[0];
    assert_eq!(first.accept.as_deref(), Some("text/event-stream"));
    assert!(
        first
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("carillon/")),
        "{first:?}"
    );
    assert_eq!(first.authorization, None);
    assert!(run.get(|s| &s.connects) >= 6);
}

#[test]
fn refusals_are_retried_and_crlf_and_multiline_data_are_read() {
    let events = enwiki();
    let run = start(
        events.clone(),
        Wire::SseCrlfTwoDataLines,
        HttpLines::Sse,
        None,
        config(30),
        |n| match n {
            0 | 1 => vec![Step::Status(503)],
            _ => vec![Step::Rest, Step::Silent],
        },
    );
    let got = run.take(100, Duration::from_secs(10));
    let got_urls: Vec<String> = got.iter().map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    assert_eq!(run.get(|s| &s.malformed), 0);
    assert_eq!(run.get(|s| &s.connects), 1);
    assert_eq!(run.get(|s| &s.disconnects), 2);
    assert_eq!(run.requests().len(), 3);
}

#[test]
fn a_server_that_never_answers_is_given_up_after_the_connect_timeout() {
    let events = enwiki();
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(30),
        |n| match n {
            0 => vec![Step::NoAnswer],
            _ => vec![Step::Rest, Step::Silent],
        },
    );
    let started = Instant::now();
    let got = run.take(100, Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(got.len(), 100);
    assert_eq!(run.get(|s| &s.connects), 1);
    assert_eq!(run.get(|s| &s.disconnects), 1);
}

#[test]
fn heartbeats_keep_a_quiet_connection_open() {
    let events = enwiki();
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(1),
        |_| {
            vec![
                Step::Events(5),
                Step::Heartbeats {
                    every: Duration::from_millis(300),
                    for_: Duration::from_millis(2500),
                },
                Step::Rest,
                Step::Silent,
            ]
        },
    );
    let got = run.take(100, Duration::from_secs(10));
    assert_eq!(got.len(), 100);
    assert_eq!(run.get(|s| &s.connects), 1);
    assert_eq!(run.get(|s| &s.disconnects), 0);
    assert_eq!(run.requests().len(), 1);
}

#[test]
fn silence_longer_than_the_timeout_reconnects_and_resumes() {
    let events = enwiki();
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(1),
        |n| match n {
            0 => vec![Step::Events(10), Step::Heartbeat, Step::Silent],
            _ => vec![Step::Rest, Step::Silent],
        },
    );
    let started = Instant::now();
    let first = run.take(10, Duration::from_secs(5));
    let rest = run.take(90, Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let got_urls: Vec<String> = first.iter().chain(&rest).map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    run.assert_nothing_more(Duration::from_millis(300));
    let requests = run.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[1].last_event_id.as_deref(),
        Some(events[9].0.as_str())
    );
    assert_eq!(run.get(|s| &s.disconnects), 1);
}

#[test]
fn an_oversized_line_is_counted_and_the_stream_goes_on() {
    let events = enwiki();
    // A 5 MiB edit summary, five times the default limit, as one `data:` line.
    let huge = format!(
        r#"{{"type":"edit","title":"Huge","comment":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    let big = encode(&kafka_id(1), &huge, Wire::Sse);
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(30),
        move |_| {
            vec![
                Step::Events(3),
                Step::Raw(big.clone()),
                Step::Rest,
                Step::Silent,
            ]
        },
    );
    let got = run.take(100, Duration::from_secs(15));
    let got_urls: Vec<String> = got.iter().map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    assert_eq!(run.get(|s| &s.oversized), 1);
    assert_eq!(run.get(|s| &s.malformed), 0);
    assert_eq!(run.get(|s| &s.connects), 1);
    assert_eq!(run.requests().len(), 1);
}

#[test]
fn bytes_that_are_not_utf8_are_counted_as_malformed_and_skipped() {
    let events = enwiki();
    let mut bad = b"event: message\nid: [0]\ndata: {\"type\":\"edit\",\"title\":\"".to_vec();
    bad.extend_from_slice(b"\xff\xfe\"}\n\n");
    let run = start(
        events.clone(),
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(30),
        move |_| {
            vec![
                Step::Events(50),
                Step::Raw(bad.clone()),
                Step::Rest,
                Step::Silent,
            ]
        },
    );
    let got = run.take(100, Duration::from_secs(10));
    let got_urls: Vec<String> = got.iter().map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    assert_eq!(run.get(|s| &s.malformed), 1);
    assert_eq!(run.get(|s| &s.connects), 1);
}

/// The fixture file's eleven events of 2026-04-11, with made-up offsets as ids.
fn fixtures() -> Vec<serde_json::Value> {
    serde_json::from_str(&corpus_text("wikimedia/wikimon_test_fixtures.json")).unwrap()
}

#[test]
fn a_source_of_some_wikis_sounds_only_those() {
    let spec: SourceSpec = "eventstreams:enwiki,commonswiki".parse().unwrap();
    let format = spec.default_format().unwrap();
    let events: Vec<(String, String)> = fixtures()
        .iter()
        .enumerate()
        .map(|(i, v)| (kafka_id(i as u64), v.to_string()))
        .collect();
    let run = start_as(
        format,
        events,
        Wire::Sse,
        HttpLines::Sse,
        None,
        config(30),
        |_| vec![Step::Rest, Step::Silent],
    );
    let got = run.take(4, Duration::from_secs(10));
    run.assert_nothing_more(Duration::from_millis(500));
    let sources: Vec<&str> = got.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["commonswiki", "commonswiki", "enwiki", "enwiki"]);
    let skipped: Vec<(String, u64)> = run
        .stats
        .skipped()
        .into_iter()
        .map(|(k, n)| (k.into_owned(), n))
        .collect();
    assert_eq!(
        skipped,
        [("categorize".to_owned(), 1), ("other_wiki".to_owned(), 6)]
    );
}

#[test]
fn canaries_categorizations_and_other_logs_are_skipped_by_name() {
    let fixtures = fixtures();
    let mut lines: Vec<String> = fixtures.iter().map(|v| v.to_string()).collect();
    let mut canary = fixtures[0].clone();
    canary["meta"]["domain"] = "canary".into();
    lines.push(canary.to_string());
    let mut external = fixtures[1].clone();
    external["type"] = "external".into();
    lines.push(external.to_string());
    let events: Vec<(String, String)> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| (kafka_id(i as u64), l))
        .collect();
    let run = start(events, Wire::Sse, HttpLines::Sse, None, config(30), |_| {
        vec![Step::Rest, Step::Silent]
    });
    let got = run.take(7, Duration::from_secs(10));
    run.assert_nothing_more(Duration::from_millis(500));
    let kinds: Vec<EventKind> = got.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [Addition, Addition, Addition, Addition, Addition, NewMember, NewMember]
    );
    let accounts: Vec<(&str, &str)> = got[5..]
        .iter()
        .map(|e| (e.user.as_str(), e.source.as_str()))
        .collect();
    assert_eq!(
        accounts,
        [("ChristianKaenick", "enwiki"), ("Reflie Mokalu", "enwiki")]
    );
    assert_eq!(run.get(|s| &s.events), 7);
    assert_eq!(run.get(|s| &s.malformed), 0);
    let skipped: BTreeMap<String, u64> = run
        .stats
        .skipped()
        .into_iter()
        .map(|(k, n)| (k.into_owned(), n))
        .collect();
    let expected: BTreeMap<String, u64> = [
        ("canary", 1),
        ("categorize", 2),
        ("external", 1),
        ("log", 2),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(skipped, expected);
}

#[test]
fn ndjson_lines_each_deliver_one_event_and_a_bearer_token_is_sent() {
    let events = enwiki();
    let run = start(
        events.clone(),
        Wire::Ndjson,
        HttpLines::Ndjson,
        Some("s3cret"),
        config(30),
        |_| {
            vec![
                Step::Events(40),
                Step::Raw(b"\r\n   \n".to_vec()),
                Step::Rest,
                Step::Silent,
            ]
        },
    );
    let got = run.take(100, Duration::from_secs(10));
    let got_urls: Vec<String> = got.iter().map(|e| e.url.clone()).collect();
    assert_eq!(got_urls, urls(&events));
    assert_eq!(run.get(|s| &s.malformed), 0);
    let requests = run.requests();
    assert_eq!(requests[0].accept.as_deref(), Some("application/json"));
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer s3cret"));
}
