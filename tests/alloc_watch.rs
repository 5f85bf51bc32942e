//! The allocation counter the binary runs with (`carillon::alloc_watch`) sees what the
//! device callback's body allocates: the device tests' `audio_allocs=0` means something.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use carillon::alloc_watch::{CountingAllocator, Watch, AUDIO_ALLOCATIONS};
use carillon::config::Config;
use carillon::engine::engine;
use carillon::instrument::{Instruments, Voice};
use carillon::output::device::fill;
use fundsp::prelude::{An, AudioNode, Frame, U0, U1};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A voice that allocates (and frees) a little memory at every sample.
#[derive(Clone)]
struct Greedy;

impl AudioNode for Greedy {
    const ID: u64 = 0x6772_6565_6479;
    type Inputs = U0;
    type Outputs = U1;

    fn tick(&mut self, _: &Frame<f32, U0>) -> Frame<f32, U1> {
        let v = std::hint::black_box(vec![0.25f32; 4]);
        [v[0]].into()
    }
}

/// One test only: the counter is global to the process, and tests run side by side.
#[test]
fn the_counter_sees_allocations_in_the_callback_body_and_nowhere_else() {
    let before = AUDIO_ALLOCATIONS.load(Relaxed);
    drop(std::hint::black_box(vec![1u8; 64]));
    assert_eq!(
        AUDIO_ALLOCATIONS.load(Relaxed),
        before,
        "an unwatched thread is not counted"
    );

    let (mut control, mut audio) = engine(
        &Config::defaults().engine,
        Instruments::built_in().expect("instruments"),
        48_000.0,
    );
    let failed = AtomicBool::new(false);
    let mut data = vec![0.0f32; 256 * 2];
    {
        let _watch = Watch::new();
        fill(&mut audio, &mut data, 2, &failed);
    }
    assert_eq!(
        AUDIO_ALLOCATIONS.load(Relaxed),
        before,
        "an idle engine's callback allocates nothing"
    );

    let greedy = Voice {
        unit: Box::new(An(Greedy)),
        frames: 48_000,
        gain: 0.5,
        pan: 0.0,
        audible: 3e-5,
    };
    control.schedule(greedy, 512).expect("room");
    {
        let _watch = Watch::new();
        for _ in 0..4 {
            fill(&mut audio, &mut data, 2, &failed);
        }
    }
    let seen = AUDIO_ALLOCATIONS.load(Relaxed) - before;
    assert!(
        seen >= 2 * 256,
        "a voice allocating at every sample went unseen ({seen} counted)"
    );
}
