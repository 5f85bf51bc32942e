//! Real-time scheduling for the audio thread.
//!
//! Without it, the thread that runs the device callback competes with every other
//! thread on the machine, and on a busy machine a callback that starts late is a missed
//! buffer (an xrun) or a note that misses its block. The device asks for it once, from
//! the first callback, since the audio thread belongs to the audio library; a JACK
//! server gives its clients' threads their priority itself, so there the first callback
//! only reads what it was given. The answer crosses to the control side as an atomic,
//! and is reported there.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What became of the audio thread's real-time priority: asked for ([`GRANTED`], or the
/// error number the system gave, positive), or, under JACK, read from what the server
/// gave it ([`GIVEN`], [`SERVER_DID_NOT`]); [`NOT_ASKED`] until the first callback. With
/// the policy and priority in force, all in one atomic, so that they are always read
/// together.
#[derive(Debug, Default)]
pub struct RealtimeStatus(AtomicU64);

pub const NOT_ASKED: i32 = 0;
/// The thread asked for real-time priority and got it.
pub const GRANTED: i32 = -1;
/// The audio server (JACK) gave the thread real-time priority itself.
pub const GIVEN: i32 = -2;
/// The audio server (JACK) runs its clients' threads without real-time priority.
pub const SERVER_DID_NOT: i32 = -3;

/// One reading of a [`RealtimeStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    status: i32,
    policy: i32,
    priority: i32,
}

impl Reading {
    fn is_realtime(&self) -> bool {
        matches!(self.status, GRANTED | GIVEN)
    }
}

impl RealtimeStatus {
    fn read(&self) -> Reading {
        let v = self.0.load(Relaxed);
        Reading {
            status: (v >> 32) as u32 as i32,
            policy: ((v >> 8) & 0xff) as i32,
            priority: (v & 0xff) as i32,
        }
    }

    fn set(&self, status: i32, policy: i32, priority: i32) {
        let v = (u64::from(status as u32) << 32)
            | (((policy & 0xff) as u64) << 8)
            | (priority.clamp(0, 99) as u64);
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i32 {
        self.read().status
    }

    /// Whether the thread runs with real-time priority, asked for or given.
    pub fn is_realtime(&self) -> bool {
        self.read().is_realtime()
    }

    /// The thread's real-time priority (1..=99) once it has one, 0 before.
    pub fn priority(&self) -> i32 {
        let r = self.read();
        if r.is_realtime() {
            r.priority
        } else {
            0
        }
    }

    /// The priority for the threads that carry an event from its socket to the engine's
    /// queue, if this thread runs with real-time priority: under it, so that they never
    /// hold up a callback, and over every ordinary process, so that a busy machine does
    /// not make a note miss its block. `None` when there is no such priority: no
    /// real-time priority, or the lowest one (1), which nothing can be under.
    pub fn event_path_priority(&self) -> Option<i32> {
        let audio = self.priority();
        (audio > 1).then(|| (audio - 10).max(1))
    }
}

/// Move the calling thread to `SCHED_FIFO` at `priority` (1..=99). One system call, no
/// allocation, lock or blocking: safe to make from the audio callback.
pub fn promote_current_thread(priority: i32, status: &RealtimeStatus) {
    let priority = priority.clamp(1, 99);
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is always a valid handle of the calling thread, and
    // `param` lives across the call.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        status.set(GRANTED, libc::SCHED_FIFO, priority);
    } else {
        status.set(rc, 0, 0);
    }
}

/// Record the real-time priority the calling thread already has (a JACK client's
/// thread, which the server has set up): [`GIVEN`] and its priority under `SCHED_FIFO`
/// or `SCHED_RR`, [`SERVER_DID_NOT`] otherwise. Two system calls that only
/// read (not glibc's `pthread_getschedparam`, which takes the thread's lock): safe to
/// make once from the audio callback.
fn observe_current_thread(status: &RealtimeStatus) {
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param to fill.
    let (policy, rc) = unsafe {
        (
            libc::sched_getscheduler(0),
            libc::sched_getparam(0, &mut param),
        )
    };
    // Threads set up by PipeWire's JACK (through RTKit) carry SCHED_RESET_ON_FORK in
    // their policy.
    let policy = policy & !libc::SCHED_RESET_ON_FORK;
    if rc == 0 && (policy == libc::SCHED_FIFO || policy == libc::SCHED_RR) {
        status.set(GIVEN, policy, param.sched_priority);
    } else {
        status.set(SERVER_DID_NOT, 0, 0);
    }
}

/// What the audio thread's first callback does about its real-time priority: ask for
/// it, read what the audio server gave it (JACK sets its clients' priority itself, and
/// the event path is raised to match what it gave), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstCallback {
    Ask(i32),
    Observe,
    Done,
}

impl FirstCallback {
    /// Under JACK, observe; elsewhere ask for `priority`, or nothing if it is 0.
    pub fn new(jack: bool, priority: i32) -> Self {
        match (jack, priority) {
            (true, _) => FirstCallback::Observe,
            (false, 0) => FirstCallback::Done,
            (false, p) => FirstCallback::Ask(p),
        }
    }

