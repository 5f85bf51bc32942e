//! Tests of the test harness itself (`tests/support`): its analysis against
//! synthetic signals, its WAV reader, its websocket server, and the JACK +
//! ALSA recording chain end to end with `aplay`. None of them runs carillon.

mod support;

use std::f64::consts::PI;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use support::wav::parse_wav_lenient;
use support::{
    cents, count_clipped, fft, nearest_csharp_pentatonic, onsets, peak_abs, read_wav_lenient,
    require_tool, run_command, spectrum_peak, wikimon_edit, wikimon_newuser, DeviceTap, JackServer,
    Step, Summary, WsServer, SAMPLE_RATE,
};

const SR: u32 = SAMPLE_RATE;

fn sine(freq: f64, seconds: f64, amplitude: f64) -> Vec<f32> {
    let n = (seconds * f64::from(SR)) as usize;
    (0..n)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(SR)).sin()) as f32)
        .collect()
}

/// A struck, decaying tone (2 ms attack, exponential decay with time constant
/// `decay` seconds), like a célesta or clavichord note.
fn struck(freq: f64, seconds: f64, decay: f64) -> Vec<f32> {
    let attack = 0.002 * f64::from(SR);
    sine(freq, seconds, 0.5)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let t = i as f64 / f64::from(SR);
            let envelope = (i as f64 / attack).min(1.0) * (-t / decay).exp();
            (f64::from(s) * envelope) as f32
        })
        .collect()
}

/// A célesta-like bell: a sine carrier frequency-modulated at its own frequency
/// by an index that falls from 1.6 with a 70 ms time constant, so that its
/// fundamental grows out of the first tens of milliseconds' sidebands; 2 ms
/// attack, then an exponential decay with time constant `decay` seconds.
fn fm_bell(freq: f64, seconds: f64, level: f64, decay: f64) -> Vec<f32> {
    let n = (seconds * f64::from(SR)) as usize;
    let attack = 0.002 * f64::from(SR);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SR);
            let index = 1.6 * (-t / 0.07).exp();
            let phase = 2.0 * PI * freq * t;
            let envelope = (i as f64 / attack).min(1.0) * (-t / decay).exp();
            (level * envelope * (phase + index * phase.sin()).sin()) as f32
        })
        .collect()
}

/// Deterministic white noise in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f64 / f64::from(1u32 << 23) - 1.0) as f32
        })
        .collect()
}

fn mix_at(out: &mut [f32], at_seconds: f64, sound: &[f32]) {
    let start = (at_seconds * f64::from(SR)) as usize;
    for (o, s) in out[start..].iter_mut().zip(sound) {
        *o += s;
    }
}

fn ms(samples: usize) -> f64 {
    samples as f64 * 1000.0 / f64::from(SR)
}

// ---- analysis ----

#[test]
fn fft_matches_a_direct_dft() {
    let x: Vec<f64> = noise(64, 7).iter().map(|&s| f64::from(s)).collect();
    let mut re = x.clone();
    let mut im = vec![0.0; 64];
    fft(&mut re, &mut im);
    for k in 0..64 {
        let (mut dr, mut di) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let angle = -2.0 * PI * (k * n) as f64 / 64.0;
            dr += v * angle.cos();
            di += v * angle.sin();
        }
        assert!(
            (re[k] - dr).abs() < 1e-9 && (im[k] - di).abs() < 1e-9,
            "bin {k}: fft ({}, {}) vs dft ({dr}, {di})",
            re[k],
            im[k]
        );
    }
}

#[test]
fn spectrum_peak_of_a_csharp4_sine_is_within_one_cent() {
    let f = spectrum_peak(&sine(277.18, 0.5, 0.5), SR, 50.0, 2000.0);
    assert!(cents(f, 277.18).abs() < 1.0, "277.18 Hz measured as {f} Hz");
}

#[test]
fn spectrum_peak_is_within_one_cent_across_registers_for_short_notes() {
    for &freq in &[69.30, 155.56, 369.99, 830.61, 1864.66, 4434.92] {
        for &seconds in &[0.1, 0.25, 1.0] {
            let f = spectrum_peak(&sine(freq, seconds, 0.3), SR, 40.0, 8000.0);
            assert!(
                cents(f, freq).abs() < 1.0,
                "{freq} Hz over {seconds} s measured as {f} Hz ({:.2} cents)",
                cents(f, freq)
            );
        }
    }
}

