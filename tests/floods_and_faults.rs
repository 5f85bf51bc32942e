//! The real binary under a flood of edits and under a network that misbehaves: it stays
//! calm, bounded and cheap, counts everything, and plays normally when it is over.
//!
//! Long runs are shortened by default; set `CARILLON_FLOOD_SECONDS` (default 10) and
//! `CARILLON_FLAP_SECONDS` (default 20) for the full ones (60 and 120).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::procfs::{cpu_time, status_bytes};
use support::{onsets, spawn_carillon, wikimon_edit, DeviceTap, JackServer, Step, WsServer};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/wikimon/wikiticker-all-0600-1h.jsonl"
);

fn seconds_from_env(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{var}={v:?} is not a number of seconds: {e}")),
        Err(_) => default,
    }
}

/// The recorded hour of every wiki, as wikimon frames (edits and new accounts).
fn recorded_frames() -> Vec<String> {
    let text = std::fs::read_to_string(CORPUS)
        .unwrap_or_else(|e| panic!("the flood replays the shared corpus file {CORPUS}: {e}"));
    text.lines().map(str::to_owned).collect()
}

#[test]
fn a_flood_of_10_000_edits_a_second_stays_calm_bounded_and_cheap() {
    const RATE: f64 = 10_000.0;
    let seconds = seconds_from_env("CARILLON_FLOOD_SECONDS", 10);
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let frames = recorded_frames();
    let swells = frames
        .iter()
        .filter(|f| f.contains("Special:Log/newusers"))
        .count();
    assert!(swells > 50, "the flood should carry new accounts too");
    let after = ["Quiet", "Again", "Calm"];
    let mut script = vec![
        Step::sleep_ms(1000),
        Step::Flood {
            frames: Arc::new(frames),
            rate: RATE,
            seconds: seconds as f64,
        },
        Step::sleep_ms(3000),
    ];
    // Small, large, small: each at another pitch than the one before, still ringing
    // (the célesta rings for seconds), so that its onset stands out of it.
    for (title, size) in after.iter().zip([25, 4000, 25]) {
        script.push(Step::text(wikimon_edit(title, size, "Main")));
        script.push(Step::sleep_ms(700));
    }
    script.push(Step::sleep_ms(5000));
    let server = WsServer::start(script);
    let url = server.url();
    let duration = (1 + seconds + 6).to_string();
    let carillon = spawn_carillon(
        &[
            "play",
            "--source",
            &url,
            "--duration",
            &duration,
            "--buffer-frames",
            "256",
        ],
        tap.env(),
    );
    let pid = carillon.pid();
    let flood_total = (RATE * seconds as f64) as usize;

    // Measure carillon itself from the flood's first frame to its last.
    let deadline = Instant::now() + Duration::from_secs(seconds + 20);
    while server.frames_sent() == 0 {
        assert!(Instant::now() < deadline, "the flood never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (cpu0, peak0, t0) = (cpu_time(pid), status_bytes(pid, "VmHWM"), Instant::now());
    while server.frames_sent() < flood_total {
        assert!(
            Instant::now() < deadline,
            "the flood stalled at {} frames (carillon not reading?)",
            server.frames_sent()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (cpu1, peak1, wall) = (cpu_time(pid), status_bytes(pid, "VmHWM"), t0.elapsed());
    let out = carillon.wait(Duration::from_secs(seconds + 40));
    out.assert_success();
    let s = out.summary();
    eprintln!(
        "flood: {flood_total} frames in {:.2} s; carillon used {:.3} s of CPU; peak resident {:.1} → {:.1} MB; {:?}",
        wall.as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64(),
        peak0 as f64 / 1e6,
        peak1 as f64 / 1e6,
        s.fields
    );

    let sent = server.frames_sent() as u64;
    assert_eq!(
        sent,
        flood_total as u64 + 3,
        "server log: {:?}",
        server.log()
    );
    assert_eq!(s.get("events") + s.get("malformed"), sent, "{:?}", s.fields);
    s.assert_every_event_accounted_for();
    // At most ~60 notes start per second, whatever their kind: the throttle's 50 a
    // second plus a few swells.
    let per_second = s.get("notes") as f64 / wall.as_secs_f64().max(seconds as f64);
    assert!(
        per_second <= 60.0,
        "{per_second:.1} notes a second during the flood: {:?}",
        s.fields
    );
    let cpu_share = (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64();
    assert!(
        cpu_share < 1.0 / 3.0,
        "carillon used {:.0} % of a core during the flood",
        cpu_share * 100.0
    );
    let grew = peak1.saturating_sub(peak0);
    assert!(
        grew < 8 << 20,
        "carillon's peak memory grew by {:.1} MB during the flood",
        grew as f64 / 1e6
    );
    s.assert_zero(&[
        "xruns",
        "late",
        "clamped",
        "nonfinite",
        "bus_resets",
        "audio_allocs",
    ]);
    // When the flood is over, single edits sound as single notes again: the last
    // three onsets of the recording are the three edits sent 0.7 s apart (the flood's
    // own last notes and swells may still ring before them).
    let wav = tap.read();
    let mono = wav.mono();
    let rate = wav.sample_rate as usize;
    let window = mono.len().saturating_sub(rate * 45 / 10);
    let found = onsets(&mono[window..], wav.sample_rate);
    let last = &found[found.len().saturating_sub(3)..];
    let gaps: Vec<f64> = last
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / rate as f64)
        .collect();
    assert!(
        gaps.len() == 2 && gaps.iter().all(|g| (0.65..=0.75).contains(g)),
        "after the flood, three edits 0.7 s apart; onsets at {found:?} in the last 4.5 s"
    );
}

/// A configuration that gives up on a connection that does not open within 1 s, or
/// says nothing for `silence_s`, and retries within a second: the faults below show
/// within a test's time.
fn impatient_config(dir: &std::path::Path, silence_s: u64) -> String {
    let path = dir.join("impatient.toml");
    std::fs::write(
        &path,
        format!("[source]\nconnect_timeout_s = 1\nsilence_timeout_s = {silence_s}\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n"),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path.display().to_string()
}

/// `carillon play` of `url` for `seconds` through a fresh JACK server and tap, with
/// the impatient configuration; returns the running process and what it needs alive.
fn play_impatient(
    url: &str,
    seconds: u64,
    silence_s: u64,
) -> (support::process::Running, JackServer, DeviceTap) {
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let config = impatient_config(tap.dir(), silence_s);
    let duration = seconds.to_string();
    let running = spawn_carillon(
        &[
            "play",
            "--config",
            &config,
            "--source",
            url,
            "--duration",
            &duration,
            "--buffer-frames",
            "256",
        ],
        tap.env(),
    );
    (running, jack, tap)
}

fn count_lines(stderr: &str, needle: &str) -> usize {
    stderr.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_feed_unreachable_at_start_is_retried_until_it_comes_up() {
    // A port with nobody listening, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let (carillon, _jack, _tap) = play_impatient(&url, 6, 30);
    std::thread::sleep(Duration::from_millis(2500));
    let server = WsServer::start_at(port, |_| {
        vec![
            Step::sleep_ms(300),
            Step::text(wikimon_edit("Up", 80, "Main")),
            Step::sleep_ms(300),
            Step::text(wikimon_edit("At", -80, "Main")),
            Step::sleep_ms(300),
            Step::text(wikimon_edit("Last", 800, "Main")),
        ]
    });
    let out = carillon.wait(Duration::from_secs(30));
    out.assert_success();
    let s = out.summary();
    assert!(
        s.get("disconnects") >= 3,
        "retried while down: {:?}",
        s.fields
    );
    assert_eq!(s.get("connects"), 1, "{:?}", s.fields);
    assert_eq!(server.connections(), 1);
    assert_eq!(s.get("notes"), 3, "{:?}", s.fields);
    assert_eq!(
        count_lines(&out.stderr, "is down"),
        1,
        "one line while down:\n{}",
        out.stderr
    );
    assert_eq!(count_lines(&out.stderr, "is back"), 1, "{}", out.stderr);
}

#[test]
fn a_server_that_accepts_and_never_answers_is_left_and_tried_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    // Accepts every connection and keeps it, saying nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for tcp in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(tcp);
        }
    });
    let url = format!("ws://127.0.0.1:{port}/");
    let (carillon, _jack, _tap) = play_impatient(&url, 5, 30);
    let out = carillon.wait(Duration::from_secs(30));
    out.assert_success();
    let s = out.summary();
    let tries = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        tries >= 3,
        "only {tries} connection attempts in 5 s with a 1 s timeout"
    );
    assert!(s.get("disconnects") >= 3, "{:?}", s.fields);
    assert_eq!(s.get("connects"), 0, "{:?}", s.fields);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
}

#[test]
fn half_a_frame_then_silence_is_a_dead_connection() {
    // A text frame announcing 100 bytes, and only 10 of them.
    let mut half = vec![0x81, 100];
    half.extend_from_slice(br#"{"page_tit"#);
    let server = WsServer::start_per_connection(vec![
        vec![Step::sleep_ms(300), Step::Stall(half)],
        vec![
            Step::sleep_ms(300),
            Step::text(wikimon_edit("Whole", 300, "Main")),
            Step::sleep_ms(5000),
        ],
    ]);
    let (carillon, _jack, _tap) = play_impatient(&server.url(), 3, 1);
    let out = carillon.wait(Duration::from_secs(30));
    out.assert_success();
    let s = out.summary();
    // The stalled connection is given up after 1 s of silence; the next one plays its
    // edit (and, idle in its turn, is given up too).
    for (key, expected) in [
        ("malformed", 0),
        ("oversized", 0),
        ("events", 1),
        ("notes", 1),
    ] {
        assert_eq!(s.get(key), expected, "{key} in {:?}", s.fields);
    }
    assert!(s.get("connects") >= 2, "{:?}", s.fields);
    assert!(s.get("disconnects") >= 1, "{:?}", s.fields);
    assert!(out.stderr.contains("no message for 1 s"), "{}", out.stderr);
}

#[test]
fn a_server_that_drops_every_two_seconds_is_followed_without_growing() {
    let seconds = seconds_from_env("CARILLON_FLAP_SECONDS", 20);
    let server = WsServer::start_with(|i| {
        vec![
            Step::sleep_ms(200),
            Step::text(wikimon_edit(&format!("Flap {i}"), 50 + i as i64, "Main")),
            Step::sleep_ms(1800),
            Step::Drop,
        ]
    });
    let (carillon, _jack, _tap) = play_impatient(&server.url(), seconds, 30);
    let pid = carillon.pid();
    // Resident memory once warm (a third in), and at its peak by the end.
    std::thread::sleep(Duration::from_secs(seconds / 3));
    let warm = status_bytes(pid, "VmHWM");
    std::thread::sleep(Duration::from_secs(seconds - seconds / 3 - 1));
    let end = status_bytes(pid, "VmHWM");
    let out = carillon.wait(Duration::from_secs(seconds + 30));
    out.assert_success();
    let s = out.summary();
    eprintln!(
        "flapping for {seconds} s: peak resident {:.2} MB once warm, {:.2} MB at the end; {:?}",
        warm as f64 / 1e6,
        end as f64 / 1e6,
        s.fields
    );
    let connects = s.get("connects");
    assert!(
        connects >= seconds / 4,
        "{connects} connections in {seconds} s of a server dropping every 2 s: {:?}",
        s.fields
    );
    assert!(s.get("disconnects") + 1 >= connects, "{:?}", s.fields);
    // Every connection's edit arrives and sounds.
    assert!(s.get("events") + 1 >= connects, "{:?}", s.fields);
    // (An edit arriving as carillon stops is scored, unheard: silenced.)
    assert_eq!(
        s.get("notes") + s.get("silenced"),
        s.get("events"),
        "{:?}",
        s.fields
    );
    assert!(s.get("silenced") <= 1, "{:?}", s.fields);
    // One pair of log lines a minute at most, however often it drops.
    let down_lines = count_lines(&out.stderr, "is down") as u64;
    assert!(
        down_lines <= 1 + seconds / 60,
        "{down_lines} 'is down' lines in {seconds} s:\n{}",
        out.stderr
    );
    let grew = end.saturating_sub(warm);
    assert!(
        grew < 2 << 20,
        "peak memory grew {:.2} MB over {} reconnections",
        grew as f64 / 1e6,
        connects
    );
}

#[test]
fn a_60_mib_frame_costs_carillon_no_memory_and_is_hung_up_on() {
    let huge = format!("{{\"page_title\": \"{}\"}}", "x".repeat(60 << 20));
    let server = WsServer::start_per_connection(vec![
        vec![Step::sleep_ms(1500), Step::text(huge), Step::sleep_ms(5000)],
        vec![
            Step::sleep_ms(300),
            Step::text(wikimon_edit("After", 90, "Main")),
            Step::sleep_ms(5000),
        ],
    ]);
    let (carillon, _jack, _tap) = play_impatient(&server.url(), 5, 30);
    let pid = carillon.pid();
    assert!(
        server.wait_for_connections(1, Duration::from_secs(10)),
        "carillon never connected"
    );
    std::thread::sleep(Duration::from_millis(800));
    let before = status_bytes(pid, "VmHWM");
    assert!(
        server.wait_for_connections(2, Duration::from_secs(10)),
        "carillon should hang up on the frame and come back: {:?}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = status_bytes(pid, "VmHWM");
    let out = carillon.wait(Duration::from_secs(30));
    out.assert_success();
    let grew = after.saturating_sub(before);
    eprintln!(
        "a 60 MiB frame: peak resident {:.2} → {:.2} MB",
        before as f64 / 1e6,
        after as f64 / 1e6
    );
    assert!(
        grew < 4 << 20,
        "a 60 MiB frame made carillon's peak memory grow {:.1} MB",
        grew as f64 / 1e6
    );
    let s = out.summary();
    for (key, expected) in [("oversized", 1), ("connects", 2), ("notes", 1)] {
        assert_eq!(s.get(key), expected, "{key} in {:?}", s.fields);
    }
}
