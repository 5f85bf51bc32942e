//! The OpenStreetMap source against a replication folder served from 127.0.0.1: the
//! real minutely diffs of the corpus, gzipped into `000/000/NNN.osc.gz` by the test, and
//! a `state.txt` the test advances while the source polls it.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carillon::config::{Config, SourceConfig};
use carillon::ingest::{Arrival, Delivery, Format};
use carillon::stats::Stats;
use crossbeam_channel::Receiver;
use flate2::write::GzEncoder;
use flate2::Compression;

use support::files::FileServer;
use support::TempDir;

const DIFF_2017: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/osm/osmdiff_minutely_osmchange_2017-11-10.osc.xml"
);
const DIFF_2020: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/osm/osmcha_minutely_osmchange_241_2020-05-12.osc.xml"
);

/// The poll interval of these tests (s), and so the window a diff is spread over.
const POLL_S: u64 = 2;

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    encoder.finish().unwrap_or_else(|e| panic!("gzip: {e}"))
}

/// Write a file of the replication folder, atomically (the source may be reading it).
fn put(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn put_state(root: &Path, sequence: u64) {
    let text = format!(
        "#Tue May 12 06:13:04 UTC 2020\nsequenceNumber={sequence}\ntimestamp=2020-05-12T06\\:13\\:02Z\n"
    );
    put(root, "state.txt", text.as_bytes());
}

fn put_diff(root: &Path, sequence: u64, gzipped: &[u8]) {
    put(root, &format!("000/000/{sequence:03}.osc.gz"), gzipped);
}

fn config() -> SourceConfig {
    let mut config = Config::defaults().source;
    config.poll_interval_s = POLL_S;
    config.backoff_initial_ms = 50;
    config.backoff_max_ms = 200;
    config.connect_timeout_s = 2;
    config.silence_timeout_s = 5;
    config
}

/// The source, running on its own runtime until dropped.
struct Running {
    rx: Receiver<Arrival>,
    stats: Arc<Stats>,
    _runtime: tokio::runtime::Runtime,
}

fn start(url: String) -> Running {
    // The HTTP client's TLS needs a crypto provider, as `main` installs one, even though
    // these tests speak plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let (tx, rx) = crossbeam_channel::bounded(10_000);
    let stats = Arc::new(Stats::default());
    let out = Delivery::new(tx, Arc::clone(&stats), 0, Format::Auto);
    runtime.spawn(async move {
        carillon::ingest::transport::osm::run(&url, &config(), out).await;
    });
    Running {
        rx,
        stats,
        _runtime: runtime,
    }
}

/// The next `n` events and when each arrived; panics if they take over `timeout`.
fn take(rx: &Receiver<Arrival>, n: usize, timeout: Duration) -> Vec<(Instant, Arrival)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(arrival) => got.push((Instant::now(), arrival)),
            Err(_) => panic!("{} of {n} events within {timeout:?}", got.len()),
        }
    }
    got
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn users(events: &[(Instant, Arrival)]) -> BTreeSet<String> {
    events.iter().map(|(_, a)| a.event.user.clone()).collect()
}

fn titles(events: &[(Instant, Arrival)]) -> BTreeSet<String> {
    events.iter().map(|(_, a)| a.event.title.clone()).collect()
}

fn elements(events: &[(Instant, Arrival)]) -> u64 {
    events
        .iter()
        .map(|(_, a)| a.event.size.unsigned_abs())
        .sum()
}

fn spread(events: &[(Instant, Arrival)]) -> Duration {
    let first = events.iter().map(|(t, _)| *t).min();
    let last = events.iter().map(|(t, _)| *t).max();
    match (first, last) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    }
}

#[test]
fn plays_the_latest_diff_then_each_new_one_spread_over_the_poll_interval() {
    let dir = TempDir::new("osm-follow");
    let root = dir.path();
    put_diff(root, 241, &gzip(&corpus(DIFF_2020)));
    put_diff(root, 242, &gzip(&corpus(DIFF_2017)));
    // History the source must not replay.
    put_diff(root, 240, &gzip(&corpus(DIFF_2017)));
    put_state(root, 241);
    let server = FileServer::start(root);
    let source = start(server.url());

    // The latest diff at start: 59 changesets by 56 users, 4697 elements.
    let first = take(&source.rx, 59, Duration::from_secs(8));
    assert_eq!(titles(&first).len(), 59);
    assert_eq!(users(&first).len(), 56);
    assert_eq!(elements(&first), 4697);
    assert!(first.iter().all(|(_, a)| a.event.source == "osm"));
    let window = Duration::from_secs(POLL_S);
    let s = spread(&first);
    assert!(
        s >= window / 2 && s <= window + Duration::from_millis(500),
        "the diff's changesets arrived over {s:?}, not spread over the {window:?} window"
    );

    // Polling goes on, but the same diff is not played twice.
    let polls = server.requests("/state.txt").len();
    wait_until("two more polls", Duration::from_secs(8), || {
        server.requests("/state.txt").len() >= polls + 2
    });
    assert!(source.rx.try_recv().is_err(), "an event with no new diff");
    assert!(server.requests("/000/000/240.osc.gz").is_empty());
    assert_eq!(server.requests("/000/000/241.osc.gz"), vec![200]);

    put_state(root, 242);
    let second = take(&source.rx, 31, Duration::from_secs(10));
    assert_eq!(titles(&second).len(), 31);
    assert_eq!(users(&second).len(), 24);
    assert_eq!(elements(&second), 4751);
    let s = spread(&second);
    assert!(s >= window / 2, "second diff over {s:?}");
    assert_eq!(Stats::get(&source.stats.events), 59 + 31);
    assert_eq!(Stats::get(&source.stats.malformed), 0);
    assert_eq!(Stats::get(&source.stats.connects), 1);
}

