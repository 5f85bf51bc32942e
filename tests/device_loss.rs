//! Losing the audio device for 3 s and getting it back, on a real JACK server that the tests
//! stop and start again while the real binary plays a live websocket feed: through
//! the ALSA route (cpal's ALSA host into ALSA's `jack` plugin, recorded by the WAV tap)
//! and straight into JACK (`--host jack`, recorded with `jack_rec`). Also a device
//! missing at start, with and without `--wait-for-device`.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carillon::ingest::replay::parse_rfc3339;
use support::{
    onsets, spawn_carillon, wikimon_edit, DeviceTap, JackServer, RunOutput, Step, TempDir, WsServer,
};

/// An edit every 250 ms for `seconds`, after half a second. Removals: the clavichord
/// is damped 1.5 s after each note, so every note's onset stands out, where the
/// célesta rings for seconds and a pitch struck again while it still rings loud adds
/// no onset the detector can find.
fn steady_edits(seconds: u64) -> Vec<Step> {
    let mut script = vec![Step::sleep_ms(500)];
    for i in 0..seconds * 4 {
        script.push(Step::text(wikimon_edit(
            &format!("Page {i}"),
            -(40 + 17 * i as i64),
            "Main",
        )));
        script.push(Step::sleep_ms(250));
    }
    script
}

/// When carillon logged the first line containing `needle` (its log lines begin with
/// an RFC 3339 UTC time); panics, showing stderr, if there is none.
fn logged_at(out: &RunOutput, needle: &str) -> SystemTime {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("carillon never said {needle:?}:\n{}", out.stderr));
    let stamp = line.split_whitespace().next().unwrap_or_default();
    let seconds = parse_rfc3339(stamp)
        .unwrap_or_else(|| panic!("no time at the start of the log line {line:?}"));
    UNIX_EPOCH + Duration::from_secs_f64(seconds)
}

/// Seconds from `earlier` to `later`, negative if `later` comes first.
fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// What every device-loss run must show: one loss, one return within 2 s of the
/// server's, the feed never dropped, and the counters adding up.
fn assert_lost_and_back(out: &RunOutput, back: SystemTime, sent: u64) {
    out.assert_success();
    let losses = out.stderr.lines().filter(|l| l.contains(" lost: ")).count();
    assert_eq!(losses, 1, "one log line for the loss:\n{}", out.stderr);
    let reopened = logged_at(out, "audio output back after");
    let delay = seconds_between(back, reopened);
    eprintln!("playing again {delay:.3} s after the server was back");
    assert!(
        (-0.05..=2.0).contains(&delay),
        "playing again {delay:.2} s after the server returned (at most 2 s):\n{}",
        out.stderr
    );
    let s = out.summary();
    assert_eq!(s.get("device_losses"), 1, "{:?}", s.fields);
    assert_eq!(s.get("device_reopens"), 1, "{:?}", s.fields);
    // The feed went on while the device was gone: one connection, never dropped.
    assert_eq!(s.get("connects"), 1, "{:?}", s.fields);
    assert_eq!(s.get("disconnects"), 0, "{:?}", s.fields);
    assert_eq!(s.get("events"), sent, "{:?}", s.fields);
    assert!(
        s.get("silenced") >= 4,
        "edits during the outage are scored but silenced: {:?}",
        s.fields
    );
    assert!(
        s.get("notes") >= 8,
        "notes before and after: {:?}",
        s.fields
    );
    // Two streams, two audio threads: neither callback allocated.
    assert_eq!(s.get("audio_allocs"), 0, "{:?}", s.fields);
    s.assert_every_event_accounted_for();
}

#[test]
fn the_alsa_route_plays_again_after_its_jack_server_stops_and_returns() {
    let mut jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let server = WsServer::start(steady_edits(11));
    let url = server.url();
    let carillon = spawn_carillon(
        &[
            "play",
            "--source",
            &url,
            "--duration",
            "12",
            "--buffer-frames",
            "256",
        ],
        tap.env(),
    );
    std::thread::sleep(Duration::from_secs(3));
    // Gone for 3 s: the ALSA route only notices after 1.5 s of the device's silence,
    // and the edits of the rest of the outage are silenced.
    jack.stop();
    std::thread::sleep(Duration::from_secs(3));
    jack.restart();
    let back = SystemTime::now();
    let out = carillon.wait(Duration::from_secs(40));
    assert_lost_and_back(&out, back, 44);
    assert!(
        out.stderr.contains("stopped asking for audio"),
        "the ALSA route reports no error: the stall is what tells\n{}",
        out.stderr
    );
    // The file plugin starts its WAV afresh when the device is reopened: what it holds
    // is what the new stream played, and it must ring.
    let wav = tap.read();
    let found = onsets(&wav.mono(), wav.sample_rate);
    assert!(
        found.len() >= 8,
        "the reopened stream should play the edits after the return; onsets at {found:?} in {:.1} s",
        wav.duration().as_secs_f64()
    );
}

