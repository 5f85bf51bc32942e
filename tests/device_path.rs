//! The real binary, through the real device path: `carillon play` reads a
//! scripted wikimon websocket and plays through cpal's default ALSA device,
//! which records every sample into a WAV file and is paced in real time by a
//! private JACK dummy server (see `tests/support`).

mod support;

use std::time::Duration;

use support::procfs::thread_policies;
use support::{
    assert_callbacks_every, cents, count_clipped, expected, latency_row, nearest_csharp_pentatonic,
    onsets, peak_abs, run_carillon, run_command, spawn_carillon, spectrum_peak, wikimon_edit,
    wikimon_newuser, DeviceTap, JackServer, RunOutput, Step, Wav, WsServer, SAMPLE_RATE,
};

const PERIOD_FRAMES: u32 = 256;

/// Runs `carillon play` against `server` for `seconds`, through `tap`; kills it
/// if it has not exited 20 s after the duration.
fn play(server: &WsServer, tap: &DeviceTap, seconds: u32) -> RunOutput {
    let url = server.url();
    let duration = seconds.to_string();
    let buffer = PERIOD_FRAMES.to_string();
    let rate = SAMPLE_RATE.to_string();
    run_carillon(
        &[
            "play",
            "--source",
            &url,
            "--duration",
            &duration,
            "--buffer-frames",
            &buffer,
            "--sample-rate",
            &rate,
        ],
        tap.env(),
        Duration::from_secs(u64::from(seconds) + 20),
    )
}

fn onset_ms(wav: &Wav) -> Vec<f64> {
    onsets(&wav.mono(), wav.sample_rate)
        .into_iter()
        .map(|i| i as f64 * 1000.0 / f64::from(wav.sample_rate))
        .collect()
}

/// Four additions 700 ms apart, the first 1 s after the connection opens.
fn four_spaced_edits() -> Vec<Step> {
    let mut script = vec![Step::sleep_ms(1000)];
    for (title, size) in [
        ("Bell", 40),
        ("Carillon", 180),
        ("Clapper", 900),
        ("Belfry", 3000),
    ] {
        script.push(Step::text(wikimon_edit(title, size, "Main")));
        script.push(Step::sleep_ms(700));
    }
    script
}

#[test]
fn edits_ring_once_each_in_real_time_through_the_device() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let server = WsServer::start(four_spaced_edits());
    let out = play(&server, &tap, 5);
    out.assert_success();

    let summary = out.summary();
    assert_eq!(server.frames_sent(), 4, "server log: {:?}", server.log());
    for (key, expected) in [
        ("events", 4),
        ("notes", 4),
        ("malformed", 0),
        ("connects", 1),
        // The real callback, on the real audio thread, never allocated.
        ("audio_allocs", 0),
    ] {
        assert_eq!(summary.get(key), expected, "{key} in {:?}", summary.fields);
    }

    let wav = tap.read();
    assert_eq!((wav.sample_rate, wav.channels.len()), (SAMPLE_RATE, 2));
    let played = wav.duration().as_secs_f64();
    // Paced by the JACK clock: at least the requested 5 s of audio, and no
    // more than wall time allows (plus the device buffers filled ahead).
    assert!(
        played >= 4.8 && played <= out.elapsed.as_secs_f64() + 0.25,
        "{played:.2} s of audio in {:.2?} of wall time for --duration 5",
        out.elapsed
    );
    let found = onset_ms(&wav);
    assert_eq!(found.len(), 4, "note onsets at {found:?} ms");
    for pair in found.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (650.0..=750.0).contains(&gap),
            "edits 700 ms apart sounded {gap:.0} ms apart (onsets at {found:?} ms)"
        );
    }
}

