//! Real-time scheduling for the audio thread.
//!
//! Without it, the thread that runs the device callback competes with every other
//! thread on the machine, and on a busy machine a callback that starts late is a missed
//! buffer (an xrun) or a note that misses its block. The device asks for it once, from
//! the first callback, since the audio thread belongs to the audio library; the answer
//! crosses to the control side as an atomic, and is reported there.

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

/// What became of the request: [`NOT_ASKED`], [`GRANTED`], or the error number the
/// system gave (positive).
#[derive(Debug, Default)]
pub struct RealtimeStatus(AtomicI32);

pub const NOT_ASKED: i32 = 0;
pub const GRANTED: i32 = -1;

impl RealtimeStatus {
    pub fn get(&self) -> i32 {
        self.0.load(Relaxed)
    }

    fn set(&self, value: i32) {
        self.0.store(value, Relaxed)
    }
}

/// Move the calling thread to `SCHED_FIFO` at `priority` (1..=99). One system call, no
/// allocation, lock or blocking: safe to make from the audio callback.
pub fn promote_current_thread(priority: i32, status: &RealtimeStatus) {
    let param = libc::sched_param {
        sched_priority: priority.clamp(1, 99),
    };
    // SAFETY: pthread_self() is always a valid handle of the calling thread, and
    // `param` lives across the call.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    status.set(if rc == 0 { GRANTED } else { rc });
}

/// The priority of the threads that carry an event from its socket to the engine's
/// queue: under the audio thread's, so that they never hold up a callback, and over every
/// ordinary process, so that a busy machine does not make a note miss its block.
pub fn event_path_priority(audio_priority: i32) -> i32 {
    (audio_priority - 10).max(1)
}

/// Move the calling thread (the conductor's) and the worker of `runtime` (which runs the
/// sources and stamps their arrivals; the runtimes that carry events have one) to
/// `SCHED_FIFO` at `priority`. Meant for when the audio thread got its own real-time
/// priority: these threads spend nearly all their time waiting, and when an event comes
/// they have a few hundred microseconds to hand it on. Returns whether the calling
/// thread was promoted; the worker's answer lands in `worker` when it has run.
pub fn promote_event_path(
    runtime: &tokio::runtime::Handle,
    priority: i32,
    worker: std::sync::Arc<RealtimeStatus>,
) -> bool {
    runtime.spawn(async move { promote_current_thread(priority, &worker) });
    let here = RealtimeStatus::default();
    promote_current_thread(priority, &here);
    here.get() == GRANTED
}

/// A sentence for the log saying what became of the request.
pub fn describe(status: i32, priority: i32) -> Option<String> {
    match status {
        NOT_ASKED => None,
        GRANTED => Some(format!(
            "the audio thread runs with real-time priority (SCHED_FIFO {priority})"
        )),
        errno => Some(format!(
            "no real-time priority for the audio thread ({}): on a busy machine callbacks may start late. \
             Allow it with an rtprio limit (e.g. `@audio - rtprio 95` in /etc/security/limits.d/) or CAP_SYS_NICE, \
             or set [output] realtime_priority = 0 to stop asking",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_happened_and_what_to_do() {
        assert_eq!(describe(NOT_ASKED, 70), None);
        let granted = describe(GRANTED, 70).expect("a line");
        assert!(granted.contains("SCHED_FIFO 70"), "{granted}");
        let refused = describe(libc::EPERM, 70).expect("a line");
        assert!(
            refused.contains("rtprio") && refused.contains("realtime_priority = 0"),
            "{refused}"
        );
    }
}