#[test]
fn catches_up_at_most_three_diffs() {
    let dir = TempDir::new("osm-catch-up");
    let root = dir.path();
    let diff = gzip(&corpus(DIFF_2017));
    for sequence in 241..=247 {
        put_diff(root, sequence, &diff);
    }
    // The middle one of the three fetched is told apart by its changesets.
    put_diff(root, 246, &gzip(&corpus(DIFF_2020)));
    put_state(root, 241);
    let server = FileServer::start(root);
    let source = start(server.url());
    take(&source.rx, 31, Duration::from_secs(8));

    // Six diffs behind: only the newest three are fetched, and played within one poll
    // interval, one after the other.
    put_state(root, 247);
    let caught_up = take(&source.rx, 31 + 59 + 31, Duration::from_secs(10));
    for skipped in 242..=244 {
        assert!(
            server
                .requests(&format!("/000/000/{skipped}.osc.gz"))
                .is_empty(),
            "diff {skipped} was fetched"
        );
    }
    for fetched in 245..=247 {
        assert_eq!(
            server.requests(&format!("/000/000/{fetched}.osc.gz")),
            vec![200]
        );
    }
    let s = spread(&caught_up);
    let window = Duration::from_secs(POLL_S);
    assert!(
        s >= window / 2 && s <= window + Duration::from_millis(500),
        "three diffs over {s:?}"
    );
    // Each has a third of the interval, in sequence order: the 59 changesets of 246
    // (from the 2020 diff) come after all 31 of 245 and before all 31 of 247.
    let from_2020: Vec<bool> = caught_up
        .iter()
        .map(|(_, a)| a.event.title.starts_with("Changeset 8506"))
        .collect();
    let before = from_2020.iter().take_while(|&&x| !x).count();
    let after = from_2020.iter().rev().take_while(|&&x| !x).count();
    assert_eq!(
        (before, from_2020.iter().filter(|&&x| x).count(), after),
        (31, 59, 31),
        "the three diffs' changesets interleave"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(source.rx.try_recv().is_err());
}

#[test]
fn missing_and_garbage_files_are_retried_and_counted() {
    let dir = TempDir::new("osm-faults");
    let root = dir.path();
    let server = FileServer::start(root);
    let source = start(server.url());
    let stats = Arc::clone(&source.stats);

    // No state file at all: 404s, retried with backoff.
    wait_until("three 404s for state.txt", Duration::from_secs(5), || {
        server
            .requests("/state.txt")
            .iter()
            .filter(|&&s| s == 404)
            .count()
            >= 3
    });
    assert!(Stats::get(&stats.disconnects) >= 3);
    assert_eq!(Stats::get(&stats.connects), 0);

    // A state file that is not one.
    put(
        root,
        "state.txt",
        b"<html><body>502 Bad Gateway</body></html>",
    );
    wait_until("a garbage state counted", Duration::from_secs(5), || {
        Stats::get(&stats.malformed) >= 2
    });
    assert_eq!(Stats::get(&stats.connects), 0);

    // A good state whose diff is not there yet: asked for again and again.
    put_state(root, 241);
    wait_until("the missing diff retried", Duration::from_secs(5), || {
        server.requests("/000/000/241.osc.gz").len() >= 2
    });
    assert!(Stats::get(&stats.connects) >= 1);

    // Then there, but not gzip: counted as malformed, passed over, not fetched again.
    let malformed = Stats::get(&stats.malformed);
    put_diff(root, 241, b"<html>Not Found</html>");
    wait_until("the garbage diff read", Duration::from_secs(5), || {
        server.requests("/000/000/241.osc.gz").contains(&200)
    });
    wait_until("the garbage diff counted", Duration::from_secs(2), || {
        Stats::get(&stats.malformed) == malformed + 1
    });
    let polls = server.requests("/state.txt").len();
    wait_until("two more polls", Duration::from_secs(8), || {
        server.requests("/state.txt").len() >= polls + 2
    });
    let fetched = server.requests("/000/000/241.osc.gz");
    assert_eq!(
        fetched.iter().filter(|&&s| s == 200).count(),
        1,
        "{fetched:?}"
    );
    assert_eq!(Stats::get(&stats.malformed), malformed + 1);

    // A diff cut short: what was read before the cut plays, and the cut is counted.
    let whole = corpus(DIFF_2017);
    put_diff(root, 242, &gzip(&whole[..whole.len() / 2]));
    put_state(root, 242);
    let partial = take(&source.rx, 1, Duration::from_secs(6));
    std::thread::sleep(Duration::from_secs(POLL_S) + Duration::from_millis(300));
    // The first half of the file holds complete elements of 14 of its 31 changesets.
    let played = 1 + source.rx.try_iter().count();
    assert_eq!(played, 14);
    assert_eq!(Stats::get(&stats.malformed), malformed + 2);
    assert_eq!(partial[0].1.event.source, "osm");

    // And the source still follows the feed.
    put_diff(root, 243, &gzip(&corpus(DIFF_2020)));
    put_state(root, 243);
    take(&source.rx, 59, Duration::from_secs(8));
    assert_eq!(
        server
            .requests("/000/000/241.osc.gz")
            .iter()
            .filter(|&&s| s == 200)
            .count(),
        1
    );
}
