//! `carillon bench render`: the engine alone, driven in a tight loop by a null output.
//!
//! For each voice count it measures the cost of one device buffer (median, p99, max,
//! and as a share of the buffer's real-time budget), the same voices summed by a bare
//! fundsp graph with no engine around them (so the engine's own overhead shows as a
//! ratio), and searches for the largest voice count that fits in half and in all of
//! the budget.

use std::time::Instant;

use fundsp::prelude::{AudioUnit, BufferArray, BufferRef, Net, U1};
use serde::Serialize;

use super::Timing;
use crate::config::Config;
use crate::engine::limiter::Limiter;
use crate::engine::reverb::Reverb;
use crate::engine::{engine, AudioHalf, ControlHalf, BLOCK};
use crate::event::EventKind;
use crate::instrument::Instruments;
use crate::score::{InstrumentId, Note};

pub struct RenderBenchOptions {
    pub voices: Vec<usize>,
    pub buffer_frames: usize,
    pub sample_rate: u32,
    /// Seconds of audio to time per voice count.
    pub seconds: f64,
    /// Only this instrument (by name); all of them, in turn, when `None`.
    pub instrument: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RenderRow {
    pub voices: usize,
    pub engine: Timing,
    /// Median as a share of the buffer's duration.
    pub budget_share: f64,
    /// The same voices summed by a bare fundsp graph (no scheduling, mixing or bus).
    pub bare_fundsp: Timing,
    /// (engine − master bus alone) / bare graph, medians: the engine's overhead on
    /// the voices themselves, its master bus left out.
    pub overhead_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct RenderReport {
    pub sample_rate: u32,
    pub buffer_frames: usize,
    pub budget_us: f64,
    /// The master bus alone, awake (reverb, limiter), on a chord.
    pub bus_only: Timing,
    pub rows: Vec<RenderRow>,
    pub max_voices_half_budget: usize,
    pub max_voices_full_budget: usize,
}

/// Voices sound for at least 1.5 s (the clavichord's length): every engine is timed
/// for its first second only, then rebuilt, so that all its voices really sound.
const RUN_SECONDS: f64 = 1.0;

/// The i-th voice's note: every instrument in turn, or only `only`.
fn note(i: usize, only: Option<u8>, instruments: usize) -> Note {
    let instrument = only.unwrap_or((i % instruments.max(1)) as u8);
    Note {
        instrument: InstrumentId(instrument),
        frequency: 110.0 * (1.0 + (i % 24) as f32 / 8.0),
        midi: 0,
        velocity: 0.7,
        pan: ((i % 7) as f32 - 3.0) / 3.0,
        seed: i as u64,
        kind: EventKind::Addition,
    }
}

fn sounding_engine(
    instruments: &Instruments,
    only: Option<u8>,
    voices: usize,
    sr: f64,
) -> (ControlHalf, AudioHalf) {
    let mut config = Config::defaults();
    config.engine.polyphony = voices.max(1);
    let (mut control, audio) = engine(&config.engine, instruments.clone(), sr);
    let kinds = instruments.names().len();
    for i in 0..voices {
        // The queue holds twice the polyphony: every note fits.
        let _ = control.play(&note(i, only, kinds), 0);
    }
    (control, audio)
}

/// Buffers timed per engine, and in all.
fn buffers(o: &RenderBenchOptions) -> (usize, usize) {
    let sr = o.sample_rate as f64;
    let per_run = ((RUN_SECONDS.min(o.seconds) * sr) as usize / o.buffer_frames).max(1);
    let total = ((o.seconds * sr) as usize / o.buffer_frames).max(per_run);
    (per_run, total)
}

/// Time `render` on fresh state from `setup`, rebuilt every run, buffer by buffer.
fn time_runs<S>(
    o: &RenderBenchOptions,
    mut setup: impl FnMut() -> S,
    mut render: impl FnMut(&mut S),
) -> Timing {
    let (per_run, total) = buffers(o);
    let mut samples = Vec::with_capacity(total);
    while samples.len() < total {
        let mut state = setup();
        for _ in 0..per_run {
            let started = Instant::now();
            render(&mut state);
            samples.push(started.elapsed());
        }
        std::hint::black_box(&mut state);
    }
    Timing::of(samples)
}

/// Time the engine rendering `buffer`-frame buffers with `voices` voices.
fn time_engine(
    instruments: &Instruments,
    only: Option<u8>,
    voices: usize,
    o: &RenderBenchOptions,
) -> Timing {
    let sr = o.sample_rate as f64;
    let mut out = vec![0.0f32; o.buffer_frames * 2];
    time_runs(
        o,
        || sounding_engine(instruments, only, voices, sr),
        |(_control, audio)| audio.render(&mut out, 2),
    )
}

/// Time the master bus awake (reverb, then limiter, as the engine runs them on each
/// block) on a chord at -12 dBFS. The engine itself cannot show it: given no voice, its
/// bus sleeps and costs nothing.
fn time_bus(o: &RenderBenchOptions) -> Timing {
    let sr = o.sample_rate as f64;
    let config = Config::defaults().engine;
    let (r, l) = (&config.reverb, &config.limiter);
    let chord: Vec<f32> = (0..BLOCK)
        .map(|i| {
            let t = i as f64 / sr;
            let s: f64 = [220.0, 277.18, 329.63]
                .iter()
                .map(|f| (std::f64::consts::TAU * f * t).sin())
                .sum();
            (0.25 / 3.0 * s) as f32
        })
        .collect();
    let setup = || {
        let reverb = Reverb::new(r.room_size, r.time, r.damping, r.wet, sr);
        let limiter = Limiter::new(
            f64::from(l.attack_ms),
            f64::from(l.release_ms),
            l.ceiling,
            sr,
        );
        (reverb, limiter, vec![0.0f32; BLOCK], vec![0.0f32; BLOCK])
    };
    time_runs(o, setup, |(reverb, limiter, left, right)| {
        let mut frames = o.buffer_frames;
        while frames > 0 {
            let n = frames.min(BLOCK);
            left[..n].copy_from_slice(&chord[..n]);
            right[..n].copy_from_slice(&chord[..n]);
            reverb.process(&mut left[..n], &mut right[..n]);
            limiter.process(&mut left[..n], &mut right[..n]);
            frames -= n;
        }
    })
}

/// The same voices, summed by a plain fundsp `Net`, rendered in the same buffers.
fn time_bare(
    instruments: &Instruments,
    only: Option<u8>,
    voices: usize,
    o: &RenderBenchOptions,
) -> Timing {
    let sr = o.sample_rate as f64;
    let mut out = BufferArray::<U1>::new();
    let kinds = instruments.names().len();
    let setup = || {
        let mut net = (0..voices).fold(Net::wrap(Box::new(fundsp::prelude::zero())), |net, i| {
            let n = note(i, only, kinds);
            net + Net::wrap(instruments.build(&n, sr).unit)
        });
        net.set_sample_rate(sr);
        net.allocate();
        net
    };
    time_runs(o, setup, |net| {
        let mut left = o.buffer_frames;
        while left > 0 {
            let n = left.min(BLOCK);
            net.process(n, &BufferRef::empty(), &mut out.buffer_mut());
            left -= n;
        }
    })
}

/// The largest voice count whose median buffer fits in `share` of the budget, by
/// doubling and then bisection.
fn max_voices(
    instruments: &Instruments,
    only: Option<u8>,
    share: f64,
    budget_us: f64,
    o: &RenderBenchOptions,
) -> usize {
    let fits = |v: usize| time_engine(instruments, only, v, o).median_us <= share * budget_us;
    let (mut good, mut bad) = (0usize, 16usize);
    while fits(bad) {
        good = bad;
        bad *= 2;
        if bad > 16_384 {
            return good;
        }
    }
    while bad - good > (good / 32).max(1) {
        let mid = (good + bad) / 2;
        if fits(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

/// Measure `instruments` (the built-in ones, or a configuration's, samplers included),
/// ready at `o.sample_rate` (see [`Instruments::prepare`]).
pub fn run(o: &RenderBenchOptions, instruments: &Instruments) -> anyhow::Result<RenderReport> {
    anyhow::ensure!(o.buffer_frames > 0, "--buffer-frames must be at least 1");
    anyhow::ensure!(!o.voices.is_empty(), "--voices needs at least one count");
    let instruments = instruments.clone();
    let only = match &o.instrument {
        None => None,
        Some(name) => {
            let names = instruments.names();
            let id = names.iter().position(|n| n == name).ok_or_else(|| {
                anyhow::anyhow!("no instrument {name:?}; known: {}", names.join(", "))
            })?;
            Some(id as u8)
        }
    };
    let budget_us = o.buffer_frames as f64 / o.sample_rate as f64 * 1e6;
    let bus_only = time_bus(o);
    let rows = o
        .voices
        .iter()
        .map(|&voices| {
            let engine = time_engine(&instruments, only, voices, o);
            let bare = time_bare(&instruments, only, voices, o);
            RenderRow {
                voices,
                engine,
                budget_share: engine.median_us / budget_us,
                bare_fundsp: bare,
                overhead_ratio: (engine.median_us - bus_only.median_us) / bare.median_us,
            }
        })
        .collect();
    // The search needs fewer seconds per probe to stay quick.
    let probe = RenderBenchOptions {
        voices: Vec::new(),
        buffer_frames: o.buffer_frames,
        sample_rate: o.sample_rate,
        seconds: o.seconds / 2.0,
        instrument: None,
    };
    Ok(RenderReport {
        sample_rate: o.sample_rate,
        buffer_frames: o.buffer_frames,
        budget_us,
        bus_only,
        rows,
        max_voices_half_budget: max_voices(&instruments, only, 0.5, budget_us, &probe),
        max_voices_full_budget: max_voices(&instruments, only, 1.0, budget_us, &probe),
    })
}

/// The report as a table for people.
pub fn table(r: &RenderReport) -> String {
    let mut s = format!(
        "carillon bench render: {} Hz, {}-frame buffers, budget {:.1} µs per buffer\n\
         master bus alone (reverb, limiter): median {:.1} µs ({:.1} %)\n\n\
         voices   median µs   p99 µs    max µs   % budget   bare fundsp µs   overhead\n",
        r.sample_rate,
        r.buffer_frames,
        r.budget_us,
        r.bus_only.median_us,
        100.0 * r.bus_only.median_us / r.budget_us,
    );
    for row in &r.rows {
        s.push_str(&format!(
            "{:>6} {:>11.1} {:>8.1} {:>9.1} {:>9.1} % {:>16.1} {:>9.2}×\n",
            row.voices,
            row.engine.median_us,
            row.engine.p99_us,
            row.engine.max_us,
            100.0 * row.budget_share,
            row.bare_fundsp.median_us,
            row.overhead_ratio,
        ));
    }
    s.push_str(&format!(
        "\nlargest voice count within 50 % of the budget: {}\nlargest voice count within 100 % of the budget: {}\n\
         (overhead: the engine's median less its bus alone, over the bare graph's median)\n",
        r.max_voices_half_budget, r.max_voices_full_budget
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_bus_alone_is_timed_awake() {
        // Given no voice, the engine's bus sleeps: timing it that way measures a
        // sleeping bus, a few hundred nanoseconds of bookkeeping. The reverb's twelve
        // delays and the limiter over every frame cost several times that.
        let o = RenderBenchOptions {
            voices: vec![0],
            buffer_frames: 256,
            sample_rate: 48_000,
            seconds: 0.5,
            instrument: None,
        };
        let instruments = Instruments::built_in().expect("the built-in instruments");
        let asleep = time_engine(&instruments, None, 0, &o).median_us;
        let awake = time_bus(&o).median_us;
        assert!(
            awake > 3.0 * asleep,
            "the bus alone {awake:.2} µs, the engine with no voice {asleep:.2} µs"
        );
    }
}