#[test]
fn spectrum_peak_only_looks_inside_its_band() {
    let mut signal = sine(440.0, 0.5, 0.8);
    mix_at(&mut signal, 0.0, &sine(1108.73, 0.5, 0.1));
    let f = spectrum_peak(&signal, SR, 800.0, 2000.0);
    assert!(
        cents(f, 1108.73).abs() < 1.0,
        "band 800..2000 Hz gave {f} Hz"
    );
}

#[test]
fn onsets_finds_three_spaced_tone_bursts() {
    let mut signal = vec![0.0; 2 * SR as usize];
    let starts = [0.2, 0.7, 1.3];
    for (&at, freq) in starts.iter().zip([277.18, 311.13, 369.99]) {
        mix_at(&mut signal, at, &struck(freq, 0.4, 0.15));
    }
    let found = onsets(&signal, SR);
    assert_eq!(
        found.len(),
        3,
        "onsets at {:?} ms",
        found.iter().map(|&i| ms(i)).collect::<Vec<_>>()
    );
    for (&i, &at) in found.iter().zip(&starts) {
        let error_ms = ms(i) - at * 1000.0;
        assert!(
            (-5.0..=5.0).contains(&error_ms),
            "onset at {:.1} ms for a burst at {:.0} ms",
            ms(i),
            at * 1000.0
        );
    }
}

/// A two-pole low-pass (`a` = 1 passes everything): noise through it swells
/// and fades at random, the faster the wider it is, like a diffuse reverb tail.
fn lowpass(signal: &[f32], a: f32) -> Vec<f32> {
    let (mut y, mut z) = (0.0, 0.0);
    signal
        .iter()
        .map(|&x| {
            y += a * (x - y);
            z += a * (y - z);
            z
        })
        .collect()
}

#[test]
fn onsets_ignores_a_reverb_tail_but_hears_a_note_inside_it() {
    // A note with a 2 s noise-like tail 10 dB under it, decaying 60 dB over the
    // 2 s, that still rings when the second note comes in at 0.9 s; the tail
    // from wide (white) to narrow (about 20 Hz), each with a few random draws.
    for seed in 1..=5 {
        for a in [1.0, 0.05, 0.01, 0.003] {
            let raw = lowpass(&noise(2 * SR as usize, seed), a);
            let scale = 0.15 / peak_abs(&raw);
            let tail: Vec<f32> = raw
                .iter()
                .enumerate()
                .map(|(i, &n)| n * scale * (-(i as f32) / SR as f32 * 3.45).exp())
                .collect();
            let mut signal = vec![0.0; 3 * SR as usize];
            mix_at(&mut signal, 0.1, &struck(554.37, 0.3, 0.08));
            mix_at(&mut signal, 0.1, &tail);
            let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
            assert_eq!(
                found,
                [100.0],
                "tail alone (seed {seed}, low-pass {a}): onsets at {found:?} ms"
            );
            mix_at(&mut signal, 0.9, &struck(466.16, 0.6, 0.2));
            let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
            assert_eq!(
                found.len(),
                2,
                "seed {seed}, low-pass {a}: onsets at {found:?} ms"
            );
            assert!(
                (895.0..=905.0).contains(&found[1]),
                "seed {seed}, low-pass {a}: second onset at {} ms",
                found[1]
            );
        }
    }
}

#[test]
fn onsets_hears_notes_200_ms_apart_over_their_own_ringing() {
    // Twenty pentatonic notes, each ringing for 2 s with a 0.8 s decay: by the
    // tenth, several louder notes still ring under each new one.
    let pitches = [
        277.18, 311.13, 369.99, 415.30, 466.16, 554.37, 622.25, 739.99,
    ];
    let mut signal = vec![0.0; 6 * SR as usize];
    let starts: Vec<f64> = (0..20).map(|n| 0.1 + 0.2 * f64::from(n)).collect();
    for (n, &at) in starts.iter().enumerate() {
        mix_at(&mut signal, at, &struck(pitches[(n * 3) % 8], 2.0, 0.8));
    }
    let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
    assert_eq!(found.len(), starts.len(), "onsets at {found:?} ms");
    for (&got, &at) in found.iter().zip(&starts) {
        let late = got - at * 1000.0;
        assert!(
            (-5.0..=25.0).contains(&late),
            "note at {} ms found at {got} ms",
            at * 1000.0
        );
    }
}

/// `sound` with a 20 ms fade-out, so that its end is not a click.
fn faded(mut sound: Vec<f32>) -> Vec<f32> {
    let fade = (SR / 50) as usize;
    let len = sound.len();
    for (i, s) in sound[len - fade..].iter_mut().enumerate() {
        *s *= 1.0 - i as f32 / fade as f32;
    }
    sound
}

