//! A whole day of real edits through `play`, fast: carillon's memory stays flat once
//! warm, it ends by itself once the last note has rung out (no voice left), and every
//! event is accounted for.
//!
//! The day is the wikiticker sample of 2015-09-12 (51 wikis, 39 244 edits), turned into
//! wikimon messages with their recorded times, with a new account inserted every minute
//! of its time (the sample has none). `CARILLON_DAY_SPEED` sets how many times faster
//! than real time it plays: 2400 by default (35 s), 100 for the full run (14 min).

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use carillon::ingest::replay::parse_rfc3339;
use serde_json::{json, Value};
use support::procfs::status_bytes;
use support::{spawn_carillon, DeviceTap, JackServer};

const DAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/wikiticker/wikiticker-2015-09-12-sampled.json.gz"
);

/// The day as wikimon replay lines; how many lines.
fn write_day(path: &std::path::Path) -> usize {
    support::require_tool("gzip", "gzip");
    let unzipped = Command::new("gzip")
        .args(["-dc", DAY])
        .output()
        .unwrap_or_else(|e| panic!("cannot run gzip on {DAY}: {e}"));
    assert!(
        unzipped.status.success(),
        "gzip cannot read the shared corpus file {DAY}: {}",
        String::from_utf8_lossy(&unzipped.stderr)
    );
    let text = String::from_utf8_lossy(&unzipped.stdout);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    );
    let mut first = None;
    let mut next_account = 0.0;
    let mut lines = 0;
    for line in text.lines() {
        let edit: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{DAY}: a line is not JSON ({e}): {line}"));
        let at = edit["time"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or_else(|| panic!("{DAY}: no time in {line}"));
        let t = at - *first.get_or_insert(at);
        while next_account <= t {
            let account = json!({
                "_t": next_account, "action": "create", "change_size": null,
                "page_title": "Special:Log/newusers", "user": format!("Newcomer {lines}"),
                "ns": "Special", "is_anon": false, "is_bot": false,
            });
            writeln!(out, "{account}").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            next_account += 60.0;
            lines += 1;
        }
        let message = json!({
            "_t": t,
            "action": if edit["isNew"] == true { "new" } else { "edit" },
            "change_size": edit["delta"],
            "page_title": edit["page"],
            "user": edit["user"],
            "is_anon": edit["isAnonymous"],
            "is_bot": edit["isRobot"],
            "is_minor": edit["isMinor"],
            "is_new": edit["isNew"],
            "ns": edit["namespace"],
        });
        writeln!(out, "{message}").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        lines += 1;
    }
    out.flush()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lines
}

#[test]
fn a_whole_day_replayed_keeps_memory_flat_and_ends_with_no_voice_left() {
    let speed: f64 = match std::env::var("CARILLON_DAY_SPEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("CARILLON_DAY_SPEED={v:?} is not a number: {e}")),
        Err(_) => 2400.0,
    };
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let day = tap.dir().join("day.jsonl");
    let lines = write_day(&day);
    assert!(
        lines > 39_244,
        "the day and its new accounts: {lines} lines"
    );
    let source = format!("replay:{}", day.display());
    let speed_arg = speed.to_string();
    let started = Instant::now();
    let carillon = spawn_carillon(
        &[
            "play",
            "--source",
            &source,
            "--speed",
            &speed_arg,
            "--buffer-frames",
            "256",
        ],
        tap.env(),
    );
    let pid = carillon.pid();
    // The day lasts 83 000 s of recorded time.
    let expected = Duration::from_secs_f64(83_000.0 / speed);
    std::thread::sleep(expected / 4);
    let warm = status_bytes(pid, "VmHWM");
    std::thread::sleep(expected * 2 / 3);
    let late = status_bytes(pid, "VmHWM");
    let out = carillon.wait(expected + Duration::from_secs(60));
    out.assert_success();
    let took = started.elapsed();
    eprintln!(
        "day at {speed}×: {:.1} s; peak resident {:.2} MB once warm, {:.2} MB near the end\n{}",
        took.as_secs_f64(),
        warm as f64 / 1e6,
        late as f64 / 1e6,
        out.summary()
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        out.stderr.contains("the source has ended"),
        "carillon should end by itself once the day and its last notes are over:\n{}",
        out.stderr
    );
    let grew = late.saturating_sub(warm);
    assert!(
        grew < 2 << 20,
        "peak memory grew {:.2} MB after warming up",
        grew as f64 / 1e6
    );
    let s = out.summary();
    assert_eq!(
        s.get("events") + s.get("malformed"),
        lines as u64,
        "{:?}",
        s.fields
    );
    assert_eq!(s.get("malformed"), 0, "{:?}", s.fields);
    s.assert_every_event_accounted_for();
    s.assert_zero(&[
        "late",
        "clamped",
        "nonfinite",
        "bus_resets",
        "device_losses",
        "audio_allocs",
    ]);
}
