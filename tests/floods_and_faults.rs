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
    for title in after {
        script.push(Step::text(wikimon_edit(title, 120, "Main")));
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
    let accounted = [
        "notes",
        "filtered",
        "throttled",
        "engine_full",
        "backlog",
        "silenced",
    ]
    .iter()
    .map(|k| s.get(k))
    .sum::<u64>();
    assert_eq!(
        accounted,
        s.get("events"),
        "counters add up: {:?}",
        s.fields
    );
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
    for key in ["xruns", "late", "clamped", "nonfinite", "bus_resets"] {
        assert_eq!(s.get(key), 0, "{key} during the flood: {:?}", s.fields);
    }
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
