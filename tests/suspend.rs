//! Letting the device go in a silence: the real binary, straight into a real JACK server
//! (`--host jack`), playing a live websocket feed that falls silent. Once nothing has
//! sounded for `[output] suspend_after_s`, carillon's client must leave the JACK graph and
//! its threads stop being woken every period; the next edit must bring the client back,
//! heard, neither late nor silenced.

mod support;

use std::time::{Duration, Instant};

use support::procfs::context_switches;
use support::{
    onsets, peak_abs, spawn_carillon, wikimon_edit, JackServer, Step, TempDir, WsServer,
};

/// Wake-ups of `pid`'s threads per second, over `span`.
fn wakeups_per_second(pid: u32, span: Duration) -> f64 {
    let before = context_switches(pid);
    std::thread::sleep(span);
    (context_switches(pid) - before) as f64 / span.as_secs_f64()
}

#[test]
fn a_silent_carillon_leaves_the_jack_graph_and_the_next_edit_brings_it_back_heard() {
    let jack = JackServer::start(256);
    let dir = TempDir::new("suspend");
    let config = dir.path().join("suspend.toml");
    std::fs::write(&config, "[output]\nsuspend_after_s = 1.0\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    // A removal (a clavichord note, damped after 1.5 s), a long silence, then the edit
    // that must wake the device, and one more a second later.
    let removal = |i: i64| Step::text(wikimon_edit(&format!("Page {i}"), -(60 + 40 * i), "Main"));
    let server = WsServer::start(vec![
        Step::sleep_ms(500),
        removal(0),
        Step::sleep_ms(13_000),
        removal(1),
        Step::sleep_ms(1_000),
        removal(2),
        Step::sleep_ms(3_000),
    ]);
    let url = server.url();
    let config_arg = config.to_string_lossy().into_owned();
    let started = Instant::now();
    let carillon = spawn_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--config",
            &config_arg,
            "--source",
            &url,
            "--duration",
            "18",
        ],
        &jack.env(),
    );
    let prefix = format!("cpal_client_{}_out:", carillon.pid());
    jack.wait_for_ports(&prefix, Duration::from_secs(10));
    // Playing: JACK wakes the client thread every 256 frames, 187.5 times a second.
    let playing = wakeups_per_second(carillon.pid(), Duration::from_secs(1));

    // The note, its reverb tail, then a second of silence: the client must be gone
    // well before the next edit comes 13.5 s in.
    let deadline = started + Duration::from_millis(11_500);
    while !jack.ports(&prefix).is_empty() {
        assert!(
            Instant::now() < deadline,
            "carillon's JACK client was still there {:.1} s into a silence that began \
             within 5 s of its start (suspend_after_s = 1)",
            started.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_at = started.elapsed().as_secs_f64();
    let resting = wakeups_per_second(carillon.pid(), Duration::from_secs(2));
    eprintln!(
        "client gone {gone_at:.2} s in; wake-ups per second: {playing:.0} playing, {resting:.1} let go"
    );
    assert!(
        playing >= 150.0,
        "while playing, JACK should wake carillon about 187 times a second; counted {playing:.0}"
    );
    assert!(
        resting <= 20.0,
        "with the device let go carillon should hardly wake at all; counted {resting:.1} wake-ups a second"
    );

    // The edit 13.5 s in brings the client back; record what it plays.
    let ports = jack.wait_for_ports(&prefix, Duration::from_secs(10));
    let back_at = started.elapsed().as_secs_f64();
    assert!(
        back_at >= 13.0,
        "the client came back {back_at:.1} s in, before the edit that should wake it"
    );
    let wav = jack.record(&ports, 3);
    let out = carillon.wait(Duration::from_secs(30));
    out.assert_success();
    for line in out.stderr.lines().filter(|l| l.contains("open again")) {
        eprintln!("{line}");
    }
    let s = out.summary();
    assert!(
        out.stderr
            .contains("the audio output is let go until the next note"),
        "carillon says when it lets the device go:\n{}",
        out.stderr
    );
    assert_eq!(s.get("device_suspends"), 1, "{:?}", s.fields);
    assert_eq!(s.get("device_resumes"), 1, "{:?}", s.fields);
    // Nothing lost: the waking edit and the next are played, heard, and not late.
    assert_eq!(s.get("notes"), 3, "{:?}", s.fields);
    s.assert_zero(&["silenced", "late", "device_losses", "audio_allocs"]);
    let mono = wav.mono();
    let found = onsets(&mono, wav.sample_rate);
    eprintln!(
        "recorded after the return: peak {:.3}, onsets at {found:?}",
        peak_abs(&mono)
    );
    assert!(
        peak_abs(&mono) > 0.01 && !found.is_empty(),
        "after the return carillon's ports should carry the edits; peak {:.4}, onsets {found:?}",
        peak_abs(&mono)
    );
}
