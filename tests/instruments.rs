//! The instruments as a listener hears them: in tune, shaped like the instrument they
//! name, and free of clicks.

mod support;

use carillon::event::EventKind;
use carillon::instrument::{Instruments, Voice};
use carillon::score::scale::{midi_to_hz, parse_note};
use carillon::score::{InstrumentId, Note};
use support::analysis::{cents, spectrum_peak};

const SR: u32 = 48_000;

fn voice(instrument: u8, note_name: &str) -> (Voice, f64) {
    let midi = parse_note(note_name).expect("a note name");
    let f = midi_to_hz(midi as f64);
    let note = Note {
        instrument: InstrumentId(instrument),
        frequency: f as f32,
        midi,
        velocity: 1.0,
        pan: 0.0,
        seed: 11,
        kind: EventKind::Addition,
    };
    let instruments = Instruments::built_in().expect("built-in instruments");
    (instruments.build(&note, SR as f64), f)
}

fn samples(v: &mut Voice) -> Vec<f32> {
    (0..v.frames).map(|_| v.unit.get_mono() * v.gain).collect()
}

fn seconds(x: &[f32], from: f64, to: f64) -> &[f32] {
    let (a, b) = ((from * SR as f64) as usize, (to * SR as f64) as usize);
    &x[a.min(x.len())..b.min(x.len())]
}

/// The strongest frequency within a semitone of the expected one.
fn pitch(x: &[f32], f: f64) -> f64 {
    spectrum_peak(x, SR, f * 0.944, f * 1.059)
}

fn assert_in_tune(instrument: u8, name: &str, from: f64, to: f64) {
    let (mut v, f) = voice(instrument, name);
    let x = samples(&mut v);
    let measured = pitch(seconds(&x, from, to), f);
    let off = cents(measured, f);
    assert!(
        off.abs() <= 5.0,
        "instrument {instrument} playing {name}: {measured:.2} Hz is {off:+.1} cents from {f:.2} Hz"
    );
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn celesta_is_in_tune_across_its_register() {
    for name in ["C#3", "G#4", "D#5", "A#6"] {
        assert_in_tune(0, name, 0.05, 1.0);
    }
}

#[test]
fn clavichord_is_in_tune_across_its_register() {
    for name in ["F#2", "C#3", "A#4", "G#5"] {
        assert_in_tune(1, name, 0.05, 1.2);
    }
}

#[test]
fn violin_is_in_tune_on_every_swell_note() {
    // Measured over its whole sound: the vibrato swings around the pitch.
    for name in ["C#4", "F#4", "G#4", "C#5"] {
        assert_in_tune(2, name, 0.0, 3.6);
    }
}

#[test]
fn celesta_strikes_then_rings_out() {
    let (mut v, _) = voice(0, "G#4");
    let x = samples(&mut v);
    let (strike, ring, end) = (
        rms(seconds(&x, 0.0, 0.1)),
        rms(seconds(&x, 1.0, 1.1)),
        rms(seconds(&x, 4.4, 4.5)),
    );
    assert!(
        ring < strike * 0.5 && ring > strike * 0.05,
        "{strike} {ring}"
    );
    // The bar rings on for almost 3 s, then the damper silences it.
    assert!(end < ring * 0.05, "{ring} {end}");
}

/// When a note has fallen `db` under its loudest (s): the start of the first 50 ms
/// window, after the loudest one, whose RMS is that far under the loudest's.
fn fallen(x: &[f32], db: f64) -> Option<f64> {
    let window = SR as usize / 20;
    let levels: Vec<f64> = x.chunks(window).map(rms).collect();
    let (loudest, peak) =
        levels.iter().enumerate().fold(
            (0, 0.0),
            |(i, p), (j, &l)| if l > p { (j, l) } else { (i, p) },
        );
    let under = peak * 10f64.powf(-db / 20.0);
    (loudest..levels.len())
        .find(|&i| levels[i] <= under)
        .map(|i| i as f64 * 0.05)
}

/// When the célesta playing `name` has fallen 20 and 40 dB under its loudest (s).
fn celesta_falls(name: &str) -> (f64, f64) {
    let (mut v, _) = voice(0, name);
    let x = samples(&mut v);
    let at = |db| fallen(&x, db).unwrap_or_else(|| panic!("{name} never falls {db} dB"));
    (at(20.0), at(40.0))
}

#[test]
fn the_celesta_rings_like_listen_to_wikipedias() {
    // Listen to Wikipedia's sampled célesta, A#4: 20 dB under at 3.1 s, 40 dB under by
    // about 4 s — a long ring, then damped.
    let (twenty, forty) = celesta_falls("A#4");
    assert!(
        (2.7..=3.5).contains(&twenty) && (3.6..=4.6).contains(&forty),
        "A#4 falls 20 dB at {twenty:.2} s and 40 dB at {forty:.2} s"
    );
}

#[test]
fn the_celesta_rings_longer_the_lower_the_note() {
    let [low, middle, high] = ["C#3", "A#4", "A#6"].map(celesta_falls);
    for (name, (twenty, forty)) in [("C#3", low), ("A#4", middle), ("A#6", high)] {
        println!("{name}: 20 dB under at {twenty:.2} s, 40 dB under at {forty:.2} s");
    }
    assert!(
        low.0 > middle.0 && middle.0 > high.0 && low.1 > middle.1 && middle.1 > high.1,
        "C#3 {low:?}, A#4 {middle:?}, A#6 {high:?}"
    );
}

#[test]
fn violin_swells_in_slowly() {
    let (mut v, _) = voice(2, "C#4");
    let x = samples(&mut v);
    let (start, middle) = (rms(seconds(&x, 0.0, 0.1)), rms(seconds(&x, 1.2, 1.5)));
    assert!(
        start < middle * 0.2,
        "a swell, not an attack: {start} then {middle}"
    );
}

#[test]
fn clavichord_is_damped_after_the_key_is_released() {
    let (mut v, _) = voice(1, "C#3");
    let x = samples(&mut v);
    let n = x.len();
    let tail = rms(&x[n - 480..]);
    let body = rms(seconds(&x, 0.1, 0.3));
    assert!(
        tail < body * 0.05,
        "still sounding at the end: {tail} vs {body}"
    );
}

#[test]
fn no_voice_starts_or_ends_with_a_click() {
    for instrument in 0..3u8 {
        for name in ["C#2", "F#3", "A#4", "D#6"] {
            let (mut v, _) = voice(instrument, name);
            let x = samples(&mut v);
            // First and last samples near silence, and no jump between neighbours
            // larger than the loudest sample-to-sample change of the note's body.
            let first = x[0].abs();
            assert!(
                first < 0.01,
                "instrument {instrument} {name} starts at {first}"
            );
            let peak = x.iter().fold(0.0f32, |p, s| p.max(s.abs()));
            let last = x[x.len() - 1].abs();
            assert!(
                last < peak * 0.01,
                "instrument {instrument} {name} ends at {last} (peak {peak})"
            );
        }
    }
}
