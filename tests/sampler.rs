//! Sampled instruments, as a musician bringing their own recordings would meet them:
//! folders of tones this test writes (WAV, FLAC, Ogg Vorbis, MP3, at several sample
//! rates), loaded through a recipe, and judged by analysis of what they play — pitch,
//! which recording sounded, the loop — plus the refusals of broken folders and a
//! render of a real stream by the real binary.

mod support;

use std::path::Path;
use std::time::Duration;

use carillon::event::EventKind;
use carillon::instrument::{Instruments, Voice};
use carillon::pitch::{midi_to_hz, note_name};
use carillon::score::{InstrumentId, Note};
use fundsp::prelude::{BufferArray, BufferRef, U1};
use support::analysis::{cents, rms, spectrum_peak};
use support::samples::{copy_built_in_recipes, sampler_recipe, write_tone, write_wav, Tone};
use support::{corpus_path, run_carillon, TempDir};

const SR: u32 = 48_000;

/// The instruments of `dir`, ready at 48 kHz, and the id of `name`.
fn load(dir: &Path, name: &str) -> (Instruments, u8) {
    let instruments = Instruments::load_dir(dir).unwrap_or_else(|e| panic!("refused: {e}"));
    instruments
        .prepare(SR)
        .unwrap_or_else(|e| panic!("not prepared: {e}"));
    let id = instruments
        .names()
        .iter()
        .position(|n| n == name)
        .expect("the sampler is loaded");
    (instruments, id as u8)
}

fn note(instrument: u8, midi: i32, velocity: f32) -> Note {
    Note {
        instrument: InstrumentId(instrument),
        frequency: midi_to_hz(midi as f64) as f32,
        midi,
        velocity,
        pan: 0.0,
        seed: 3,
        kind: EventKind::Addition,
    }
}

/// `seconds` of a voice (at most its length), rendered in 64-frame blocks as the engine
/// does.
fn play(voice: &mut Voice, seconds: f64) -> Vec<f32> {
    let frames = ((seconds * SR as f64) as u64).min(voice.frames) as usize;
    let mut out = Vec::with_capacity(frames + 64);
    let mut buffer = BufferArray::<U1>::new();
    while out.len() < frames {
        voice
            .unit
            .process(64, &BufferRef::empty(), &mut buffer.buffer_mut());
        out.extend_from_slice(&buffer.channel_f32(0)[..64]);
    }
    out.truncate(frames);
    out
}

fn span(x: &[f32], from: f64, to: f64) -> &[f32] {
    let at = |s: f64| ((s * SR as f64) as usize).min(x.len());
    &x[at(from)..at(to)]
}

/// Power of `x` at `hz` (Hann-windowed single-bin DFT).
fn power_at(x: &[f32], hz: f64) -> f64 {
    let n = x.len() as f64;
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos();
        let phase = std::f64::consts::TAU * hz * i as f64 / SR as f64;
        re += s as f64 * w * phase.cos();
        im -= s as f64 * w * phase.sin();
    }
    re * re + im * im
}

/// Which of `markers` (ratios to the note's pitch) sounds loudest in `x`.
fn loudest_marker(x: &[f32], hz: f64, markers: &[f64]) -> f64 {
    markers
        .iter()
        .copied()
        .max_by(|a, b| power_at(x, hz * a).total_cmp(&power_at(x, hz * b)))
        .expect("markers")
}

#[test]
fn every_note_plays_at_its_pitch_from_the_nearest_recording_in_every_format() {
    let dir = TempDir::new("sampler-pitch");
    copy_built_in_recipes(dir.path());
    let samples = sampler_recipe(dir.path(), "bells", "max_transpose = 6\n");
    // Four roots, six semitones apart, each in another format, rate and channel count,
    // each with its own fingerprint partial.
    let roots: [(i32, &str, u32, u16, f64); 4] = [
        (60, "wav", 44_100, 2, 2.0),
        (66, "flac", 48_000, 1, 3.0),
        (72, "ogg", 32_000, 1, 4.0),
        (78, "mp3", 44_100, 1, 5.0),
    ];
    for &(midi, ext, rate, channels, marker) in &roots {
        let mut tone = Tone::new(midi_to_hz(midi as f64), marker);
        tone.sample_rate = rate;
        tone.channels = channels;
        write_tone(&samples.join(format!("{}.{ext}", note_name(midi))), &tone);
    }
    let (instruments, id) = load(dir.path(), "bells");
    let markers: Vec<f64> = roots.iter().map(|r| r.4).collect();
    let mut worst: f64 = 0.0;
    // Every note the four roots reach: six semitones down from the lowest to six up
    // from the highest, through every transposition in between.
    for midi in 54..=84 {
        // The nearest root; on a tie (three semitones from two), the higher one.
        let expected = roots
            .iter()
            .min_by_key(|r| ((midi - r.0).abs(), -r.0))
            .expect("a root");
        let f = midi_to_hz(midi as f64);
        let mut voice = instruments.build(&note(id, midi, 1.0), SR as f64);
        let x = play(&mut voice, 1.0);
        let steady = span(&x, 0.1, 0.9);
        let measured = spectrum_peak(steady, SR, f * 0.97, f * 1.03);
        let off = cents(measured, f);
        worst = worst.max(off.abs());
        assert!(
            off.abs() <= 3.0,
            "{} ({f:.2} Hz) from {}.{}: {measured:.3} Hz, {off:+.2} cents",
            note_name(midi),
            note_name(expected.0),
            expected.1
        );
        let heard = loudest_marker(steady, f, &markers);
        assert_eq!(
            heard,
            expected.4,
            "{} should play {}.{} (fingerprint ×{}), but sounds like ×{heard}",
            note_name(midi),
            note_name(expected.0),
            expected.1,
            expected.4
        );
    }
    eprintln!("worst pitch error over 31 notes: {worst:.3} cents");
}

