//! Criterion benches of the hot paths: parsing wikimon messages, scoring events,
//! rendering engine blocks with many voices, and the master bus's reverb alone.

use std::hint::black_box;

use carillon::conductor::{offline_events, render_into, RenderOptions};
use carillon::config::Config;
use carillon::engine::limiter::Limiter;
use carillon::engine::reverb::Reverb;
use carillon::engine::{engine, AudioHalf, ControlHalf};
use carillon::event::{Event, EventKind};
use carillon::ingest::format::rules::Rules;
use carillon::ingest::format::{parse_any, parse_wikimon, Format, Message};
use carillon::ingest::plan::plan;
use carillon::instrument::Instruments;
use carillon::output::null::NullSink;
use carillon::score::{InstrumentId, Note, Score};
use carillon::simd::Width;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/wikimon/wikiticker-all-0600-1h.jsonl"
);

fn parsing(c: &mut Criterion) {
    let text = std::fs::read_to_string(CORPUS)
        .unwrap_or_else(|e| panic!("the benches read {CORPUS}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("wikimon_recorded_hour", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(parse_wikimon(black_box(line)));
            }
        })
    });
    let es_path = CORPUS.replace(
        "wikimon/wikiticker-all-0600-1h.jsonl",
        "wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson",
    );
    let es = std::fs::read_to_string(&es_path)
        .unwrap_or_else(|e| panic!("the benches read {es_path}: {e}"));
    let es_lines: Vec<&str> = es.lines().collect();
    group.throughput(Throughput::Elements(es_lines.len() as u64));
    group.bench_function("eventstreams_recentchange", |b| {
        b.iter(|| {
            for line in &es_lines {
                let _ = black_box(parse_any(black_box(line)));
            }
        })
    });
    // The same lines read by the built-in format as a source reads them, and by the
    // eventstreams preset's rules: what a rules file costs against code.
    let built_in = Format::EventStreams;
    group.bench_function("eventstreams_format", |b| {
        b.iter(|| {
            for line in &es_lines {
                black_box(built_in.parse(&Message::text(black_box(line))));
            }
        })
    });
    let rules = Rules::named("eventstreams", None).expect("the eventstreams preset");
    group.bench_function("eventstreams_rules_preset", |b| {
        b.iter(|| {
            for line in &es_lines {
                black_box(rules.apply(&Message::text(black_box(line))));
            }
        })
    });
    group.finish();
}

fn scoring(c: &mut Criterion) {
    let names = ["celesta", "clavichord", "violin"].map(String::from);
    let config = Config::defaults();
    let events: Vec<Event> = (0..1000)
        .map(|i| {
            Event::new(
                Event::kind_for_size(i * 37 - 9000),
                i * 37 - 9000,
                "Some page",
            )
        })
        .collect();
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("map_1000_events", |b| {
        b.iter_batched(
            || Score::new(&config.score, &names).expect("score"),
            |mut score| {
                for (i, e) in events.iter().enumerate() {
                    // One second apart: nothing is throttled, every note is mapped.
                    black_box(score.map(e, i as f64));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An engine with `voices` notes sounding from frame 0 (all three instruments).
fn sounding_engine(voices: usize) -> (ControlHalf, AudioHalf) {
    let mut config = Config::defaults();
    config.engine.polyphony = voices;
    let (mut control, audio) = engine(
        &config.engine,
        Instruments::built_in().expect("instruments"),
        48_000.0,
    );
    for i in 0..voices {
        let instrument = (i % 3) as u8;
        let note = Note {
            instrument: InstrumentId(instrument),
            frequency: 110.0 + i as f32 * 3.0,
            midi: 0,
            velocity: 0.8,
            pan: 0.0,
            seed: i as u64,
            kind: EventKind::Addition,
        };
        control.play(&note, 0).expect("queue has room");
    }
    (control, audio)
}

fn engine_block(c: &mut Criterion) {
    // Voices last 1.5 s or more: measure in runs of 500 blocks (0.67 s) on a fresh
    // engine each, so every block really has all its voices sounding.
    const RUN: u64 = 500;
    let mut group = c.benchmark_group("engine_block_64_frames");
    for voices in [1usize, 16, 64, 256] {
        group.bench_function(format!("{voices}_voices"), |b| {
            b.iter_custom(|iters| {
                let mut out = vec![0.0f32; 128];
                let mut total = std::time::Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let (_control, mut audio) = sounding_engine(voices);
                    let n = RUN.min(iters - done);
                    let started = std::time::Instant::now();
                    for _ in 0..n {
                        audio.render(black_box(&mut out), 2);
                    }
                    total += started.elapsed();
                    done += n;
                }
                total
            })
        });
    }
    group.finish();
}

/// The reverb alone on 64-frame blocks of sound: in the engine it is one part of the
/// bus among the voices, too small there to time apart from them. In the build the CPU
/// runs (AVX2 where it has it), and in the baseline build for comparison.
fn reverb_block(c: &mut Criterion) {
    let sr = 48_000.0;
    // A second of a chord-like input, cycled through so that the lines stay full.
    let input: Vec<f32> = (0..48_000)
        .map(|i| {
            let t = i as f32 / sr as f32;
            0.1 * ((std::f32::consts::TAU * 440.0 * t).sin()
                + (std::f32::consts::TAU * 659.3 * t).sin())
        })
        .collect();
    for (name, width) in [
        ("reverb_block_64_frames", Width::detect()),
        ("reverb_block_64_frames_baseline", Width::Baseline),
    ] {
        let mut reverb = Reverb::new(18.0, 2.5, 0.5, 0.3, sr);
        reverb.set_width(width);
        let (mut left, mut right) = ([0.0f32; 64], [0.0f32; 64]);
        let mut at = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                left.copy_from_slice(&input[at..at + 64]);
                right.copy_from_slice(&input[at..at + 64]);
                at = (at + 64) % (input.len() - 64);
                reverb.process(black_box(&mut left), black_box(&mut right));
            })
        });
    }
}

/// The limiter alone on 64-frame blocks of a chord: under the ceiling, as nearly
/// always, and over it all the time, so that it plans its gain every sub-block.
fn limiter_block(c: &mut Criterion) {
    let sr = 48_000.0;
    let input: Vec<f32> = (0..48_000)
        .map(|i| {
            let t = i as f32 / sr as f32;
            (std::f32::consts::TAU * 440.0 * t).sin() + (std::f32::consts::TAU * 659.3 * t).sin()
        })
        .collect();
    for (name, level) in [
        ("limiter_block_64_frames_under_the_ceiling", 0.2f32),
        ("limiter_block_64_frames_limiting", 1.0),
    ] {
        let mut limiter = Limiter::new(5.0, 80.0, 0.9, sr);
        let (mut left, mut right) = ([0.0f32; 64], [0.0f32; 64]);
        let mut at = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                for (y, x) in left.iter_mut().zip(&input[at..at + 64]) {
                    *y = x * level;
                }
                right.copy_from_slice(&left);
                at = (at + 64) % (input.len() - 64);
                limiter.process(black_box(&mut left), black_box(&mut right));
            })
        });
    }
}