#[test]
fn onsets_ignores_beating_and_vibrato_of_held_tones() {
    let mut beating = vec![0.0; 3 * SR as usize];
    mix_at(&mut beating, 0.2, &faded(sine(440.0, 2.0, 0.3)));
    mix_at(&mut beating, 0.2, &faded(sine(443.0, 2.0, 0.3)));
    let found: Vec<f64> = onsets(&beating, SR).into_iter().map(ms).collect();
    assert_eq!(
        found,
        [200.0],
        "two tones beating at 3 Hz: onsets at {found:?} ms"
    );

    let mut phase = 0.0f64;
    let vibrato = (0..2 * SR as usize)
        .map(|i| {
            let t = i as f64 / f64::from(SR);
            let f = 440.0 * 2f64.powf(0.3 / 12.0 * (2.0 * PI * 5.5 * t).sin());
            phase += 2.0 * PI * f / f64::from(SR);
            (0.4 * phase.sin()) as f32
        })
        .collect();
    let mut signal = vec![0.0; 3 * SR as usize];
    mix_at(&mut signal, 0.2, &faded(vibrato));
    let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
    assert_eq!(found, [200.0], "a 30-cent vibrato: onsets at {found:?} ms");
}

#[test]
fn onsets_hears_a_bell_a_tone_above_a_ringing_one_once() {
    // Two notes a whole tone apart beat at 51 Hz, about once per window: just
    // after the second note starts, while its fundamental still grows out of
    // its sidebands, a window that catches the beat at its peak can hold 6 dB
    // more in a bin than the windows of the new note its baseline has seen.
    // Swept over where the note falls against the beat and the 5 ms hops, and
    // over how loud it is against the ringing one.
    let mut wrong = Vec::new();
    for level in [0.6, 0.4, 0.3] {
        for offset_ms in 0..24 {
            let mut signal = vec![0.0; 3 * SR as usize];
            mix_at(&mut signal, 0.2, &fm_bell(415.30, 2.5, 0.5, 3.0));
            let at = 1.0 + f64::from(offset_ms) / 1000.0;
            mix_at(&mut signal, at, &fm_bell(466.16, 1.5, level, 1.5));
            let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
            if found.len() != 2 {
                wrong.push(format!("{level} at {:.0} ms: {found:?}", at * 1000.0));
            }
        }
    }
    assert!(wrong.is_empty(), "not two onsets: {wrong:#?}");
}

#[test]
fn onsets_counts_a_slow_swell_once() {
    // A violin-like swell: 400 ms linear rise from silence, 600 ms sustain.
    let rise = 0.4 * f64::from(SR);
    let swell: Vec<f32> = sine(392.0, 1.0, 0.5)
        .into_iter()
        .enumerate()
        .map(|(i, s)| s * (i as f64 / rise).min(1.0) as f32)
        .collect();
    let mut signal = vec![0.0; SR as usize * 3 / 2];
    mix_at(&mut signal, 0.25, &swell);
    let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
    assert_eq!(found.len(), 1, "onsets at {found:?} ms");
    assert!(
        (250.0..=300.0).contains(&found[0]),
        "swell onset at {} ms",
        found[0]
    );
}

#[test]
fn onsets_finds_low_notes_and_nothing_in_silence() {
    assert!(onsets(&vec![0.0; SR as usize], SR).is_empty());
    let mut signal = vec![0.0; 2 * SR as usize];
    mix_at(&mut signal, 0.3, &struck(69.30, 0.6, 0.3));
    mix_at(&mut signal, 1.2, &struck(69.30, 0.6, 0.3));
    let found: Vec<f64> = onsets(&signal, SR).into_iter().map(ms).collect();
    assert_eq!(found.len(), 2, "onsets of two 69 Hz notes at {found:?} ms");
}

#[test]
fn cents_measures_intervals() {
    assert!((cents(880.0, 440.0) - 1200.0).abs() < 1e-9);
    assert!((cents(440.0, 880.0) + 1200.0).abs() < 1e-9);
    assert!((cents(440.0 * 2f64.powf(1.0 / 1200.0), 440.0) - 1.0).abs() < 1e-9);
}

/// The 12-TET frequency of a MIDI note, A4 (69) = 440 Hz.
fn note_hz(midi: i32) -> f64 {
    440.0 * 2f64.powf(f64::from(midi - 69) / 12.0)
}