    /// Carry it out into `status`, once: after that, nothing. Safe in the audio
    /// callback (see [`promote_current_thread`], [`observe_current_thread`]).
    #[inline]
    pub fn settle(&mut self, status: &RealtimeStatus) {
        match *self {
            FirstCallback::Done => return,
            FirstCallback::Ask(priority) => promote_current_thread(priority, status),
            FirstCallback::Observe => observe_current_thread(status),
        }
        *self = FirstCallback::Done;
    }
}

/// Move the calling thread (the conductor's) and the worker of `runtime` (which runs the
/// sources and stamps their arrivals; the runtimes that carry events have one) to
/// `SCHED_FIFO` at `priority`. Meant for when the audio thread has real-time priority
/// (asked for, or given by JACK), at [`RealtimeStatus::event_path_priority`]: these
/// threads spend nearly all their time waiting, and when an event comes they have a few
/// hundred microseconds to hand it on. Returns whether the calling
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

/// A sentence for the log saying what became of the audio thread's real-time priority.
pub fn describe(status: &RealtimeStatus) -> Option<String> {
    let r = status.read();
    let policy = match r.policy {
        libc::SCHED_RR => "SCHED_RR",
        _ => "SCHED_FIFO",
    };
    let runs = |whose: &str| {
        format!(
            "the audio thread runs with real-time priority ({policy} {}{whose})",
            r.priority
        )
    };
    match r.status {
        NOT_ASKED => None,
        GRANTED => Some(runs("")),
        GIVEN => Some(runs(", given by the JACK server")),
        SERVER_DID_NOT => Some(
            "the JACK server runs its clients without real-time priority: on a busy machine callbacks may start late. \
             Start it with -R (--realtime) by a user allowed real-time scheduling (an rtprio limit or CAP_SYS_NICE)"
                .to_owned(),
        ),
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
        let status = RealtimeStatus::default();
        assert_eq!(describe(&status), None);
        assert!(!status.is_realtime());
        assert_eq!(status.event_path_priority(), None);
        status.set(GRANTED, libc::SCHED_FIFO, 70);
        let granted = describe(&status).expect("a line");
        assert!(granted.contains("(SCHED_FIFO 70)"), "{granted}");
        assert!(status.is_realtime());
        assert_eq!(status.event_path_priority(), Some(60));
        status.set(GIVEN, libc::SCHED_RR, 9);
        let given = describe(&status).expect("a line");
        assert!(
            given.contains("(SCHED_RR 9, given by the JACK server)"),
            "{given}"
        );
        assert!(status.is_realtime());
        assert_eq!(status.event_path_priority(), Some(1));
        // Nothing is under the lowest real-time priority: the event path stays put.
        status.set(GIVEN, libc::SCHED_FIFO, 1);
        assert_eq!(status.event_path_priority(), None);
        status.set(SERVER_DID_NOT, 0, 0);
        let not = describe(&status).expect("a line");
        assert!(not.contains("-R (--realtime)"), "{not}");
        assert!(!status.is_realtime());
        assert_eq!(status.event_path_priority(), None);
        status.set(libc::EPERM, 0, 0);
        let refused = describe(&status).expect("a line");
        assert!(
            refused.contains("rtprio") && refused.contains("realtime_priority = 0"),
            "{refused}"
        );
        assert!(!status.is_realtime());
        assert_eq!(status.event_path_priority(), None);
    }

    #[test]
    fn the_first_callback_asks_or_reads_as_the_host_wants_and_only_once() {
        assert_eq!(FirstCallback::new(true, 70), FirstCallback::Observe);
        assert_eq!(FirstCallback::new(false, 70), FirstCallback::Ask(70));
        assert_eq!(FirstCallback::new(false, 0), FirstCallback::Done);
        // A test thread runs under SCHED_OTHER: read as such, then left alone.
        let status = RealtimeStatus::default();
        let mut first = FirstCallback::Observe;
        first.settle(&status);
        assert_eq!((first, status.get()), (FirstCallback::Done, SERVER_DID_NOT));
        status.set(NOT_ASKED, 0, 0);
        first.settle(&status);
        assert_eq!(status.get(), NOT_ASKED, "settled a second time");
    }

    #[test]
    fn a_thread_is_observed_with_the_policy_it_runs_under() {
        let status = RealtimeStatus::default();
        observe_current_thread(&status);
        assert_eq!(
            status.get(),
            SERVER_DID_NOT,
            "a test thread, under SCHED_OTHER"
        );
        // As PipeWire's JACK sets up its clients' threads: round-robin, and not passed on
        // to children.
        let param = libc::sched_param { sched_priority: 3 };
        // SAFETY: pid 0 names the calling thread; `param` lives across the call.
        let rc = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param)
        };
        assert_eq!(
            rc,
            0,
            "cannot give the test thread real-time priority ({}): run the tests as root, \
             or with an rtprio limit",
            std::io::Error::last_os_error()
        );
        observe_current_thread(&status);
        assert_eq!(
            status.read(),
            Reading {
                status: GIVEN,
                policy: libc::SCHED_RR,
                priority: 3
            }
        );
    }
}
