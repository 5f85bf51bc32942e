//! The `carillon` binary's offline paths: render determinism, and clear errors.

mod support;

use support::corpus_path;
use support::tempdir::TempDir;

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file `name` in the test's own scratch folder (removed when the test passes).
fn scratch(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn carillon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carillon"))
        .args(args)
        .env("CARILLON_LOG", "warn")
        .output()
        .expect("run the carillon binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn render_of_the_same_replay_and_seed_is_bit_for_bit_identical() {
    let dir = TempDir::new("cli");
    let source = format!(
        "replay:{}",
        corpus_path("wikimon/wikiticker-all-0600-1h.jsonl")
    );
    let (a, b, c) = (
        scratch(&dir, "a.wav"),
        scratch(&dir, "b.wav"),
        scratch(&dir, "c.wav"),
    );
    for (out, seed) in [(&a, "5"), (&b, "5"), (&c, "6")] {
        let o = carillon(&[
            "render",
            "--source",
            &source,
            "--duration",
            "90",
            "--speed",
            "4",
            "--seed",
            seed,
            "-o",
            out.to_str().expect("utf-8 path"),
        ]);
        assert!(o.status.success(), "render failed: {}", stderr(&o));
    }
    let (a, b, c) = (
        std::fs::read(a).expect("read a.wav"),
        std::fs::read(b).expect("read b.wav"),
        std::fs::read(c).expect("read c.wav"),
    );
    // 90 s of 48 kHz 16-bit stereo, plus the header.
    assert_eq!(a.len(), 44 + 90 * 48_000 * 4);
    assert!(a == b, "two renders with the same seed differ");
    assert!(a != c, "the seed should change the voices' randomness");
    assert!(a[44..].iter().any(|&x| x != 0), "the render is silent");
}

#[test]
fn render_counts_notes_of_a_real_stream() {
    let dir = TempDir::new("cli");
    let source = format!(
        "replay:{}",
        corpus_path("wikimon/wikiticker-en-0600-1h.jsonl")
    );
    let out = scratch(&dir, "en.wav");
    let o = carillon(&[
        "render",
        "--source",
        &source,
        "--duration",
        "120",
        "--speed",
        "10",
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "render failed: {}", stderr(&o));
    let summary = stderr(&o);
    let field = |key: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in: {summary}"))
    };
    // 1200 s of the English hour at 10×: a third of its 373 messages, give or take.
    assert!(field("events") > 80, "{summary}");
    assert!(field("notes") > 60, "{summary}");
    assert_eq!(field("malformed"), 0, "{summary}");
}

#[test]
fn render_lists_every_note_it_played_as_csv() {
    let dir = TempDir::new("cli");
    let source = format!(
        "replay:{}",
        corpus_path("wikimon/wikiticker-all-0600-1h.jsonl")
    );
    let (wav, csv) = (scratch(&dir, "listed.wav"), scratch(&dir, "listed.csv"));
    let o = carillon(&[
        "render",
        "--source",
        &source,
        "--duration",
        "300",
        "--speed",
        "4",
        "--notes",
        csv.to_str().expect("utf-8 path"),
        "-o",
        wav.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "render failed: {}", stderr(&o));
    let summary = stderr(&o);
    let notes: usize = summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("notes="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no notes= in: {summary}"));
    let text = std::fs::read_to_string(&csv).expect("the note listing was written");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("start_s,instrument,frequency_hz,gain,pan,duration_s")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), notes, "one line per note played: {summary}");
    let mut last = 0.0;
    let mut kinds = std::collections::BTreeSet::new();
    for row in &rows {
        assert_eq!(row.len(), 6, "{row:?}");
        let num = |i: usize| -> f64 {
            row[i]
                .parse()
                .unwrap_or_else(|_| panic!("column {i} of {row:?} is not a number"))
        };
        let (start, f, gain, pan, duration) = (num(0), num(2), num(3), num(4), num(5));
        assert!(
            start >= last && start < 300.0,
            "{row:?} out of order or range"
        );
        last = start;
        kinds.insert(row[1].to_owned());
        // Every pitch is on C# pentatonic: a whole number of semitones from C#.
        let semitones = 12.0 * (f / 277.1826).log2();
        let class = (semitones.round() as i64).rem_euclid(12);
        assert!(
            (semitones - semitones.round()).abs() < 0.01 && [0, 2, 5, 7, 9].contains(&class),
            "{f} Hz is not on C# pentatonic"
        );
        assert!(
            gain > 0.0 && gain < 1.0 && pan.abs() <= 1.0 && duration > 0.5,
            "{row:?}"
        );
    }
    let expected: std::collections::BTreeSet<String> =
        ["celesta", "clavichord", "violin"].map(String::from).into();
    assert_eq!(
        kinds, expected,
        "all three instruments play in 20 minutes of all wikis"
    );
}

/// Run a one-second render that must fail, with `args` before the output; its stderr.
fn failed_render(args: &[&str]) -> String {
    let dir = TempDir::new("cli");
    let out = scratch(&dir, "never.wav");
    let mut all = vec![
        "render",
        "--duration",
        "1",
        "-o",
        out.to_str().expect("utf-8"),
    ];
    all.extend_from_slice(args);
    let o = carillon(&all);
    assert!(!o.status.success(), "render {args:?} should fail");
    stderr(&o)
}

#[test]
fn a_config_with_an_unknown_key_is_refused_with_file_and_line() {
    let dir = TempDir::new("cli");
    let path = scratch(&dir, "bad.toml");
    std::fs::write(&path, "[score]\nsteps = 24\n[engine]\npolyphonie = 12\n").expect("write");
    let err = failed_render(&[
        "--config",
        path.to_str().expect("utf-8"),
        "--source",
        "demo",
    ]);
    assert!(err.contains("bad.toml:4:"), "{err}");
    assert!(err.contains("polyphonie"), "{err}");
}

#[test]
fn an_unknown_source_is_explained() {
    let err = failed_render(&["--source", "gopher://example.org"]);
    assert!(
        err.contains("eventstreams") && err.contains("ws(s)://") && err.contains("replay:PATH"),
        "{err}"
    );
}

#[test]
fn rendering_a_live_source_says_to_record_it() {
    let err = failed_render(&["--source", "http://127.0.0.1:9/stream"]);
    assert!(
        err.contains("recorded times") && err.contains("carillon record"),
        "{err}"
    );
}

#[test]
fn a_missing_replay_file_is_named() {
    let err = failed_render(&["--source", "replay:/nonexistent/feed.jsonl"]);
    assert!(err.contains("/nonexistent/feed.jsonl"), "{err}");
}

#[test]
fn bench_render_reports_every_voice_count_as_json() {
    let o = carillon(&[
        "bench",
        "render",
        "--voices",
        "2,8",
        "--buffer-frames",
        "128",
        "--seconds",
        "0.1",
        "--json",
    ]);
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("bench render --json prints JSON");
    let rows = report["rows"].as_array().expect("rows");
    let voices: Vec<u64> = rows.iter().filter_map(|r| r["voices"].as_u64()).collect();
    assert_eq!(voices, vec![2, 8]);
    for row in rows {
        let median = row["engine"]["median_us"].as_f64().expect("a median");
        let max = row["engine"]["max_us"].as_f64().expect("a max");
        assert!(median > 0.0 && max >= median, "{row}");
        assert!(row["bare_fundsp"]["median_us"]
            .as_f64()
            .is_some_and(|m| m > 0.0));
    }
    assert_eq!(report["budget_us"].as_f64(), Some(128.0 / 48_000.0 * 1e6));
    assert!(report["max_voices_full_budget"]
        .as_u64()
        .is_some_and(|v| v >= 16));
}

/// Write `text` to a scratch file `name`; its path.
fn scratch_file(dir: &TempDir, name: &str, text: &str) -> String {
    let path = scratch(dir, name);
    std::fs::write(&path, text).expect("write a scratch file");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn a_nan_reverb_is_refused_at_its_value_and_no_wav_is_written() {
    let dir = TempDir::new("cli");
    let config = scratch_file(
        &dir,
        "wet.toml",
        "[engine]\nvolume = 0.5\n\n[engine.reverb]\nwet = nan\n",
    );
    let out = scratch(&dir, "wet.wav");
    let o = carillon(&[
        "render",
        "--config",
        &config,
        "--source",
        "demo",
        "--duration",
        "1",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "wet.toml:5:7: engine.reverb.wet = nan is not allowed: expected a finite number in 0..=1"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "a WAV file was written");
}

#[test]
fn a_zero_reconnection_delay_is_refused() {
    let dir = TempDir::new("cli");
    let config = scratch_file(&dir, "backoff.toml", "[source]\nbackoff_initial_ms = 0\n");
    let err = failed_render(&["--config", &config, "--source", "demo"]);
    assert!(
        err.contains("backoff.toml:2:22: source.backoff_initial_ms = 0 is not allowed: expected a whole number in 100..=60000"),
        "{err}"
    );
}

/// A folder of the built-in recipes, the celesta's `mod_decay_s` set to `value`.
fn recipes_with_mod_decay(scratch_dir: &TempDir, folder: &str, value: &str) -> PathBuf {
    let dir = scratch(scratch_dir, folder);
    std::fs::create_dir_all(&dir).expect("a recipe folder");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/instruments");
    for name in ["celesta", "clavichord", "violin"] {
        let text = std::fs::read_to_string(format!("{source}/{name}.toml")).expect("a recipe");
        let text = text.replace("mod_decay_s = 0.07", &format!("mod_decay_s = {value}"));
        std::fs::write(dir.join(format!("{name}.toml")), text).expect("write a recipe");
    }
    dir
}

#[test]
fn a_recipe_with_a_zero_time_constant_is_refused_at_its_line() {
    let dir = TempDir::new("cli");
    let recipes = recipes_with_mod_decay(&dir, "zero-decay", "0");
    let config = scratch_file(
        &dir,
        "zero-decay.toml",
        "[engine]\ninstruments_dir = \"zero-decay\"\n",
    );
    let err = failed_render(&["--config", &config, "--source", "demo"]);
    let recipe = recipes.join("celesta.toml");
    let text = std::fs::read_to_string(&recipe).expect("the recipe");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("mod_decay_s"))
        .expect("a mod_decay_s line");
    assert!(
        err.contains(&format!(
            "{}:{line}:15: fm_bell.mod_decay_s = 0 is not allowed: expected a finite number above 0",
            recipe.display()
        )),
        "{err}"
    );
}

#[test]
fn a_removal_base_its_string_cannot_play_is_refused_not_a_panic() {
    let dir = TempDir::new("cli");
    let config = scratch_file(&dir, "csharp8.toml", "[score.removal]\nbase = \"C#8\"\n");
    // Seed 1's demo plucks a 23.7 kHz string 1.25 s in, which panicked inside fundsp.
    let out = scratch(&dir, "csharp8.wav");
    let o = carillon(&[
        "render",
        "--config",
        &config,
        "--source",
        "demo",
        "--seed",
        "1",
        "--duration",
        "2",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "refused, not a panic: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("csharp8.toml:2:8: score.removal.base = \"C#8\" is too high at 48000 Hz"),
        "{err}"
    );
    for part in [
        "clavichord",
        "21818.2 Hz",
        "lower base",
        "higher sample rate",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
}

#[test]
fn command_line_values_are_range_checked() {
    for (flag, value, expected) in [
        (
            "--sample-rate",
            "1000",
            "--sample-rate = 1000 is not allowed: expected a whole number in 8000..=192000",
        ),
        (
            "--speed",
            "0",
            "--speed = 0 is not allowed: expected a finite number above 0",
        ),
        ("--speed", "nan", "--speed = nan is not allowed"),
    ] {
        let err = failed_render(&["--source", "demo", flag, value]);
        assert!(err.contains(expected), "{flag} {value}: {err}");
    }
    // Play refuses its flags before it opens a device.
    for (flag, value, expected) in [
        ("--duration", "inf", "--duration = inf is not allowed"),
        (
            "--volume",
            "1.5",
            "--volume = 1.5 is not allowed: expected a finite number in 0..=1",
        ),
        (
            "--buffer-frames",
            "8",
            "--buffer-frames = 8 is not allowed: expected a whole number in 16..=8192",
        ),
        (
            "--sample-rate",
            "500000",
            "--sample-rate = 500000 is not allowed",
        ),
    ] {
        let o = carillon(&["play", "--source", "demo", flag, value]);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(expected),
            "{flag} {value}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn check_config_passes_the_defaults_and_a_good_file() {
    let dir = TempDir::new("cli");
    let defaults = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let good = scratch_file(
        &dir,
        "good.toml",
        "[engine]\npolyphony = 32\n[engine.reverb]\nwet = 0.3\n[output]\nsample_rate = 44100\n",
    );
    for file in [defaults, good.as_str()] {
        let o = carillon(&["check-config", file]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{file}: ok (3 instruments: celesta, clavichord, violin)\n")
        );
    }
}

#[test]
fn check_config_lists_every_problem_of_a_bad_file() {
    let dir = TempDir::new("cli");
    let bad = scratch_file(
        &dir,
        "bad-many.toml",
        "[source]\nbackoff_initial_ms = 0\n[engine.reverb]\nwet = nan\n[output]\nbuffer_frames = 3\n",
    );
    let o = carillon(&["check-config", &bad]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for at in [
        "bad-many.toml:2:22: ",
        "bad-many.toml:4:7: ",
        "bad-many.toml:6:17: ",
    ] {
        assert!(err.contains(at), "{at} missing: {err}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn check_config_checks_the_recipes_and_the_notes_at_the_files_rate() {
    let dir = TempDir::new("cli");
    let recipes = recipes_with_mod_decay(&dir, "nan-decay", "nan");
    let bad = scratch_file(
        &dir,
        "bad-recipes.toml",
        "[engine]\ninstruments_dir = \"nan-decay\"\n",
    );
    let err = stderr(&carillon(&["check-config", &bad]));
    let text = std::fs::read_to_string(recipes.join("celesta.toml")).expect("the recipe");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("mod_decay_s"))
        .expect("the key");
    assert!(
        err.contains(&format!(
            "celesta.toml:{line}:15: fm_bell.mod_decay_s = nan"
        )),
        "{err}"
    );
    // The celesta's overtone passes Nyquist at 22.05 kHz from the default register.
    let low_rate = scratch_file(&dir, "low-rate.toml", "[output]\nsample_rate = 22050\n");
    let o = carillon(&["check-config", &low_rate]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("celesta"), "{}", stderr(&o));
}

#[test]
fn bench_silence_reports_each_stretch_with_and_without_flush_to_zero() {
    let o = carillon(&[
        "bench",
        "silence",
        "--seconds",
        "2",
        "--stretch",
        "0.5",
        "--json",
    ]);
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("bench silence --json prints JSON");
    let rows = report["rows"].as_array().expect("rows");
    let starts: Vec<f64> = rows.iter().filter_map(|r| r["from_s"].as_f64()).collect();
    assert_eq!(starts.len(), 4, "{report}");
    assert!((starts[1] - 0.5).abs() < 0.01, "{starts:?}");
    for row in rows {
        for key in ["with_ftz", "without_ftz"] {
            assert!(
                row[key]["median_us"].as_f64().is_some_and(|m| m > 0.0),
                "{row}"
            );
        }
    }
}

#[test]
fn new_accounts_in_the_feeds_format_of_today_welcome_a_violin_each() {
    let dir = TempDir::new("cli");
    // The wikimon relay reads EventStreams now and sends a new account as
    // `"action": "newusers"`: five of them, 12 s apart, between edits.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wikimon-newusers-today.jsonl"
    );
    let (wav, csv) = (scratch(&dir, "today.wav"), scratch(&dir, "today.csv"));
    let source = format!("replay:{fixture}");
    let o = carillon(&[
        "render",
        "--source",
        &source,
        "--duration",
        "60",
        "--notes",
        csv.to_str().expect("utf-8 path"),
        "-o",
        wav.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "render failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&csv).expect("the note listing was written");
    let count = |instrument: &str| {
        text.lines()
            .filter(|l| l.split(',').nth(1) == Some(instrument))
            .count()
    };
    assert_eq!(
        count("violin"),
        5,
        "five swells for five newcomers:\n{text}"
    );
    assert_eq!(count("celesta"), 5, "and a bell for each edit:\n{text}");
}
