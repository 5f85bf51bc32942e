//! `--host jack`: carillon plays straight into a JACK server through cpal's JACK host,
//! with no ALSA bridge. A JACK recorder (`jack_rec`) connected to carillon's output
//! ports captures exactly what reached the server.

mod support;

use std::time::Duration;

use support::procfs::realtime_threads;
use support::{
    assert_callbacks_every, cents, expected, latency_row, onsets, run_carillon, spawn_carillon,
    spectrum_peak, wikimon_edit, JackServer, Step, WsServer,
};

/// Long periods (21 ms): JACK's clients here run without real-time priority, so a
/// short period on a busy machine would drop cycles, and the recording with them.
const PERIOD_FRAMES: u32 = 1024;

#[test]
fn plays_straight_into_jack_at_the_server_period() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let env = jack.env();
    // The clavichord first: struck 1 s into the célesta's ring, its note would be
    // under the ringing bar, where the onset detector cannot find it.
    let messages = [
        wikimon_edit("Carillon", -25, "Main"),
        wikimon_edit("Bell", 40, "Main"),
    ];
    // Time for the recorder to connect before the first note.
    let script = vec![
        Step::sleep_ms(2000),
        Step::text(messages[0].clone()),
        Step::sleep_ms(1000),
        Step::text(messages[1].clone()),
        Step::sleep_ms(3000),
    ];
    let server = WsServer::start(script);
    let url = server.url();
    // A buffer size the server does not run at: carillon plays at the server's.
    let carillon = spawn_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--source",
            &url,
            "--duration",
            "5",
            "--buffer-frames",
            "128",
        ],
        &env,
    );
    let ports = jack.wait_for_ports(
        &format!("cpal_client_{}_out:", carillon.pid()),
        Duration::from_secs(10),
    );
    assert_eq!(ports.len(), 2, "carillon's JACK ports: {ports:?}");
    let wav = jack.record(&ports, 4);
    let out = carillon.wait(Duration::from_secs(20));
    out.assert_success();
    assert!(
        out.stderr.contains("runs at 1024 frames per buffer"),
        "no word that the server's period is in force:\n{}",
        out.stderr
    );
    // This server runs its clients without real-time priority: carillon says so, and
    // leaves the event path where it is.
    assert!(
        out.stderr
            .contains("the JACK server runs its clients without real-time priority"),
        "no word that the audio thread has no real-time priority:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("conductor threads"), "{}", out.stderr);
    assert_eq!(out.summary().get("notes"), 2, "{}", out.stderr);

    let mono = wav.mono();
    let rate = wav.sample_rate as usize;
    let found = onsets(&mono, wav.sample_rate);
    assert_eq!(
        found.len(),
        2,
        "two edits, but onsets at samples {found:?} in what JACK received ({} xruns in the server's log)",
        jack.xruns()
    );
    let gap = (found[1] - found[0]) as f64 / rate as f64;
    assert!(
        (0.95..=1.05).contains(&gap),
        "edits sent 1 s apart sounded {gap:.3} s apart"
    );
    for (message, &start) in messages.iter().zip(&found) {
        let (_, f) = expected(message);
        let note = &mono[(start + rate / 50).min(mono.len())..(start + rate / 3).min(mono.len())];
        let measured = spectrum_peak(note, wav.sample_rate, f * 0.97, f * 1.03);
        assert!(
            cents(measured, f).abs() <= 10.0,
            "{measured:.2} Hz heard where the score plays {f:.2} Hz"
        );
    }
}

/// A server started with `-R` gives its clients' threads real-time priority itself:
/// carillon reads what its audio thread was given, says so, and raises the two threads
/// that bring that thread its notes (the network worker and the conductor) to match.
/// Without them, on a busy machine, notes miss their block.
#[test]
fn under_a_real_time_jack_server_the_event_path_is_raised_too() {
    let jack = JackServer::start_realtime(256);
    let running = spawn_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--source",
            "demo",
            "--duration",
            "3",
        ],
        &jack.env(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pid = running.pid();
    let realtime = realtime_threads(pid);
    let out = running.wait(Duration::from_secs(20));
    out.assert_success();
    assert!(
        out.stderr.contains("given by the JACK server"),
        "no word of the priority the JACK server gave the audio thread:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("the network and conductor threads run with real-time priority"),
        "the event path was not raised:\n{}",
        out.stderr
    );
    // The conductor is the main thread; JACK's own thread has carillon's name too.
    assert!(
        realtime.iter().any(|(_, name)| name == "carillon-ingest"),
        "the network worker: {realtime:?}"
    );
    assert!(
        realtime.iter().any(|&(tid, _)| tid == pid),
        "the conductor: {realtime:?}"
    );
}

#[test]
fn bench_latency_measures_through_jack_and_refuses_a_period_the_server_does_not_run() {
    let jack = JackServer::start(64);
    let env = jack.env();
    let out = run_carillon(
        &[
            "bench",
            "latency",
            "--host",
            "jack",
            "--buffer-frames",
            "64",
            "--events",
            "12",
            "--rate",
            "20",
            "--json",
        ],
        &env,
        Duration::from_secs(30),
    );
    let row = latency_row(&out, 12);
    // JACK's own process callbacks, one a period.
    assert_callbacks_every(&row, 64);

    let refused = run_carillon(
        &[
            "bench",
            "latency",
            "--host",
            "jack",
            "--buffer-frames",
            "256",
            "--events",
            "1",
        ],
        &env,
        Duration::from_secs(30),
    );
    // Not measured at a period the server does not run.
    refused.assert_refused_saying("runs at 64 frames");
}

#[test]
fn no_jack_server_is_a_clear_error() {
    let out = run_carillon(
        &[
            "play",
            "--host",
            "jack",
            "--source",
            "demo",
            "--duration",
            "1",
        ],
        &[
            (
                "JACK_DEFAULT_SERVER".to_owned(),
                support::tempdir::unique_name("absent"),
            ),
            ("JACK_NO_START_SERVER".to_owned(), "1".to_owned()),
        ],
        Duration::from_secs(20),
    );
    out.assert_refused_saying("Is a JACK server running");
}

#[test]
fn an_unknown_host_is_refused_naming_the_hosts_there_are() {
    let out = run_carillon(
        &[
            "play",
            "--host",
            "coreaudio-on-linux",
            "--source",
            "demo",
            "--duration",
            "1",
        ],
        &[],
        Duration::from_secs(20),
    );
    out.assert_refused_saying("no audio host named \"coreaudio-on-linux\"; this build has:");
    out.assert_refused_saying("alsa");
}
