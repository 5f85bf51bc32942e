//! Calm at any rate: the same recorded hour rendered by the real binary at speeds from
//! 0.2 to 50 notes a second keeps its integrated loudness (EBU R128) within ±2 LU with
//! the density control on, and spreads over more than 8 LU with it off — Listen to
//! Wikipedia's behaviour, and what makes the test able to fail.

mod support;

use std::time::Duration;

use support::{corpus_path, read_wav_lenient, run_carillon, TempDir};

/// Speeds of the recorded hour (0.56 notes a second) and how much of it to render:
/// about 0.2, 1, 5, 20 and 50 notes a second (the last held there by the throttle).
const RUNS: [(f64, f64); 5] = [
    (0.36, 300.0),
    (1.8, 200.0),
    (9.0, 120.0),
    (36.0, 60.0),
    (90.0, 40.0),
];

/// Integrated loudness (LUFS) and notes per second of a render at each speed.
fn loudness_by_rate(dir: &TempDir, config: &str) -> Vec<(f64, f64)> {
    let source = format!(
        "replay:{}",
        corpus_path("wikimon/wikiticker-all-0600-1h.jsonl")
    );
    let config_path = dir.path().join(format!("{config}.toml"));
    let text = match config {
        "on" => "",
        _ => "[engine.density]\nenabled = false\n",
    };
    std::fs::write(&config_path, text).expect("write the configuration");
    RUNS.iter()
        .map(|&(speed, seconds)| {
            let wav = dir.path().join(format!("{config}-{speed}.wav"));
            let run = run_carillon(
                &[
                    "render",
                    "--config",
                    &config_path.to_string_lossy(),
                    "--source",
                    &source,
                    "--speed",
                    &speed.to_string(),
                    "--duration",
                    &seconds.to_string(),
                    "-o",
                    &wav.to_string_lossy(),
                ],
                &[],
                Duration::from_secs(300),
            );
            run.assert_success();
            let notes = run.summary().get("notes") as f64;
            let audio = read_wav_lenient(&wav).expect("read the render");
            let mut meter =
                ebur128::EbuR128::new(2, audio.sample_rate, ebur128::Mode::I).expect("a meter");
            let interleaved: Vec<f32> = (0..audio.frames())
                .flat_map(|i| [audio.channel(0)[i], audio.channel(1)[i]])
                .collect();
            meter.add_frames_f32(&interleaved).expect("measure");
            let lufs = meter.loudness_global().expect("integrated loudness");
            (notes / seconds, lufs)
        })
        .collect()
}

fn spread(runs: &[(f64, f64)]) -> f64 {
    let max = runs.iter().map(|r| r.1).fold(f64::MIN, f64::max);
    let min = runs.iter().map(|r| r.1).fold(f64::MAX, f64::min);
    max - min
}

#[test]
fn loudness_stays_within_two_lu_from_a_fifth_of_a_note_to_fifty_notes_a_second() {
    let dir = TempDir::new("density");
    let on = loudness_by_rate(&dir, "on");
    let off = loudness_by_rate(&dir, "off");
    for ((rate, lufs_on), (_, lufs_off)) in on.iter().zip(&off) {
        eprintln!("{rate:6.2} notes/s: {lufs_on:6.1} LUFS with the density control, {lufs_off:6.1} without");
    }
    // The rates really span what the control is for, and rise: more notes.
    assert!(on[0].0 < 0.3 && on[4].0 > 40.0, "rates {on:?}");
    assert!(on.windows(2).all(|w| w[1].0 > w[0].0), "rates {on:?}");
    let (s_on, s_off) = (spread(&on), spread(&off));
    assert!(
        s_on <= 4.0,
        "with the density control the loudness spreads over {s_on:.1} LU (±2 LU allowed): {on:?}"
    );
    assert!(
        s_off > 8.0,
        "without it the loudness should grow with the rate as Listen to Wikipedia's does, \
         but spreads over only {s_off:.1} LU: {off:?}"
    );
}