/// Render options for `seconds` of audio from `spec` at `speed`, into nothing.
fn render_options(config: &Config, spec: &str, seconds: f64, speed: f64) -> RenderOptions {
    let names = Instruments::built_in().expect("instruments").names();
    let sources = plan(config, None, &[spec.to_owned()], &names).expect("the source");
    RenderOptions {
        sources,
        duration: seconds,
        output: std::path::PathBuf::new(),
        seed: 1,
        speed,
        sample_rate: 48_000,
        notes: None,
    }
}

/// One whole offline render, as `carillon render` does it, to a null sink.
fn render_to_null(config: &Config, opts: &RenderOptions) -> u64 {
    let events = offline_events(&opts.sources, opts.seed).expect("the source's events");
    let mut sink = NullSink::default();
    let instruments = Instruments::built_in().expect("instruments");
    render_into(config, instruments, events, opts, &mut sink).expect("render");
    sink.frames
}

fn offline_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    group.bench_function("demo_60_s_to_null", |b| {
        let config = Config::defaults();
        let opts = render_options(&config, "demo", 60.0, 1.0);
        b.iter(|| black_box(render_to_null(&config, &opts)))
    });
    group.finish();
}

/// The density control's cost: the recorded hour at 36 times its speed (about 20 notes
/// a second, 30 s of audio) rendered with the control on and off.
fn density(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_20_notes_per_s");
    group.sample_size(10);
    for enabled in [true, false] {
        let mut config = Config::defaults();
        config.engine.density.enabled = enabled;
        let opts = render_options(&config, &format!("replay:{CORPUS}"), 30.0, 36.0);
        let name = if enabled { "density_on" } else { "density_off" };
        group.bench_function(name, |b| {
            b.iter(|| black_box(render_to_null(&config, &opts)))
        });
    }
    group.finish();
    // And per note, where the control does its work: building and scheduling 100
    // célesta notes 10 ms apart, with and without it.
    let mut group = c.benchmark_group("play_100_notes");
    for enabled in [true, false] {
        let mut config = Config::defaults();
        config.engine.density.enabled = enabled;
        let name = if enabled { "density_on" } else { "density_off" };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    engine(
                        &config.engine,
                        Instruments::built_in().expect("instruments"),
                        48_000.0,
                    )
                },
                |(mut control, audio)| {
                    for i in 0..100u64 {
                        let note = Note {
                            instrument: InstrumentId(0),
                            frequency: 440.0,
                            midi: 69,
                            velocity: 0.8,
                            pan: 0.0,
                            seed: i,
                            kind: EventKind::Addition,
                        };
                        black_box(control.play(&note, i * 480).expect("room"));
                    }
                    (control, audio)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    parsing,
    scoring,
    engine_block,
    reverb_block,
    limiter_block,
    offline_render,
    density
);
criterion_main!(benches);
