//! Running the real `carillon` binary (or any command) with its output
//! captured and a deadline after which it is killed.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary cargo built for this test run.
pub const CARILLON: &str = env!("CARGO_BIN_EXE_carillon");

/// What a finished (or killed) run left behind.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// The process overran its deadline and was killed.
    pub timed_out: bool,
}

impl RunOutput {
    /// Panics, showing the output, unless the process exited 0 on its own.
    pub fn assert_success(&self) {
        assert!(
            !self.timed_out && self.status.success(),
            "process {} ({}) after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            if self.timed_out {
                "overran its deadline and was killed"
            } else {
                "failed"
            },
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr
        );
    }

    /// Panics, showing stderr, unless the process failed on its own (no timeout) and
    /// said `needle` on stderr.
    pub fn assert_refused_saying(&self, needle: &str) {
        assert!(
            !self.timed_out && !self.status.success(),
            "expected a refusal, but the process {} ({}):\n{}",
            if self.timed_out {
                "overran its deadline"
            } else {
                "succeeded"
            },
            self.status,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "the refusal does not say {needle:?}:\n{}",
            self.stderr
        );
    }

    /// The `summary:` line of stderr; panics, showing stderr, if there is none.
    pub fn summary(&self) -> Summary {
        Summary::parse(&self.stderr).unwrap_or_else(|| {
            panic!(
                "no `summary:` line on stderr ({}):\n{}",
                self.status, self.stderr
            )
        })
    }
}

/// The counters of carillon's last `summary: key=value ...` stderr line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub fields: BTreeMap<String, String>,
}

impl Summary {
    /// Parses the last line that starts with `summary:` (log formatting around
    /// it, such as a timestamp prefix, is not expected: the line is the
    /// program's own `eprintln!`).
    pub fn parse(stderr: &str) -> Option<Summary> {
        let line = stderr
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("summary:"))?;
        let fields = line
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Summary { fields })
    }

    /// Panics unless every event is accounted for: each is a note, filtered out,
    /// throttled, silenced (no device), or dropped at a full queue.
    pub fn assert_every_event_accounted_for(&self) {
        let accounted: u64 = [
            "notes",
            "filtered",
            "throttled",
            "silenced",
            "engine_full",
            "backlog",
        ]
        .iter()
        .map(|k| self.get(k))
        .sum();
        assert_eq!(
            accounted,
            self.get("events"),
            "the counters do not add up to the events: {:?}",
            self.fields
        );
    }

    /// Panics naming the first of `keys` that is not zero.
    pub fn assert_zero(&self, keys: &[&str]) {
        for key in keys {
            assert_eq!(self.get(key), 0, "{key}: {:?}", self.fields);
        }
    }

    /// The counter `key`; panics naming the key and the whole summary if it is
    /// missing or not a number.
    pub fn get(&self, key: &str) -> u64 {
        let value = self
            .fields
            .get(key)
            .unwrap_or_else(|| panic!("summary has no `{key}`: {:?}", self.fields));
        value
            .parse()
            .unwrap_or_else(|e| panic!("summary `{key}={value}` is not a count: {e}"))
    }
}

/// A spawned process whose output is being collected.
pub struct Running {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// The process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for exit, killing the process (SIGKILL) if it is still running
    /// after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> RunOutput {
        let deadline = self.started + timeout;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self
                        .child
                        .wait()
                        .unwrap_or_else(|e| panic!("cannot reap the killed process: {e}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("cannot poll the child process: {e}"),
            }
        };
        let elapsed = self.started.elapsed();
        RunOutput {
            status,
            stdout: collect(self.stdout.take()),
            stderr: collect(self.stderr.take()),
            elapsed,
            timed_out,
        }
    }
}

impl Drop for Running {
    /// A test that panics before `wait` must not leave the process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `command` with stdin closed and stdout/stderr captured (drained on
/// their own threads, so a chatty process never blocks on a full pipe).
pub fn spawn_command(mut command: Command) -> Running {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {command:?}: {e}"));
    let stdout = Some(drain(child.stdout.take()));
    let stderr = Some(drain(child.stderr.take()));
    Running {
        child,
        started,
        stdout,
        stderr,
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn collect(reader: Option<JoinHandle<String>>) -> String {
    reader
        .and_then(|r| r.join().ok())
        .unwrap_or_else(|| "(output lost: its reader thread panicked)".into())
}

/// Runs `command` to completion, or kills it after `timeout`.
pub fn run_command(command: Command, timeout: Duration) -> RunOutput {
    spawn_command(command).wait(timeout)
}

fn carillon_command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = Command::new(CARILLON);
    command
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Starts `carillon ARGS` with `env` added to the test's environment.
pub fn spawn_carillon(args: &[&str], env: &[(String, String)]) -> Running {
    spawn_command(carillon_command(args, env))
}

/// Runs `carillon ARGS` with `env` added to the test's environment; kills it
/// if it is still running after `timeout`.
pub fn run_carillon(args: &[&str], env: &[(String, String)], timeout: Duration) -> RunOutput {
    spawn_carillon(args, env).wait(timeout)
}

/// Starts `carillon play ARGS --display 127.0.0.1:PORT --duration SECONDS
/// --buffer-frames 256` with `env`, and returns once the display listens (failing the
/// test if it does not within `wait`).
pub fn play_with_display(
    args: &[&str],
    port: u16,
    seconds: &str,
    env: &[(String, String)],
    wait: Duration,
) -> Running {
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec!["play"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--display",
        &listen,
        "--duration",
        seconds,
        "--buffer-frames",
        "256",
    ]);
    let running = spawn_carillon(&all, env);
    super::net::wait_for_port(port, wait, "carillon's display");
    running
}