#[test]
fn nearest_csharp_pentatonic_names_the_scale_note_and_the_offset() {
    let check = |f: f64, name: &str, offset: f64| {
        let (got, off) = nearest_csharp_pentatonic(f);
        assert_eq!(got, name, "{f} Hz");
        assert!(
            (off - offset).abs() < 1e-6,
            "{f} Hz: {off} cents, expected {offset}"
        );
    };
    check(note_hz(61), "C#4", 0.0);
    check(note_hz(63), "D#4", 0.0);
    check(note_hz(78), "F#5", 0.0);
    check(note_hz(44), "G#2", 0.0);
    check(note_hz(94), "A#6", 0.0);
    check(note_hz(61) * 2f64.powf(-30.0 / 1200.0), "C#4", -30.0);
    // Not on the scale: the nearest scale note, and how far off.
    check(430.0, "G#4", cents(430.0, note_hz(68)));
    check(note_hz(60), "C#4", -100.0);
    check(note_hz(64), "D#4", 100.0);
    check(note_hz(71), "A#4", 100.0);
}

#[test]
fn peak_and_clipping_count_16_bit_full_scale() {
    let samples = [0.1, -0.5, 32767.0 / 32768.0, -1.0, 0.999, 0.25];
    assert_eq!(peak_abs(&samples), 1.0);
    assert_eq!(count_clipped(&samples), 2);
    assert_eq!(count_clipped(&[0.999, -0.5]), 0);
}

// ---- WAV reader ----

fn write_hound(path: &std::path::Path, channels: u16, frames: &[[i16; 2]]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: SR,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create WAV");
    for frame in frames {
        for &s in &frame[..usize::from(channels)] {
            writer.write_sample(s).expect("write sample");
        }
    }
    writer.finalize().expect("finalize WAV");
}

#[test]
fn wav_reader_reads_a_complete_file() {
    let dir = support::TempDir::new("wav");
    let path = dir.path().join("complete.wav");
    write_hound(&path, 2, &[[0, 16384], [-32768, 32767], [1, -1]]);
    let wav = read_wav_lenient(&path).expect("read");
    assert!(wav.header_complete);
    assert_eq!(
        (wav.sample_rate, wav.channels.len(), wav.frames()),
        (SR, 2, 3)
    );
    assert_eq!(wav.channel(0), &[0.0, -1.0, 1.0 / 32768.0]);
    assert_eq!(wav.channel(1), &[0.5, 32767.0 / 32768.0, -1.0 / 32768.0]);
}

#[test]
fn wav_reader_takes_samples_to_the_end_when_the_header_was_never_finished() {
    let dir = support::TempDir::new("wav");
    let path = dir.path().join("killed.wav");
    write_hound(&path, 2, &[[100, 200], [300, 400], [500, 600]]);
    let mut bytes = std::fs::read(&path).expect("read back");
    // What the ALSA file plugin leaves when its process dies: zero sizes, and
    // here also half a frame at the end.
    bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    bytes[data + 4..data + 8].copy_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&[7, 0]);
    let wav = parse_wav_lenient(&bytes).expect("lenient parse");
    assert!(!wav.header_complete);
    assert_eq!(wav.frames(), 3);
    assert_eq!(wav.channel(1)[2], 600.0 / 32768.0);
    let hound_frames = hound::WavReader::new(&bytes[..])
        .map(|r| r.len())
        .unwrap_or(0);
    assert_eq!(
        hound_frames, 0,
        "hound now reads unfinished headers; the hand parser may go"
    );
}

