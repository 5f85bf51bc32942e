//! The engine through its public halves: sample-accurate starts, polyphony, loudness.

use std::sync::atomic::Ordering::Relaxed;

use std::sync::atomic::AtomicBool;

use carillon::config::Config;
use carillon::engine::{engine, AudioHalf, ControlHalf, ASAP};
use carillon::event::EventKind;
use carillon::instrument::{Instruments, Voice};
use carillon::output::device::fill;
use carillon::score::{InstrumentId, Note};
use carillon::simd::Width;
use fundsp::prelude::{An, AudioNode, Frame, U0, U1};

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

/// `callbacks` device buffers of `buffer` frames, then one note scheduled at `start`,
/// then enough buffers for it to sound; returns the output after the note was sent and
/// how many notes the engine counted late.
fn play_after(callbacks: usize, buffer: usize, start: u64) -> (Vec<f32>, u64) {
    let (mut control, mut audio) = default_engine();
    let mut out = vec![0.0f32; buffer * 2];
    for _ in 0..callbacks {
        audio.render(&mut out, 2);
    }
    control
        .play(&note(0, 440.0), start)
        .expect("queue has room");
    let mut after = vec![0.0f32; 8192 * 2];
    for chunk in after.chunks_mut(buffer * 2) {
        audio.render(chunk, 2);
    }
    (after, control.shared().late.load(Relaxed))
}

