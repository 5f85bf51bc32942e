//! `carillon bench silence`: what silence costs.
//!
//! One célesta note is struck, then the engine renders buffer after buffer with nothing
//! more to play, for as long as asked: first the note rings, then only the reverb's and
//! the filters' tails are left, decaying through the subnormal floats towards zero. Each
//! buffer is timed on two engines, one with flush-to-zero (as the engine always runs)
//! and one without, rendering in turns, and the costs are summed up per stretch of time
//! after the note.

use std::time::Instant;

use serde::Serialize;

use super::Timing;
use crate::config::Config;
use crate::engine::{engine, AudioHalf, ControlHalf};
use crate::event::EventKind;
use crate::instrument::Instruments;
use crate::score::{InstrumentId, Note};

pub struct SilenceBenchOptions {
    /// Seconds rendered after the note.
    pub seconds: f64,
    /// Length of each stretch summed up in one row.
    pub stretch: f64,
    pub buffer_frames: usize,
    pub sample_rate: u32,
}

#[derive(Debug, Serialize)]
pub struct SilenceRow {
    /// Seconds after the note at which the stretch begins.
    pub from_s: f64,
    pub with_ftz: Timing,
    pub without_ftz: Timing,
}

#[derive(Debug, Serialize)]
pub struct SilenceReport {
    pub sample_rate: u32,
    pub buffer_frames: usize,
    pub budget_us: f64,
    pub rows: Vec<SilenceRow>,
}

/// An engine with one célesta note struck at frame 0.
fn struck(o: &SilenceBenchOptions, flush: bool) -> anyhow::Result<(ControlHalf, AudioHalf)> {
    let config = Config::defaults();
    let sr = f64::from(o.sample_rate);
    let (mut control, mut audio) = engine(&config.engine, Instruments::built_in()?, sr);
    audio.set_flush_denormals(flush);
    let note = Note {
        instrument: InstrumentId(0),
        frequency: 440.0,
        midi: 69,
        velocity: 0.8,
        pan: 0.0,
        seed: 1,
        kind: EventKind::Addition,
    };
    control
        .play(&note, 0)
        .map_err(|e| anyhow::anyhow!("cannot schedule the note: {e}"))?;
    Ok((control, audio))
}

pub fn run(o: &SilenceBenchOptions) -> anyhow::Result<SilenceReport> {
    anyhow::ensure!(o.buffer_frames > 0, "--buffer-frames must be at least 1");
    anyhow::ensure!(
        o.stretch > 0.0 && o.stretch <= o.seconds,
        "the stretch must be positive and at most the seconds rendered"
    );
    let per_stretch = ((o.stretch * f64::from(o.sample_rate)) as usize / o.buffer_frames).max(1);
    // Whole stretches only, so that every row sums up as many buffers.
    let buffers = per_stretch * (o.seconds / o.stretch).round().max(1.0) as usize;
    // The two engines render in turns, buffer by buffer, so that whatever else the
    // machine does weighs on both alike.
    let mut engines = [struck(o, true)?, struck(o, false)?];
    let mut out = vec![0.0f32; o.buffer_frames * 2];
    let mut costs = [Vec::with_capacity(buffers), Vec::with_capacity(buffers)];
    for _ in 0..buffers {
        for ((control, audio), costs) in engines.iter_mut().zip(costs.iter_mut()) {
            let started = Instant::now();
            audio.render(&mut out, 2);
            costs.push(started.elapsed());
            control.collect();
        }
    }
    std::hint::black_box(&out);
    let [with, without] = costs;
    let rows = with
        .chunks(per_stretch)
        .zip(without.chunks(per_stretch))
        .enumerate()
        .map(|(i, (a, b))| SilenceRow {
            from_s: i as f64 * (per_stretch * o.buffer_frames) as f64 / f64::from(o.sample_rate),
            with_ftz: Timing::of(a.to_vec()),
            without_ftz: Timing::of(b.to_vec()),
        })
        .collect();
    Ok(SilenceReport {
        sample_rate: o.sample_rate,
        buffer_frames: o.buffer_frames,
        budget_us: o.buffer_frames as f64 / f64::from(o.sample_rate) * 1e6,
        rows,
    })
}

pub fn table(r: &SilenceReport) -> String {
    let mut s = format!(
        "carillon bench silence: one célesta note, then nothing; {} Hz, {}-frame buffers, budget {:.1} µs\n\n\
         after (s)   median µs (flush to zero)   median µs (without)   p99 µs (with / without)\n",
        r.sample_rate, r.buffer_frames, r.budget_us
    );
    for row in &r.rows {
        s.push_str(&format!(
            "{:>9.1} {:>27.2} {:>21.2} {:>13.1} / {:.1}\n",
            row.from_s,
            row.with_ftz.median_us,
            row.without_ftz.median_us,
            row.with_ftz.p99_us,
            row.without_ftz.p99_us,
        ));
    }
    s
}