#[test]
fn wav_reader_rejects_what_it_cannot_read() {
    assert!(parse_wav_lenient(b"not a wav file at all").is_err());
    let dir = support::TempDir::new("wav");
    let path = dir.path().join("float.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SR,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&path, spec).expect("create WAV");
    writer.write_sample(0.5f32).expect("write sample");
    writer.finalize().expect("finalize WAV");
    let error = read_wav_lenient(&path).expect_err("32-bit float is not 16-bit PCM");
    assert!(error.contains("expected"), "{error}");
}

// ---- process runner and summary ----

#[test]
fn run_command_captures_output_and_exit_code() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo out; echo err >&2; exit 3"]);
    let out = run_command(command, Duration::from_secs(10));
    assert!(!out.timed_out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
}

#[test]
fn run_command_kills_a_process_that_overruns() {
    let mut command = Command::new("sleep");
    command.arg("30");
    let out = run_command(command, Duration::from_millis(300));
    assert!(out.timed_out);
    assert!(!out.status.success());
    assert!(
        out.elapsed < Duration::from_secs(5),
        "killed only after {:?}",
        out.elapsed
    );
}

#[test]
fn summary_parses_the_last_summary_line() {
    let stderr = "INFO starting\nsummary: events=1 notes=1\nwarning\n\
                  summary: events=12 notes=9 throttled=2 filtered=1 malformed=0 oversized=0 connects=1 disconnects=0 extra=x\n";
    let summary = Summary::parse(stderr).expect("summary line");
    assert_eq!(summary.get("events"), 12);
    assert_eq!(summary.get("notes"), 9);
    assert_eq!(summary.get("disconnects"), 0);
    assert_eq!(summary.fields["extra"], "x");
    assert!(Summary::parse("no summary here\n").is_none());
}

// ---- websocket server ----

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

#[test]
fn ws_server_plays_each_connection_its_script_and_counts_reconnections() {
    let server = WsServer::start_per_connection(vec![
        vec![
            Step::text("first"),
            Step::Binary(vec![1, 2, 3]),
            Step::sleep_ms(300),
            Step::text("after the pause"),
            Step::Drop,
        ],
        vec![Step::text("second"), Step::Close],
    ]);
    client_runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("first connection");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("first")
        );
        let binary = ws.next().await.expect("frame").expect("ok");
        let sent_at = Instant::now();
        assert_eq!(binary, Message::binary(vec![1, 2, 3]));
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("after the pause")
        );
        assert!(
            sent_at.elapsed() >= Duration::from_millis(280),
            "pause was {:?}",
            sent_at.elapsed()
        );
        // Dropped without a close frame: an error or the end, never a message.
        assert!(
            !matches!(ws.next().await, Some(Ok(_))),
            "dropped connection delivered a message"
        );

        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("second connection");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("second")
        );
        assert!(
            matches!(ws.next().await, Some(Ok(Message::Close(_)))),
            "expected a close frame"
        );
    });
    assert_eq!(server.connections(), 2, "server log: {:?}", server.log());
    assert_eq!(server.frames_sent(), 4);
}

#[test]
fn ws_server_sends_raw_text_and_then_stays_open() {
    let server = WsServer::start(vec![
        Step::RawText(b"{}".to_vec()),
        Step::RawText(vec![b'{', 0xff, 0xfe]),
    ]);
    client_runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("connect");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("{}")
        );
        let invalid = ws.next().await.expect("frame");
        assert!(
            matches!(invalid, Err(tokio_tungstenite::tungstenite::Error::Utf8(_))),
            "a text frame of invalid UTF-8 should be refused by the client, got {invalid:?}"
        );
    });
    // A second client gets the same script, and after it the connection idles.
    client_runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("reconnect");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("{}")
        );
        let _invalid = ws.next().await;
    });
    let idle_server = WsServer::start(vec![Step::text("only")]);
    client_runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(idle_server.url())
            .await
            .expect("connect");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text("only")
        );
        let quiet = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        assert!(quiet.is_err(), "idle connection sent {quiet:?}");
    });
    assert_eq!(server.connections(), 2);
    assert_eq!(idle_server.connections(), 1);
}

// ---- wikimon messages ----

fn corpus_line(index: usize) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/wikimedia/wikimon_newuser_examples.jsonl"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the shared corpus is needed here: cannot read {path}: {e}"));
    let line = text.lines().nth(index).expect("corpus line");
    serde_json::from_str(line).expect("corpus line is JSON")
}

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn wikimon_messages_have_the_fields_of_real_ones() {
    let edit: serde_json::Value =
        serde_json::from_str(&wikimon_edit("Bell", -81, "Main")).expect("edit is JSON");
    assert_eq!(keys(&edit), keys(&corpus_line(4)));
    assert_eq!(edit["action"], "edit");
    assert_eq!(edit["change_size"], -81);
    assert_eq!(edit["page_title"], "Bell");
    assert_eq!(edit["ns"], "Main");

    let newuser: serde_json::Value =
        serde_json::from_str(&wikimon_newuser("Ringer")).expect("newuser is JSON");
    let real = corpus_line(0);
    assert_eq!(keys(&newuser), keys(&real));
    for field in ["action", "change_size", "ns", "page_title", "summary"] {
        assert_eq!(newuser[field], real[field], "field {field}");
    }
    assert_eq!(newuser["user"], "Ringer");
}

// ---- the device chain, end to end, with aplay ----

