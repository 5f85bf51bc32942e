//! What the kernel says about a running process: its CPU time, its memory and how its
//! threads are scheduled.

use std::time::Duration;

/// User plus system CPU time the process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    // Fields after the command name (which may hold spaces), in parentheses: utime
    // and stime are fields 14 and 15 of the whole line, the 12th and 13th after it.
    let (_, rest) = stat
        .rsplit_once(") ")
        .unwrap_or_else(|| panic!("{path} has no command name: {stat}"));
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{path}: field {} is not a count: {stat}", i + 3))
    };
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `RssAnon`, …), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{path} has no {key} line:\n{status}"))
}

/// How many times the threads of process `pid` alive now have been switched out so far,
/// voluntarily or not: each is a wake-up that followed. Threads that have ended are not
/// counted, so compare two readings of the same threads.
pub fn context_switches(pid: u32) -> u64 {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir}: {e}"));
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread that ends between the listing and the read is simply not counted.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter_map(|l| {
                let value = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))?;
                value.trim().parse::<u64>().ok()
            })
            .sum::<u64>();
    }
    total
}

/// Each thread of process `pid`: its id, its name and its scheduling policy (0 other,
/// 1 FIFO, 2 RR).
pub fn thread_policies(pid: u32) -> Vec<(u32, String, u32)> {
    let tasks = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("cannot list {tasks}: {e}"));
    entries
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the command name (which may hold spaces), in parentheses;
            // the policy is field 41 of the whole line, the 39th after the name.
            let (head, rest) = stat.rsplit_once(") ")?;
            let (tid, name) = head.split_once(" (")?;
            let policy = rest.split_whitespace().nth(38)?.parse().ok()?;
            Some((tid.trim().parse().ok()?, name.to_owned(), policy))
        })
        .collect()
}

/// The threads of process `pid` that run with real-time priority (`SCHED_FIFO` or
/// `SCHED_RR`): their ids and names.
pub fn realtime_threads(pid: u32) -> Vec<(u32, String)> {
    thread_policies(pid)
        .into_iter()
        .filter(|&(_, _, policy)| policy == 1 || policy == 2)
        .map(|(tid, name, _)| (tid, name))
        .collect()
}