#[test]
fn each_kind_sounds_its_instrument_at_its_pentatonic_pitch_without_clipping() {
    // A removal, an addition and a new account, 1.2 s apart. The clavichord first:
    // struck 1.2 s into the célesta's ring, its note would be under the ringing bar,
    // where the onset detector cannot find it. The smallest addition, the célesta's
    // highest and shortest note, is damped by the time the violin is listened to.
    let messages = [
        wikimon_edit("Carillon", -25, "Main"),
        wikimon_edit("Bell", 1, "Main"),
        wikimon_newuser("Newcomer"),
    ];
    let mut script = vec![Step::sleep_ms(800)];
    for m in &messages {
        script.push(Step::text(m.clone()));
        script.push(Step::sleep_ms(1200));
    }
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let server = WsServer::start(script);
    let out = play(&server, &tap, 5);
    out.assert_success();
    assert_eq!(out.summary().get("notes"), 3, "{}", out.stderr);

    let wav = tap.read();
    let mono = wav.mono();
    let rate = wav.sample_rate as usize;
    // The struck notes are found by their attacks; the violin swells in too slowly
    // for an onset to be reliable (the detector may or may not catch it), so it is
    // looked for where it was sent, 2.4 s after the first note (notes start a fixed
    // latency after their arrival), and onsets from 2 s on are left aside.
    let all = onsets(&mono, wav.sample_rate);
    let first = *all.first().expect("no note found at all");
    let found: Vec<usize> = all.into_iter().filter(|&i| i < first + 2 * rate).collect();
    assert_eq!(
        found.len(),
        2,
        "expected two struck notes, found onsets at samples {found:?}"
    );
    let gap = (found[1] - found[0]) as f64 / rate as f64;
    assert!(
        (1.15..=1.25).contains(&gap),
        "notes sent 1.2 s apart sounded {gap:.3} s apart"
    );
    let starts = [found[0], found[1], found[0] + rate * 12 / 5];
    // Registers: the clavichord from C#1, the célesta from C#3, the violin from C#4.
    let registers = [(1u8, 34.0, 1000.0), (0, 138.0, 4200.0), (2, 277.0, 560.0)];
    for ((message, &start), (instrument, low, high)) in messages.iter().zip(&starts).zip(registers)
    {
        let (plays, f) = expected(message);
        assert_eq!(
            plays, instrument,
            "{message} should play instrument {instrument}"
        );
        assert!(
            (low..=high).contains(&f),
            "{f:.1} Hz is outside instrument {instrument}'s register"
        );
        let at = start as f64 * 1000.0 / rate as f64;
        // The violin swells in slowly: listen to it later and longer.
        let (from, to) = if instrument == 2 {
            (rate / 2, rate)
        } else {
            (rate / 50, rate / 3)
        };
        let note = &mono[(start + from).min(mono.len())..(start + to).min(mono.len())];
        let measured = spectrum_peak(note, wav.sample_rate, f * 0.97, f * 1.03);
        let off = cents(measured, f);
        assert!(
            off.abs() <= 10.0,
            "note at {at:.0} ms: {measured:.2} Hz is {off:+.1} cents from the expected {f:.2} Hz"
        );
        let (name, from_scale) = nearest_csharp_pentatonic(measured);
        assert!(
            from_scale.abs() <= 10.0,
            "{measured:.2} Hz is {from_scale:+.1} cents from {name}"
        );
        // The note is what is heard: the loudest partial is one of its harmonics.
        let loudest = spectrum_peak(note, wav.sample_rate, 30.0, 8000.0);
        let harmonic = (loudest / f).round().max(1.0);
        assert!(
            harmonic <= 8.0 && cents(loudest, f * harmonic).abs() <= 15.0,
            "note at {at:.0} ms: the loudest partial, {loudest:.1} Hz, is no harmonic of {f:.1} Hz"
        );
    }
    for (c, channel) in wav.channels.iter().enumerate() {
        assert_eq!(
            count_clipped(channel),
            0,
            "channel {c} reaches full scale (peak {})",
            peak_abs(channel)
        );
    }
    // The engine's last clamp would keep the recording under full scale whatever the
    // limiter did: the limiter alone must have held the ceiling.
    assert_eq!(
        out.summary().get("clamped"),
        0,
        "the final clamp had to catch samples: {}",
        out.stderr
    );
}

#[test]
fn reconnects_after_server_drop() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let server = WsServer::start_per_connection(vec![
        vec![
            Step::sleep_ms(500),
            Step::text(wikimon_edit("Bell", 120, "Main")),
            Step::sleep_ms(300),
            Step::Drop,
        ],
        vec![
            Step::sleep_ms(300),
            Step::text(wikimon_edit("Carillon", 240, "Main")),
        ],
    ]);
    let out = play(&server, &tap, 7);
    out.assert_success();

    let summary = out.summary();
    assert_eq!(server.connections(), 2, "server log: {:?}", server.log());
    for (key, expected) in [
        ("connects", 2),
        ("disconnects", 1),
        ("events", 2),
        ("notes", 2),
    ] {
        assert_eq!(summary.get(key), expected, "{key} in {:?}", summary.fields);
    }
    let found = onset_ms(&tap.read());
    assert_eq!(found.len(), 2, "note onsets at {found:?} ms");
    // The outage and the recovery are both logged.
    assert!(
        out.stderr.contains("is down"),
        "no 'feed is down' line in:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("is back"),
        "no 'feed is back' line in:\n{}",
        out.stderr
    );
}