#[test]
fn the_jack_host_plays_again_after_its_server_stops_and_returns() {
    let mut jack = JackServer::start(1024);
    let env = jack.env();
    let server = WsServer::start(steady_edits(13));
    let url = server.url();
    let carillon = spawn_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--source",
            &url,
            "--duration",
            "14",
        ],
        &env,
    );
    std::thread::sleep(Duration::from_secs(3));
    // Gone for 3 s: the ALSA route only notices after 1.5 s of the device's silence,
    // and the edits of the rest of the outage are silenced.
    jack.stop();
    std::thread::sleep(Duration::from_secs(3));
    jack.restart();
    let back = SystemTime::now();
    // Record what carillon's new ports send, once they are there.
    let ports = jack.wait_for_ports(
        &format!("cpal_client_{}_out:", carillon.pid()),
        Duration::from_secs(5),
    );
    let wav = jack.record(&ports, 4);
    let out = carillon.wait(Duration::from_secs(40));
    assert_lost_and_back(&out, back, 52);
    assert!(
        out.stderr.contains("JACK server shut down"),
        "the JACK host says why the stream ended\n{}",
        out.stderr
    );
    let found = onsets(&wav.mono(), wav.sample_rate);
    assert!(
        found.len() >= 6,
        "4 s after the return, carillon's ports should carry the edits; onsets at {found:?}"
    );
}

#[test]
fn wait_for_device_waits_for_a_server_that_comes_up_later() {
    let mut jack = JackServer::start(1024);
    jack.stop();
    let server = WsServer::start(steady_edits(9));
    let url = server.url();
    let started = Instant::now();
    let carillon = spawn_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--wait-for-device",
            "--source",
            &url,
            "--duration",
            "10",
        ],
        &jack.env(),
    );
    std::thread::sleep(Duration::from_secs(3));
    jack.restart();
    let back = SystemTime::now();
    let out = carillon.wait(Duration::from_secs(40));
    out.assert_success();
    assert!(
        out.stderr.contains("waiting for one (--wait-for-device)"),
        "{}",
        out.stderr
    );
    let found = logged_at(&out, "audio output found after");
    let delay = seconds_between(back, found);
    eprintln!("playing {delay:.3} s after the server came up");
    assert!(
        (-0.05..=2.0).contains(&delay),
        "playing {delay:.2} s after the server came up (at most 2 s):\n{}",
        out.stderr
    );
    let s = out.summary();
    assert_eq!(s.get("device_reopens"), 1, "{:?}", s.fields);
    assert_eq!(s.get("device_losses"), 0, "{:?}", s.fields);
    assert!(
        s.get("silenced") >= 4,
        "edits before the device: {:?}",
        s.fields
    );
    assert!(s.get("notes") >= 8, "edits after it: {:?}", s.fields);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn no_device_at_start_is_one_clear_message_without_library_noise() {
    let mut jack = JackServer::start(1024);
    jack.stop();
    let tap_dir = TempDir::new("no-device");
    // The whole ALSA configuration: a default device that cannot exist.
    let conf = tap_dir.path().join("asound.conf");
    std::fs::write(&conf, "pcm.!default { type hw card 7 }\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    let mut env = jack.env();
    env.push(("ALSA_CONFIG_PATH".into(), conf.display().to_string()));
    for host in [None, Some("jack")] {
        let mut args = vec!["play", "--source", "demo", "--duration", "2"];
        if let Some(host) = host {
            args.extend(["--host", host]);
        }
        let out = support::run_carillon(&args, &env, Duration::from_secs(20));
        for hint in [
            "carillon devices",
            "--host jack",
            "--wait-for-device",
            "carillon render",
        ] {
            out.assert_refused_saying(hint);
        }
        let noise: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("ALSA lib") || l.contains("Cannot connect to server"))
            .collect();
        assert!(
            noise.is_empty(),
            "host {host:?}: the audio libraries' own diagnostics reached stderr:\n{}",
            out.stderr
        );
    }
}