#[test]
fn missing_tool_names_its_package() {
    let result = std::panic::catch_unwind(|| require_tool("carillon-no-such-tool", "carillon-pkg"));
    let message = result
        .expect_err("a missing tool must panic")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("`carillon-no-such-tool` is not installed")
            && message.contains("apt-get install -y --no-install-recommends carillon-pkg"),
        "{message}"
    );
}

#[test]
fn jack_file_chain_records_an_aplay_tone_exactly_and_in_real_time() {
    require_tool("sox", "sox");
    require_tool("aplay", "alsa-utils");
    let server = JackServer::start(256);
    let tap = DeviceTap::new(&server);
    let tone = tap.dir().join("tone.wav");
    let mut sox = Command::new("sox");
    sox.args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&tone)
        .args(["synth", "1.5", "sine", "277.18", "vol", "0.5"]);
    run_command(sox, Duration::from_secs(30)).assert_success();
    let sent = read_wav_lenient(&tone).expect("sox tone");

    let mut aplay = Command::new("aplay");
    aplay
        .arg("-q")
        .arg(&tone)
        .envs(tap.env().iter().map(|(k, v)| (k, v)));
    let out = run_command(aplay, Duration::from_secs(30));
    out.assert_success();

    let got = tap.read();
    assert!(
        got.header_complete,
        "aplay closed the device, so the header should be final"
    );
    assert_eq!((got.sample_rate, got.channels.len()), (SR, 2));
    assert!(
        got.frames() >= sent.frames(),
        "recorded {} of {} frames",
        got.frames(),
        sent.frames()
    );
    for c in 0..2 {
        assert!(
            got.channel(c)[..sent.frames()] == *sent.channel(c),
            "channel {c}: the recording differs from what was played"
        );
        assert!(
            got.channel(c)[sent.frames()..].iter().all(|&s| s == 0.0),
            "channel {c}: sound after the end of the tone"
        );
    }
    // aplay drains the device before it exits, so it cannot finish before the
    // JACK clock has pulled 1.5 s of audio.
    assert!(
        out.elapsed >= Duration::from_millis(1450),
        "1.5 s of audio played in {:?}: not paced in real time",
        out.elapsed
    );
    let f = spectrum_peak(&got.channel(0)[..sent.frames()], SR, 100.0, 1000.0);
    assert!(cents(f, 277.18).abs() < 1.0, "recorded tone at {f} Hz");
}

#[test]
fn device_fails_without_its_jack_server() {
    require_tool("sox", "sox");
    require_tool("aplay", "alsa-utils");
    let server = JackServer::start(256);
    let tap = DeviceTap::new(&server);
    let tone = tap.dir().join("tone.wav");
    let mut sox = Command::new("sox");
    sox.args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&tone)
        .args(["synth", "0.2", "sine", "440"]);
    run_command(sox, Duration::from_secs(30)).assert_success();
    drop(server);

    let mut aplay = Command::new("aplay");
    aplay
        .arg("-q")
        .arg(&tone)
        .envs(tap.env().iter().map(|(k, v)| (k, v)));
    let out = run_command(aplay, Duration::from_secs(30));
    assert!(
        !out.timed_out && !out.status.success(),
        "aplay should fail to open the device with its JACK server gone: {out:?}"
    );
}

#[test]
fn jack_servers_are_private_and_stop_when_dropped() {
    require_tool("jack_lsp", "jackd2");
    let first = JackServer::start(256);
    let second = JackServer::start(128);
    assert_ne!(first.name(), second.name());
    eprintln!(
        "JACK startup: {:?} and {:?}",
        first.startup_time(),
        second.startup_time()
    );
    let ports = |name: &str| {
        let mut lsp = Command::new("jack_lsp");
        lsp.env("JACK_DEFAULT_SERVER", name)
            .env("JACK_NO_START_SERVER", "1");
        run_command(lsp, Duration::from_secs(10)).stdout
    };
    for server in [&first, &second] {
        assert!(
            ports(server.name()).contains("system:playback_1"),
            "server {} has no playback port",
            server.name()
        );
    }
    let name = first.name().to_owned();
    drop(first);
    let mut check = Command::new("jack_wait");
    check.arg("-c").env("JACK_DEFAULT_SERVER", &name);
    let out = run_command(check, Duration::from_secs(10));
    assert_eq!(
        out.stdout.trim(),
        "not running",
        "server {name} survived its drop"
    );
    assert!(
        ports(second.name()).contains("system:playback_1"),
        "the other server went too"
    );
}