#[test]
fn malformed_messages_are_counted_and_stay_silent() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    // The 2 MiB frame is over the 1 MiB limit: carillon hangs up on it without
    // reading it, and the valid edit comes on the next connection.
    let server = WsServer::start_per_connection(vec![
        vec![
            Step::sleep_ms(500),
            Step::text("this is not JSON"),
            Step::text(r#"{"action": "edit", "change_size": 12"#),
            Step::text("[1, 2"),
            // Wrong types: a number for a title, text for a size.
            Step::text(r#"{"action": "edit", "page_title": 42, "change_size": 3}"#),
            Step::text(r#"{"action": "edit", "page_title": "Bell", "change_size": "big"}"#),
            // Binary junk, and a 2 MiB frame.
            Step::Binary(vec![0xff, 0x00, 0xfe, 0x13, 0x37]),
            Step::text(format!("{{\"page_title\": \"{}\"}}", "x".repeat(2 << 20))),
            Step::sleep_ms(5000),
        ],
        vec![
            Step::sleep_ms(1000),
            Step::text(wikimon_edit("Bell", 300, "Main")),
            Step::sleep_ms(5000),
        ],
    ]);
    let out = play(&server, &tap, 4);
    out.assert_success();

    let summary = out.summary();
    for (key, expected) in [
        ("malformed", 6),
        ("oversized", 1),
        ("events", 1),
        ("notes", 1),
        ("connects", 2),
        ("disconnects", 1),
    ] {
        assert_eq!(summary.get(key), expected, "{key} in {:?}", summary.fields);
    }
    let wav = tap.read();
    let mono = wav.mono();
    let starts = onsets(&mono, wav.sample_rate);
    assert_eq!(
        starts.len(),
        1,
        "expected the one valid edit, found onsets at samples {starts:?}"
    );
    // Silence until the note: the detector may place an onset up to a few ms into
    // the attack, so stop looking 20 ms before it (the junk came 1.5 s earlier).
    let quiet_until = starts[0].saturating_sub(wav.sample_rate as usize / 50);
    let before = peak_abs(&mono[..quiet_until]);
    assert!(
        before < 1e-3,
        "sound (peak {before}) before the valid edit's note"
    );
}

#[test]
fn sigint_and_sigterm_fade_out_within_half_a_second_and_exit_cleanly() {
    // Ctrl-C at a terminal, SIGTERM from systemd or `kill`: the same ending.
    for signal in ["INT", "TERM"] {
        let jack = JackServer::start(PERIOD_FRAMES);
        let tap = DeviceTap::new(&jack);
        // The demo plays a note every half second or so: sound is playing when the
        // signal comes.
        let running = spawn_carillon(
            &[
                "play",
                "--source",
                "demo",
                "--speed",
                "4",
                "--buffer-frames",
                "256",
            ],
            tap.env(),
        );
        std::thread::sleep(Duration::from_millis(2500));
        let mut kill = std::process::Command::new("kill");
        kill.args([&format!("-{signal}"), &running.pid().to_string()]);
        let signalled = std::time::Instant::now();
        run_command(kill, Duration::from_secs(5)).assert_success();
        let out = running.wait(Duration::from_secs(10));
        let took = signalled.elapsed();
        eprintln!("SIG{signal}: exited {took:?} after the signal");
        out.assert_success();
        assert!(out.summary().get("notes") > 0, "{}", out.stderr);
        assert!(
            took <= Duration::from_millis(500),
            "SIG{signal}: exited {took:?} after the signal (at most 0.5 s)"
        );

        let wav = tap.read();
        let mono = wav.mono();
        let rate = wav.sample_rate as usize;
        let body = peak_abs(&mono[rate..2 * rate]);
        assert!(body > 0.01, "the demo should be sounding (peak {body})");
        // The last 10 ms: faded to (near) silence, no cut-off mid-note.
        let tail = peak_abs(&mono[mono.len() - rate / 100..]);
        assert!(
            tail < body * 0.02,
            "SIG{signal}: ends at {tail} after playing at {body}: not faded"
        );
    }
}

#[test]
fn the_audio_thread_asks_for_real_time_priority_and_says_what_it_got() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let running = spawn_carillon(
        &[
            "play",
            "--source",
            "demo",
            "--duration",
            "3",
            "--buffer-frames",
            "256",
        ],
        tap.env(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pid = running.pid();
    let policies = thread_policies(pid);
    let out = running.wait(Duration::from_secs(20));
    out.assert_success();
    let fifo: Vec<(u32, &str)> = policies
        .iter()
        .filter(|(_, _, p)| *p == 1)
        .map(|(tid, name, _)| (*tid, name.as_str()))
        .collect();
    if out
        .stderr
        .contains("the audio thread runs with real-time priority (SCHED_FIFO 70)")
    {
        // The audio thread, and the two that carry an event to the engine's queue: the
        // network runtime's worker and the conductor (the main thread).
        assert!(
            out.stderr.contains(
                "the network and conductor threads run with real-time priority (SCHED_FIFO 60)"
            ),
            "{}",
            out.stderr
        );
        assert_eq!(fifo.len(), 3, "three SCHED_FIFO threads: {policies:?}");
        assert!(
            fifo.iter().any(|&(_, name)| name == "carillon-ingest"),
            "{policies:?}"
        );
        assert!(
            fifo.iter().any(|&(tid, _)| tid == pid),
            "the main thread: {policies:?}"
        );
    } else {
        assert!(
            out.stderr
                .contains("no real-time priority for the audio thread"),
            "carillon does not say what became of its request:\n{}",
            out.stderr
        );
        assert!(fifo.is_empty(), "{policies:?}");
        assert!(!out.stderr.contains("conductor threads"), "{}", out.stderr);
    }
}

#[test]
fn an_unknown_device_is_refused_naming_the_available_ones() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let out = run_carillon(
        &[
            "play",
            "--source",
            "demo",
            "--device",
            "no such card",
            "--duration",
            "1",
        ],
        tap.env(),
        Duration::from_secs(20),
    );
    assert!(
        !out.status.success(),
        "playing on a missing device must fail"
    );
    assert!(out.stderr.contains("no such card"), "{}", out.stderr);
    // The test configuration's one device is named by its description.
    assert!(out.stderr.contains("available:"), "{}", out.stderr);
    let listed = run_carillon(&["devices"], tap.env(), Duration::from_secs(20));
    listed.assert_success();
    let first_device = listed
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .replace(" (default)", "");
    assert!(
        !first_device.is_empty() && out.stderr.contains(first_device.trim()),
        "the error should name {first_device:?}: {}",
        out.stderr
    );
}

#[test]
fn bench_latency_measures_every_note_through_the_device() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let buffer = PERIOD_FRAMES.to_string();
    let out = run_carillon(
        &[
            "bench",
            "latency",
            "--buffer-frames",
            &buffer,
            "--events",
            "12",
            "--rate",
            "20",
            "--json",
        ],
        tap.env(),
        Duration::from_secs(30),
    );
    let row = &latency_row(&out, 12);
    let scheduled_ms = row["scheduling_latency_ms"]
        .as_f64()
        .expect("latency in force");
    let median_ms = row["arrival_to_playback"]["median_us"]
        .as_f64()
        .expect("a median")
        / 1000.0;
    // At least the scheduled delay; at most that plus the look-ahead and a few periods.
    assert!(
        median_ms >= scheduled_ms && median_ms <= scheduled_ms + 5.0 + 30.0,
        "arrival → playback {median_ms:.2} ms with {scheduled_ms:.2} ms scheduled: {row}"
    );
    assert_callbacks_every(row, PERIOD_FRAMES);
}

#[test]
fn bench_latency_measures_the_asap_schedule_beside_the_fixed_one() {
    let jack = JackServer::start(PERIOD_FRAMES);
    let tap = DeviceTap::new(&jack);
    let buffer = PERIOD_FRAMES.to_string();
    let out = run_carillon(
        &[
            "bench",
            "latency",
            "--buffer-frames",
            &buffer,
            "--schedule",
            "fixed,asap",
            "--events",
            "12",
            "--rate",
            "20",
            "--json",
        ],
        tap.env(),
        Duration::from_secs(60),
    );
    out.assert_success();
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON rows");
    let median_ms = |row: &serde_json::Value| {
        row["arrival_to_playback"]["median_us"]
            .as_f64()
            .expect("a median")
            / 1000.0
    };
    let (fixed, asap) = (&rows[0], &rows[1]);
    assert_eq!(fixed["schedule"], "fixed", "{rows}");
    assert_eq!(asap["schedule"], "asap", "{rows}");
    assert_eq!(asap["notes_measured"].as_u64(), Some(12), "{asap}");
    assert_eq!(asap["late"].as_u64(), Some(0), "{asap}");
    // An ASAP note waits for no scheduling latency: it is heard at most the look-ahead
    // (5 ms) and a few periods (5.3 ms each here) after its arrival, well before the
    // fixed schedule's 20 ms and more.
    let period_ms = f64::from(PERIOD_FRAMES) / 48.0;
    assert!(
        median_ms(asap) <= 5.0 + 3.0 * period_ms && median_ms(asap) < median_ms(fixed),
        "asap {:.2} ms, fixed {:.2} ms: {rows}",
        median_ms(asap),
        median_ms(fixed)
    );
    // The event path's share is reported on its own: every note was in the queue
    // after its arrival and before the callback that wrote it.
    for row in [fixed, asap] {
        let queued = row["arrival_to_queue"]["median_us"]
            .as_f64()
            .expect("arrival → queue");
        let written = row["arrival_to_write"]["median_us"]
            .as_f64()
            .expect("arrival → write");
        assert!(
            queued > 0.0 && queued < written,
            "arrival → queue {queued:.0} µs, → write {written:.0} µs: {row}"
        );
    }
}
