//! The engine through its public halves: sample-accurate starts, polyphony, loudness.

use std::sync::atomic::Ordering::Relaxed;

use carillon::config::Config;
use carillon::engine::engine;
use carillon::event::EventKind;
use carillon::instrument::Instruments;
use carillon::score::{InstrumentId, Note};

const SR: f64 = 48_000.0;

fn note(instrument: u8, frequency: f32) -> Note {
    Note {
        instrument: InstrumentId(instrument),
        frequency,
        midi: 0,
        velocity: 1.0,
        pan: 0.0,
        seed: 7,
        kind: EventKind::Addition,
    }
}

/// Render `frames` frames of one note scheduled at `start`, pulling the audio in
/// device buffers of `buffer` frames; the note is handed over `lead` frames before
/// its start (its "arrival"), at least one engine block (64 frames) ahead.
fn render_one(start: u64, buffer: usize, lead: u64, frames: usize) -> Vec<f32> {
    let config = Config::defaults();
    let (mut control, mut audio) = engine(
        &config.engine,
        Instruments::built_in().expect("instruments"),
        SR,
    );
    let mut out = vec![0.0f32; frames * 2];
    let mut sent = false;
    let mut pos = 0;
    while pos < frames {
        if !sent && audio.clock() + lead >= start {
            control
                .play(&note(0, 440.0), start)
                .expect("queue has room");
            sent = true;
        }
        let n = buffer.min(frames - pos);
        audio.render(&mut out[pos * 2..(pos + n) * 2], 2);
        pos += n;
    }
    out
}

fn first_sound(samples: &[f32]) -> usize {
    samples
        .iter()
        .position(|x| x.abs() > 1e-6)
        .expect("the note should sound")
        / 2
}

#[test]
fn notes_start_at_their_scheduled_frame_whatever_the_buffer_or_arrival() {
    let start = 10_007;
    let reference = render_one(start, 64, 64, 16_000);
    let onset = first_sound(&reference);
    // The master bus's look-ahead limiter delays everything by its attack time (5 ms).
    let lookahead = (0.005 * SR) as usize;
    assert!(
        (start as usize..=start as usize + lookahead + 1).contains(&onset),
        "onset at {onset}, scheduled at {start}"
    );
    for (buffer, lead) in [(256, 300), (1, 64), (37, 500), (512, 1024), (100, 150)] {
        let other = render_one(start, buffer, lead, 16_000);
        assert_eq!(
            first_sound(&other),
            onset,
            "buffer {buffer}, arrival {lead} frames ahead"
        );
        assert!(
            other == reference,
            "the output must not depend on buffer size ({buffer}) or arrival ({lead})"
        );
    }
}

#[test]
fn polyphony_is_capped_by_stealing_the_oldest() {
    let mut config = Config::defaults();
    config.engine.polyphony = 8;
    let (mut control, mut audio) = engine(
        &config.engine,
        Instruments::built_in().expect("instruments"),
        SR,
    );
    let mut out = vec![0.0f32; 256 * 2];
    for i in 0..40u64 {
        control
            .play(&note(2, 220.0 + i as f32), audio.clock() + 10)
            .expect("queue has room");
        audio.render(&mut out, 2);
        control.collect();
        // Stolen voices fade for 5 ms (240 frames), so at most one extra lingers.
        let voices = control.voices();
        assert!(voices <= 9, "{voices} voices with a polyphony of 8");
    }
    assert_eq!(control.shared().stolen.load(Relaxed), 32);
}

#[test]
fn a_crowd_of_loud_notes_never_clips_with_or_without_look_ahead() {
    for attack_ms in [5.0, 0.0] {
        let mut config = Config::defaults();
        config.engine.limiter.attack_ms = attack_ms;
        let (mut control, mut audio) = engine(
            &config.engine,
            Instruments::built_in().expect("instruments"),
            SR,
        );
        let ceiling = config.engine.limiter.ceiling;
        let mut out = vec![0.0f32; 512 * 2];
        let mut peak = 0.0f32;
        for block in 0..200u64 {
            for k in 0..3u8 {
                let _ = control.play(
                    &note(k, 60.0 + (block * 7 % 500) as f32),
                    audio.clock() + 64,
                );
            }
            audio.render(&mut out, 2);
            control.collect();
            peak = out.iter().fold(peak, |p, x| p.max(x.abs()));
        }
        assert!(
            peak <= ceiling,
            "attack {attack_ms} ms: peak {peak} over the ceiling {ceiling}"
        );
        assert!(
            peak > 0.5 * ceiling,
            "the crowd should be loud (peak {peak})"
        );
    }
}

#[test]
fn finished_voices_are_returned_and_freed() {
    let config = Config::defaults();
    let (mut control, mut audio) = engine(
        &config.engine,
        Instruments::built_in().expect("instruments"),
        SR,
    );
    control.play(&note(1, 200.0), 0).expect("queue has room");
    let mut out = vec![0.0f32; 4800 * 2];
    audio.render(&mut out, 2);
    assert_eq!(control.voices(), 1);
    // The clavichord's note lasts 1.59 s; after 2 s it must be gone.
    for _ in 0..20 {
        audio.render(&mut out, 2);
    }
    assert_eq!(control.voices(), 0);
    assert_eq!(control.collect(), 1);
}