#[test]
fn a_note_scheduled_asap_starts_in_the_first_block_not_yet_rendered_and_is_never_late() {
    // Buffers of whole blocks: nothing is rendered past the last callback, and the note
    // starts in the very next one, at its first frame.
    for buffer in [64, 256] {
        let clock = (10 * buffer) as u64;
        let (asap, late) = play_after(10, buffer, ASAP);
        let (exact, _) = play_after(10, buffer, clock);
        assert!(
            asap == exact,
            "{buffer}: ASAP should start at frame {clock}"
        );
        assert_eq!(late, 0, "{buffer}: an ASAP note is never late");
    }
    // 100-frame buffers: after ten callbacks (1000 frames) the engine has rendered 16
    // blocks (1024 frames), so the first block not yet rendered starts at 1024.
    let (asap, late) = play_after(10, 100, ASAP);
    let (exact, _) = play_after(10, 100, 1024);
    assert!(
        asap == exact,
        "ASAP at 100-frame buffers should start at frame 1024"
    );
    assert_eq!(late, 0);
    // The same start asked for as a frame already rendered is a late note.
    let (_, late) = play_after(10, 100, 1000);
    assert_eq!(late, 1);
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
        // The final clamp would hold the ceiling whatever the limiter did: it must
        // not have had to touch a single sample.
        let clamped = control.shared().clamped.load(Relaxed);
        assert_eq!(
            clamped, 0,
            "attack {attack_ms} ms: the final clamp caught {clamped} samples the limiter let through"
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

/// A voice that misbehaves in one chosen way after `after` samples.
#[derive(Clone)]
struct Faulty {
    output: f32,
    after: u64,
    t: u64,
    panics: bool,
}

impl AudioNode for Faulty {
    const ID: u64 = 0x6661_756c_7479;
    type Inputs = U0;
    type Outputs = U1;

    fn tick(&mut self, _: &Frame<f32, U0>) -> Frame<f32, U1> {
        self.t += 1;
        if self.t <= self.after {
            return [0.1].into();
        }
        if self.panics {
            panic!("a voice broke");
        }
        [self.output].into()
    }
}

fn faulty_voice(output: f32, after: u64, panics: bool, frames: u64) -> Voice {
    Voice {
        unit: Box::new(An(Faulty {
            output,
            after,
            t: 0,
            panics,
        })),
        frames,
        gain: 0.5,
        pan: 0.0,
        audible: 3e-5,
    }
}

fn default_engine() -> (ControlHalf, AudioHalf) {
    engine(
        &Config::defaults().engine,
        Instruments::built_in().expect("instruments"),
        SR,
    )
}

/// Render `blocks` buffers of 256 frames; the peak of each.
fn peaks(audio: &mut AudioHalf, blocks: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 256 * 2];
    (0..blocks)
        .map(|_| {
            audio.render(&mut out, 2);
            assert!(
                out.iter().all(|x| x.is_finite()),
                "a non-finite sample left the engine"
            );
            out.iter().fold(0.0f32, |p, x| p.max(x.abs()))
        })
        .collect()
}

#[test]
fn a_voice_that_turns_nan_is_dropped_and_the_others_play_on() {
    let (mut control, mut audio) = default_engine();
    control
        .schedule(faulty_voice(f32::NAN, 1000, false, 48_000), 64)
        .expect("room");
    control.play(&note(0, 440.0), 64).expect("room");
    // A second bell long after: the bus must still carry sound, not silence.
    control.play(&note(0, 660.0), 48_000).expect("room");
    let peaks = peaks(&mut audio, 400);
    assert_eq!(
        control.shared().nonfinite.load(Relaxed),
        1,
        "the NaN voice is counted"
    );
    assert_eq!(
        control.shared().bus_resets.load(Relaxed),
        0,
        "and never reached the bus"
    );
    let late = peaks[48_000 / 256 + 4];
    assert!(
        late > 0.05,
        "the bell after the NaN voice should sound (peak {late})"
    );
}

#[test]
fn a_bus_that_goes_non_finite_is_reset_and_sound_returns() {
    let (mut control, mut audio) = default_engine();
    // Finite voices whose sum overflows to infinity on the bus.
    for _ in 0..8 {
        control
            .schedule(faulty_voice(3.0e38, 100, false, 2_000), 64)
            .expect("room");
    }
    control.play(&note(0, 440.0), 24_000).expect("room");
    let peaks = peaks(&mut audio, 200);
    assert!(
        control.shared().bus_resets.load(Relaxed) >= 1,
        "the bus went non-finite and should have been reset"
    );
    let after = peaks[24_000 / 256 + 4];
    assert!(
        after > 0.05,
        "a note after the reset should sound (peak {after})"
    );
}

#[test]
fn a_panic_in_the_engine_is_caught_in_the_callback_and_silences_it() {
    let (mut control, mut audio) = default_engine();
    control
        .schedule(faulty_voice(0.0, 300, true, 48_000), 0)
        .expect("room");
    let failed = AtomicBool::new(false);
    let mut data = vec![1.0f32; 256 * 2];
    fill(&mut audio, &mut data, 2, &failed);
    assert!(
        !failed.load(Relaxed),
        "the voice plays 300 good samples first"
    );
    fill(&mut audio, &mut data, 2, &failed);
    assert!(failed.load(Relaxed), "the panic must be recorded");
    assert!(
        data.iter().all(|&x| x == 0.0),
        "a failed callback plays silence"
    );
    let clock = audio.clock();
    data.fill(1.0);
    fill(&mut audio, &mut data, 2, &failed);
    assert!(data.iter().all(|&x| x == 0.0), "and keeps playing silence");
    assert_eq!(
        audio.clock(),
        clock,
        "without calling the broken engine again"
    );
}

#[test]
fn a_renewed_audio_half_continues_the_clock_and_silences_the_old_one() {
    let (mut control, mut old) = default_engine();
    let mut out = vec![0.0f32; 256 * 2];
    for _ in 0..10 {
        old.render(&mut out, 2);
    }
    let mut new = control.renew_audio();
    assert_eq!(new.clock(), 2560, "the new half takes up the stream clock");
    control.play(&note(0, 440.0), 2560 + 64).expect("room");
    let p = peaks(&mut new, 8);
    assert!(
        p.iter().any(|&x| x > 0.05),
        "the new half plays what is scheduled"
    );
    out.fill(1.0);
    old.render(&mut out, 2);
    assert!(
        out.iter().all(|&x| x == 0.0),
        "the replaced half renders silence"
    );
    assert_eq!(
        control.shared().frames.load(Relaxed),
        new.clock(),
        "and moves no clock"
    );
}

/// A voice that falls 60 dB a second from full scale, scheduled for far longer than it
/// can be heard.
#[derive(Clone)]
struct Fading {
    level: f32,
    keep: f32,
}

impl AudioNode for Fading {
    const ID: u64 = 0x6361_7269_0002;
    type Inputs = U0;
    type Outputs = U1;

    fn tick(&mut self, _input: &Frame<f32, U0>) -> Frame<f32, U1> {
        self.level *= self.keep;
        [self.level].into()
    }
}

fn fading_voice(seconds: u64) -> Voice {
    Voice {
        unit: Box::new(An(Fading {
            level: 1.0,
            // -60 dB a second: 10^(-3 / SR) per sample.
            keep: 10f32.powf(-3.0 / SR as f32),
        })),
        frames: seconds * SR as u64,
        gain: 1.0,
        pan: 0.0,
        // -90 dBFS.
        audible: 10f32.powf(-90.0 / 20.0),
    }
}

#[test]
fn a_voice_under_its_instruments_floor_is_retired_before_its_end() {
    let (mut control, mut audio) = default_engine();
    control.schedule(fading_voice(60), 0).expect("room");
    let mut out = vec![0.0f32; 256 * 2];
    // The voice has 60 s to run but is under -90 dBFS after 1.5 s (the pan's
    // equal-power gain of -3 dB brings that from 1.5 s to 1.45 s).
    let seconds_rendered = |blocks: usize| blocks as f64 * 256.0 / SR;
    let mut blocks = 0;
    while control.voices() > 0 || blocks == 0 {
        audio.render(&mut out, 2);
        blocks += 1;
        assert!(
            seconds_rendered(blocks) < 2.0,
            "the voice was still held 2 s in, 45 dB under its floor"
        );
    }
    let retired_at = seconds_rendered(blocks);
    assert!(
        retired_at > 1.4,
        "retired at {retired_at:.2} s, while it was still over -90 dBFS"
    );
    assert_eq!(control.shared().inaudible.load(Relaxed), 1);
}

#[test]
fn a_swell_that_starts_under_the_floor_plays_out_whole() {
    // The violin rises from silence over 1.1 s: its first blocks are under -90 dBFS,
    // and it must not be taken for a voice that has ended. It may only be retired at
    // the very end of its fall, once under the floor.
    let (mut control, mut audio) = default_engine();
    let played = control.play(&note(2, 440.0), 0).expect("room");
    let mut out = vec![0.0f32; 256 * 2];
    let mut rendered = 0u64;
    let mut held_until = 0u64;
    while rendered < played.frames + 256 {
        audio.render(&mut out, 2);
        rendered += 256;
        if control.voices() > 0 {
            held_until = rendered;
        }
    }
    // Its fall (1.6 s, a raised cosine) takes 99 % of it down to -90 dB relative only
    // in its last few percent.
    let release = (1.6 * SR) as u64;
    assert!(
        held_until + release / 20 >= played.frames,
        "the swell was retired at frame {held_until} of {}",
        played.frames
    );
}

#[test]
fn after_a_note_and_its_reverb_tail_the_engine_sleeps_and_cuts_nothing_audible() {
    let (mut control, mut audio) = default_engine();
    let played = control.play(&note(0, 440.0), 0).expect("room");
    let mut out = vec![0.0f32; 256 * 2];
    let mut rendered = 0u64;
    // The loudest sample of each buffer, until the engine sleeps.
    let mut peaks = Vec::new();
    while rendered == 0 || !audio.asleep() {
        audio.render(&mut out, 2);
        rendered += 256;
        peaks.push(out.iter().fold(0.0f32, |m, x| m.max(x.abs())));
        assert!(
            rendered < played.frames + 10 * SR as u64,
            "10 s after its note ended the engine is still awake"
        );
    }
    // It slept soon after the tail died: the reverb's 2.8 s to -60 dB.
    let slept_after = (rendered - played.frames) as f64 / SR;
    assert!(slept_after < 5.0, "slept {slept_after:.1} s after the note");
    // What it cut was inaudible: the last 100 ms before it slept were all under
    // -90 dBFS.
    let last = &peaks[peaks.len() - (0.1 * SR / 256.0) as usize..];
    let loudest = last.iter().fold(0.0f32, |m, &x| m.max(x));
    assert!(
        loudest < 3.2e-5,
        "the engine slept while its tail was at {:.1} dBFS",
        20.0 * loudest.log10()
    );
    // Asleep, it renders exact silence, and wakes for the next note.
    audio.render(&mut out, 2);
    assert!(out.iter().all(|&x| x == 0.0));
    let at = audio.clock() + 512;
    control.play(&note(0, 440.0), at).expect("room");
    let mut woke = vec![0.0f32; 2048 * 2];
    audio.render(&mut woke, 2);
    assert!(!audio.asleep());
    assert!(
        woke.iter().any(|&x| x.abs() > 0.01),
        "the next note is heard"
    );
}

#[test]
fn after_a_crowd_loud_enough_to_be_limited_the_engine_still_sleeps() {
    // The limiter brings its gain back to 1 after the crowd; were it to stop short
    // (f32 rounding freezes a slow release a few millionths under 1), it would never
    // be idle again, and neither would the engine.
    let config = Config::defaults();
    let ceiling = config.engine.limiter.ceiling;
    // At full volume (the volume follows the limiter), so that its peaks show it.
    let (mut control, mut audio, crowded) = crowd_engine(1.0, 1.0, Width::detect());
    let peak = crowded.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(
        peak > 0.99 * ceiling,
        "the crowd peaked at {peak}, under the ceiling {ceiling}: the limiter had nothing to do"
    );
    let crowd_ended = audio.clock();
    let mut out = vec![0.0f32; 256 * 2];
    while !audio.asleep() {
        audio.render(&mut out, 2);
        control.collect();
        assert!(
            audio.clock() - crowd_ended < 20 * SR as u64,
            "20 s after a limited crowd the engine is still awake"
        );
    }
}

/// The same second of a crowd of notes (all three instruments, loud enough for the
/// limiter to work) from an engine at `volume`, whose volume is then set to `then`;
/// the mix, reverb and limiter at `width`.
fn crowd(volume: f32, then: f32, width: Width) -> Vec<f32> {
    crowd_engine(volume, then, width).2
}

/// [`crowd`], and the engine that played it.
fn crowd_engine(volume: f32, then: f32, width: Width) -> (ControlHalf, AudioHalf, Vec<f32>) {
    let mut config = Config::defaults();
    config.engine.volume = volume;
    let (mut control, mut audio) = engine(
        &config.engine,
        Instruments::built_in().expect("instruments"),
        SR,
    );
    audio.set_width(width);
    control.set_volume(then);
    let mut out = vec![0.0f32; 256 * 2];
    let mut all = Vec::new();
    for block in 0..188u64 {
        if block % 4 == 0 {
            for k in 0..3u8 {
                let _ = control.play(
                    &note(k, 110.0 + (block * 37 % 700) as f32),
                    audio.clock() + 64,
                );
            }
        }
        audio.render(&mut out, 2);
        control.collect();
        all.extend_from_slice(&out);
    }
    (control, audio, all)
}

/// How many samples of two renders of the same length differ in any bit.
fn samples_differing(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len(), "renders of different lengths");
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn the_bus_sounds_the_same_to_the_bit_in_its_avx2_and_baseline_builds() {
    let wide = Width::detect();
    assert_eq!(
        wide,
        Width::Avx2,
        "this test compares the AVX2 build of the mix, reverb and limiter with the baseline one, and needs a CPU with AVX2 and FMA"
    );
    // A volume gliding from 0.8 to 0.3 included.
    let a = crowd(0.8, 0.3, wide);
    let b = crowd(0.8, 0.3, Width::Baseline);
    assert!(a.iter().any(|x| x.abs() > 0.1), "the crowd should be loud");
    let differ = samples_differing(&a, &b);
    assert_eq!(differ, 0, "{differ} samples differ between the two builds");
}

#[test]
fn a_volume_change_glides_then_lands_exactly_on_its_target() {
    let glided = crowd(0.8, 0.3, Width::detect());
    let steady = crowd(0.3, 0.3, Width::detect());
    // 20 ms in, the glide is still on its way down from 0.8…
    let early = 960 * 2;
    let ratio = glided[..early]
        .iter()
        .zip(&steady[..early])
        .filter(|(_, s)| s.abs() > 1e-3)
        .map(|(g, s)| g / s)
        .fold(0.0f32, f32::max);
    assert!(
        ratio > 1.2,
        "no glide: at most {ratio}× the steady volume's level"
    );
    // …and half a second in it has arrived: the same samples as a volume that never
    // moved, to the bit (a glide left a rounding step short of 0.3 would differ).
    let late = 24_000 * 2;
    let differ = samples_differing(&glided[late..], &steady[late..]);
    assert_eq!(differ, 0, "{differ} samples still off the steady volume's");
}