#[test]
fn velocity_layers_and_round_robin_takes_are_used_as_documented() {
    let dir = TempDir::new("sampler-layers");
    copy_built_in_recipes(dir.path());
    let samples = sampler_recipe(dir.path(), "bells", "");
    let a4 = midi_to_hz(69.0);
    for (file, marker) in [
        ("A4.v1.wav", 2.0),
        ("A4.v2.flac", 3.0),
        ("A4.v3.rr1.wav", 4.0),
        ("A4.v3.rr2.ogg", 5.0),
    ] {
        write_tone(&samples.join(file), &Tone::new(a4, marker));
    }
    let (instruments, id) = load(dir.path(), "bells");
    // Of three layers, velocities up to 1/3 take v1, up to 2/3 v2, above v3; the loud
    // layer's two takes alternate, whatever plays in between.
    let expected = [
        (0.2, 2.0),
        (0.5, 3.0),
        (0.9, 4.0),
        (0.9, 5.0),
        (0.3, 2.0),
        (1.0, 4.0),
        (0.7, 5.0),
        (0.66, 3.0),
    ];
    let heard: Vec<(f32, f64)> = expected
        .iter()
        .map(|&(velocity, _)| {
            let mut voice = instruments.build(&note(id, 69, velocity), SR as f64);
            let x = play(&mut voice, 0.5);
            (
                velocity,
                loudest_marker(span(&x, 0.05, 0.45), a4, &[2.0, 3.0, 4.0, 5.0]),
            )
        })
        .collect();
    let want: Vec<(f32, f64)> = expected.to_vec();
    assert_eq!(heard, want, "(velocity, fingerprint) of each note in turn");
}

/// The largest sample-to-sample change of slope: a click stands out of a tone's.
fn worst_second_difference(x: &[f32]) -> f64 {
    x.windows(3)
        .map(|w| (w[0] as f64 - 2.0 * w[1] as f64 + w[2] as f64).abs())
        .fold(0.0, f64::max)
}

fn windows_db(x: &[f32], from: f64, to: f64) -> Vec<f64> {
    span(x, from, to)
        .chunks(SR as usize / 20)
        .map(|w| 20.0 * rms(w).log10())
        .collect()
}

#[test]
fn a_looped_swell_sustains_for_as_long_as_it_is_held_without_a_click() {
    let a3 = midi_to_hz(57.0);
    // Loop ends a whole number of the tone's periods after its start (103 of 220 Hz),
    // and one 0.4 of a cycle off it: jumping back unblended would break the wave there
    // at every pass. Blended, the second dips where the two stretches are out of phase
    // (as a musician hears a badly placed loop), but never clicks.
    for (loop_end, most_swing_db) in [(0.4 + 103.0 / 220.0, 1.0), (0.87, 6.0)] {
        let dir = TempDir::new("sampler-loop");
        copy_built_in_recipes(dir.path());
        let samples = sampler_recipe(
            dir.path(),
            "swell",
            &format!(
                "loop_start_s = 0.4\nloop_end_s = {loop_end}\ncrossfade_ms = 60\n\
                 duration_s = 3.0\nrelease_ms = 250\n"
            ),
        );
        let mut tone = Tone::new(a3, 2.0);
        tone.seconds = 1.0;
        tone.attack = 0.3;
        write_wav(&samples.join("A3.wav"), &tone);
        let (instruments, id) = load(dir.path(), "swell");
        // Played at its root, and a fifth up (the loop then passes in 0.31 s).
        for midi in [57, 64] {
            let what = format!("loop end {loop_end:.4} s, {}", note_name(midi));
            let mut voice = instruments.build(&note(id, midi, 1.0), SR as f64);
            assert!(
                (voice.frames as f64 / SR as f64 - 3.25).abs() < 0.01,
                "{what}: held 3 s, released over 0.25 s: {} frames",
                voice.frames
            );
            let x = play(&mut voice, 3.25);
            // Sustained: held at its level long after the 1 s recording ended.
            let before = windows_db(&x, 0.3, 0.38)[0];
            let levels = windows_db(&x, 0.3, 2.95);
            let (lo, hi) = levels
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            assert!(
                hi - lo <= most_swing_db && hi - before < 0.5,
                "{what}: the held level swings {:.1} dB ({lo:.1}..{hi:.1} dBFS, {before:.1} \
                 before the loop)",
                hi - lo
            );
            // No click: the wave's bend is nowhere sharper than the tone's own, measured
            // where no loop has passed yet.
            let own = worst_second_difference(span(&x, 0.32, 0.38));
            let held = worst_second_difference(span(&x, 0.38, 3.0));
            assert!(
                held < 1.5 * own,
                "{what}: a click at the loop: bend {held:.2e} against the tone's {own:.2e}"
            );
            // Released, then silent.
            assert!(
                rms(span(&x, 3.24, 3.25)) < 0.05 * rms(span(&x, 2.5, 2.9)),
                "{what}: still sounding after its release"
            );
        }
    }
}

