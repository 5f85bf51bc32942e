//! Counting allocations made inside the audio callback, in the running program.
//!
//! The binary's global allocator is [`CountingAllocator`]: the system's, plus one
//! thread-local check per allocation. While a [`Watch`] is alive on a thread (the
//! device callback holds one around everything carillon does in it), every allocation,
//! reallocation and free made on that thread is counted in [`AUDIO_ALLOCATIONS`], and
//! the count ends up in `play`'s summary (`audio_allocs`): the tests that play through
//! the real device assert it is zero, so the proof covers the real callback on the real
//! audio thread, not a copy of it driven by hand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Allocations and frees made on a watched thread, since the start.
pub static AUDIO_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// While alive, allocations on this thread are counted. Not reentrant: a nested watch
/// ends the outer one's watching when it is dropped.
pub struct Watch(());

impl Watch {
    #[inline]
    pub fn new() -> Watch {
        let _ = WATCHED.try_with(|w| w.set(true));
        Watch(())
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

impl Drop for Watch {
    #[inline]
    fn drop(&mut self) {
        let _ = WATCHED.try_with(|w| w.set(false));
    }
}

#[inline]
fn count() {
    // `try_with`: the allocator is also called while thread-locals are torn down.
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        AUDIO_ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

/// The system allocator, counting what watched threads do.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a thread-local flag (const-initialized, so reading it never allocates) and an
// atomic.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's own guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's own guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        // SAFETY: forwarded with the caller's own guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's own guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
