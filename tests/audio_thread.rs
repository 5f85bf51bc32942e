//! The audio half must never allocate or free memory: a counting global allocator
//! watches every allocation made on this thread while the device callback's body
//! (`output::device::fill`: the panic guard around `AudioHalf::render`) runs.
//!
//! What it covers: everything the callback does with carillon's own code, driven here
//! by hand on the test's thread with the device buffer sizes a device may ask for, with
//! every kind of voice (the three synthesized instruments, and a sampler reading its
//! recordings, looped, in layers and takes). What
//! it does not: cpal's code around the callback, and the callback's one-time request
//! for real-time priority (a single system call, `output::realtime`).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use carillon::config::Config;
use carillon::engine::engine;
use carillon::event::EventKind;
use carillon::instrument::Instruments;
use carillon::output::device::fill;
use carillon::score::{InstrumentId, Note};
use support::samples::{copy_built_in_recipes, sampler_recipe, write_tone, Tone};
use support::TempDir;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    // Per thread, so that tests running side by side don't count each other's.
    static SEEN: Cell<usize> = const { Cell::new(0) };
}

/// Count an allocation or free if this thread is being watched.
fn note_allocation() {
    if WATCHING.try_with(|w| w.get()).unwrap_or(false) {
        let _ = SEEN.try_with(|s| s.set(s.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_allocation();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations and frees made on this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = SEEN.with(|s| s.get());
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    SEEN.with(|s| s.get()) - before
}

/// The built-in instruments and a sampler, `bells` (id 0, before the others by file
/// name): two roots, the lower in two velocity layers of which the loud one has two
/// takes, looped.
fn instruments(dir: &TempDir) -> Instruments {
    copy_built_in_recipes(dir.path());
    let samples = sampler_recipe(
        dir.path(),
        "bells",
        "max_transpose = 24\nloop_start_s = 0.2\nloop_end_s = 0.5\nduration_s = 0.8\n",
    );
    for (file, hz) in [
        ("A2.v1.wav", 110.0),
        ("A2.v2.rr1.flac", 110.0),
        ("A2.v2.rr2.wav", 110.0),
        ("A4.wav", 440.0),
    ] {
        let mut tone = Tone::new(hz, 3.0);
        tone.seconds = 0.6;
        tone.sample_rate = 44_100;
        write_tone(&samples.join(file), &tone);
    }
    let instruments = Instruments::load_dir(dir.path()).expect("the instruments");
    instruments.prepare(48_000).expect("converted to 48 kHz");
    assert_eq!(instruments.names()[0], "bells");
    instruments
}

fn note(i: u64) -> Note {
    let instrument = (i % 4) as u8;
    Note {
        instrument: InstrumentId(instrument),
        frequency: 110.0 * (1.0 + (i % 17) as f32 / 4.0),
        midi: 45,
        velocity: [0.3, 0.9][(i / 4 % 2) as usize],
        pan: ((i % 5) as f32 - 2.0) / 2.0,
        seed: i,
        kind: [
            EventKind::Addition,
            EventKind::Addition,
            EventKind::Removal,
            EventKind::NewMember,
        ][instrument as usize],
    }
}

#[test]
fn the_allocation_detector_sees_an_allocation() {
    let n = allocations_during(|| {
        let v = std::hint::black_box(vec![1u8; 16]);
        drop(v);
    });
    assert!(
        n >= 2,
        "the counting allocator missed an allocation and a free"
    );
}

#[test]
fn audio_callback_does_not_allocate() {
    let mut config = Config::defaults();
    // A small polyphony, so that voices are stolen and retired during the test.
    config.engine.polyphony = 8;
    let dir = TempDir::new("audio-thread");
    let (mut control, mut audio) = engine(&config.engine, instruments(&dir), 48_000.0);
    // Device buffers of many sizes, including ones that split fundsp's blocks.
    let sizes = [256usize, 64, 1, 100, 512, 37, 128];
    let mut buffer = vec![0.0f32; 512 * 2];
    let mut i = 0;
    let mut total = 0;
    let failed = AtomicBool::new(false);
    for round in 0..300 {
        // Notes in the past (late), inside the coming buffer, and ahead of it.
        for k in 0..3u64 {
            let clock = audio.clock();
            let start = match k {
                0 => clock.saturating_sub(100),
                1 => clock + 30,
                _ => clock + 3_000,
            };
            if control.play(&note(i), start).is_ok() {
                i += 1;
            }
        }
        control.set_volume(if round % 50 < 25 { 0.8 } else { 0.3 });
        let frames = sizes[round % sizes.len()];
        let out = &mut buffer[..frames * 2];
        total += allocations_during(|| fill(&mut audio, out, 2, &failed));
        control.collect();
    }
    let shared = control.shared();
    assert!(
        shared.stolen.load(Ordering::Relaxed) > 0,
        "the test should exercise voice stealing"
    );
    assert!(shared.late.load(Ordering::Relaxed) > 0, "and late notes");
    assert!(
        !failed.load(Ordering::Relaxed),
        "the engine must not have failed"
    );
    assert_eq!(
        total, 0,
        "the device callback allocated or freed memory {total} times; the audio thread must not"
    );
}