/// `dir/instruments`, holding copies of the built-in recipes, for a configuration in
/// `dir` to name as its `instruments_dir`.
fn instruments_folder(dir: &TempDir) -> std::path::PathBuf {
    let instruments = dir.path().join("instruments");
    std::fs::create_dir_all(&instruments).expect("folder");
    copy_built_in_recipes(&instruments);
    instruments
}

/// Run `carillon check-config` on a configuration whose instruments are in `dir`.
fn check_config(dir: &Path) -> (bool, String, String) {
    let config = dir.join("site.toml");
    std::fs::write(&config, "[engine]\ninstruments_dir = \"instruments\"\n").expect("config");
    let out = run_carillon(
        &["check-config", &config.to_string_lossy()],
        &[],
        Duration::from_secs(60),
    );
    (out.status.success(), out.stdout.clone(), out.stderr.clone())
}

#[test]
fn every_broken_recording_is_refused_at_once_naming_its_file() {
    let dir = TempDir::new("sampler-broken");
    let instruments = instruments_folder(&dir);
    // A recipe whose folder is missing.
    std::fs::write(
        instruments.join("nowhere.toml"),
        "name = \"nowhere\"\ngain = 0.5\n[sampler]\ndir = \"no-such-folder\"\n",
    )
    .expect("recipe");
    let broken = sampler_recipe(&instruments, "broken", "");
    let a4 = Tone::new(440.0, 2.0);
    write_wav(&broken.join("bell.wav"), &a4);
    std::fs::write(broken.join("C4.txt"), "notes about the recording").expect("txt");
    std::fs::write(broken.join("D4.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunk").expect("junk");
    let mut six = a4;
    six.channels = 6;
    write_wav(&broken.join("E4.wav"), &six);
    let mut slow = a4;
    slow.sample_rate = 4_000;
    write_wav(&broken.join("F4.wav"), &slow);
    write_wav(&broken.join("G4.v2.wav"), &a4);
    write_wav(&broken.join("A4.wav"), &a4);
    write_tone(&broken.join("A4.flac"), &a4);
    // Cut short: the first half of a WAV and of a FLAC file, as an interrupted copy
    // leaves them.
    for file in ["C5.wav", "D5.flac"] {
        let path = broken.join(file);
        write_tone(&path, &a4);
        let bytes = std::fs::read(&path).expect("the file");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("cut it");
    }
    // And one good recording, which is not refused.
    write_wav(&broken.join("B4.wav"), &a4);

    let (ok, _, err) = check_config(dir.path());
    assert!(!ok, "refused");
    let at = |file: &str| format!("{}: ", broken.join(file).display());
    for (what, needle) in [
        (
            "the missing folder",
            format!(
                "{}: cannot read this sample folder",
                instruments.join("no-such-folder").display()
            ),
        ),
        (
            "a name that is no note",
            format!("{}is not named by a note", at("bell.wav")),
        ),
        (
            "a text file",
            format!("{}is not a recording carillon reads", at("C4.txt")),
        ),
        (
            "an undecodable file",
            format!("{}cannot be decoded", at("D4.wav")),
        ),
        ("six channels", format!("{}has 6 channels", at("E4.wav"))),
        ("4 kHz", format!("{}is recorded at 4000 Hz", at("F4.wav"))),
        (
            "a layer gap",
            format!(
                "{}: G4 has velocity layer 2 but no layer 1",
                broken.display()
            ),
        ),
        ("a duplicate", format!("{}is the same note", at("A4.wav"))),
        ("a cut-short WAV", format!("{}is cut short", at("C5.wav"))),
        ("a cut-short FLAC", format!("{}is cut short", at("D5.flac"))),
    ] {
        assert!(
            err.contains(&needle),
            "{what}: {needle:?} missing from:\n{err}"
        );
    }
    assert!(
        !err.contains("B4.wav"),
        "a good recording is refused:\n{err}"
    );
}

#[test]
fn a_note_no_recording_reaches_is_refused_before_playing() {
    let dir = TempDir::new("sampler-reach");
    let instruments = instruments_folder(&dir);
    // The célesta's register (D#3..G#7) from recordings at C4 and C6, 6 semitones
    // either way: its lowest notes and those around F#5 are out of reach. (This recipe
    // replaces the built-in célesta's, copied above.)
    let samples = sampler_recipe(&instruments, "celesta", "max_transpose = 6\n");
    for midi in [60, 84] {
        write_wav(
            &samples.join(format!("{}.wav", note_name(midi))),
            &Tone::new(midi_to_hz(midi as f64), 2.0),
        );
    }
    let (ok, _, err) = check_config(dir.path());
    assert!(!ok, "refused");
    assert!(
        err.contains("score.addition.base")
            && err.contains("celesta cannot play")
            && err.contains("sampler.max_transpose is 6"),
        "{err}"
    );
}

/// A bell-like sampler for the célesta's register: a recording every octave from F#3
/// to F#7, each reaching six semitones either way, as MP3, Ogg, FLAC and WAV.
fn bells(instruments: &Path) {
    let samples = sampler_recipe(instruments, "bells", "max_transpose = 6\nduration_s = 4\n");
    for (midi, ext) in [
        (54, "mp3"),
        (66, "ogg"),
        (78, "flac"),
        (90, "wav"),
        (102, "wav"),
    ] {
        let mut tone = Tone::new(midi_to_hz(midi as f64), 4.0);
        tone.t60 = 2.5;
        tone.seconds = 3.0;
        tone.sample_rate = 44_100;
        write_tone(&samples.join(format!("{}.{ext}", note_name(midi))), &tone);
    }
}

#[test]
fn a_sampler_standing_in_for_the_celesta_renders_a_real_stream_deterministically() {
    let dir = TempDir::new("sampler-render");
    let instruments = instruments_folder(&dir);
    bells(&instruments);
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        "[engine]\ninstruments_dir = \"instruments\"\n[score.addition]\ninstrument = \"bells\"\n",
    )
    .expect("config");
    // check-config accepts it, and says what the sampler holds.
    let check = run_carillon(
        &["check-config", &config.to_string_lossy()],
        &[],
        Duration::from_secs(60),
    );
    check.assert_success();
    assert!(
        check.stdout.contains("bells: 5 recordings of 5 notes")
            && check.stdout.contains("kB per second of sound"),
        "{}",
        check.stdout
    );
    let source = format!(
        "replay:{}",
        corpus_path("wikimon/wikiticker-all-0600-1h.jsonl")
    );
    let render = |name: &str| {
        let wav = dir.path().join(name);
        let run = run_carillon(
            &[
                "render",
                "--config",
                &config.to_string_lossy(),
                "--source",
                &source,
                "--speed",
                "20",
                "--duration",
                "20",
                "--seed",
                "9",
                "-o",
                &wav.to_string_lossy(),
            ],
            &[],
            Duration::from_secs(300),
        );
        run.assert_success();
        assert!(run.summary().get("notes") > 50, "{}", run.stderr);
        std::fs::read(&wav).expect("the render")
    };
    // bench render measures it: sounding voices cost more than the bus alone.
    let bench = run_carillon(
        &[
            "bench",
            "render",
            "--config",
            &config.to_string_lossy(),
            "--instrument",
            "bells",
            "--voices",
            "64",
            "--seconds",
            "0.2",
            "--json",
        ],
        &[],
        Duration::from_secs(300),
    );
    bench.assert_success();
    assert!(
        bench.stderr.contains("bells: 5 recordings"),
        "{}",
        bench.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&bench.stdout).expect("JSON");
    let bus = report["bus_only"]["median_us"].as_f64().expect("the bus");
    let voices = report["rows"][0]["engine"]["median_us"]
        .as_f64()
        .expect("64 voices");
    assert!(
        voices > 2.0 * bus,
        "64 sampled voices {voices} µs, bus {bus} µs"
    );
    let (a, b) = (render("a.wav"), render("b.wav"));
    assert!(a == b, "two renders of the same stream and seed differ");
    let audio = support::read_wav_lenient(&dir.path().join("a.wav")).expect("a WAV");
    let level = rms(&audio.mono());
    assert!(level > 0.01, "the render is all but silent: rms {level}");
}
