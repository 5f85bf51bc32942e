//! A private JACK server with the `dummy` driver: no hardware, but a real-time
//! clock that pulls one period of audio from its clients every
//! `period_frames / 48000` seconds, as a sound card would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::run_command;
use super::tempdir::{unique_name, TempDir};
use super::tools::require_tool;
use super::wav::{read_wav_lenient, Wav};

/// The rate of every server the harness starts (and of the ALSA tap).
pub const SAMPLE_RATE: u32 = 48_000;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `jackd --no-realtime -d dummy` (or `-R`, see [`JackServer::start_realtime`])
/// under a unique server name, stopped (by its pid) when dropped.
///
/// Clients find it through `JACK_DEFAULT_SERVER`; see [`JackServer::name`].
pub struct JackServer {
    name: String,
    period_frames: u32,
    realtime: bool,
    child: Child,
    startup_time: Duration,
    dir: TempDir,
}

impl JackServer {
    /// Starts the server and returns once it accepts clients.
    ///
    /// ALSA's `jack` plugin refuses device buffers smaller than the server's
    /// period: to test `--buffer-frames N`, start the server with at most N.
    ///
    /// Panics if `jackd` or `jack_wait` is missing (naming the package), if the
    /// server exits, or if it is not ready within 10 seconds.
    pub fn start(period_frames: u32) -> JackServer {
        Self::spawn(period_frames, false)
    }

    /// As [`JackServer::start`], with `jackd -R`: the server runs its clients' threads
    /// with real-time priority, as a studio's does. Panics (with the server's log) if
    /// the server could not get it: the tests must run as root, or with an rtprio limit.
    pub fn start_realtime(period_frames: u32) -> JackServer {
        let server = Self::spawn(period_frames, true);
        let log = server.log();
        assert!(
            log.contains("starting in realtime mode") && !log.contains("Cannot use real-time"),
            "jackd -R did not get real-time scheduling (run the tests as root, or allow \
             rtprio): its log:\n{log}"
        );
        server
    }

    fn spawn(period_frames: u32, realtime: bool) -> JackServer {
        require_tool("jackd", "jackd2");
        require_tool("jack_wait", "jackd2");
        let name = unique_name("carillon");
        let dir = TempDir::new("jackd");
        let started = Instant::now();
        let child = spawn_jackd(&name, period_frames, realtime, &dir);
        let mut server = JackServer {
            name,
            period_frames,
            realtime,
            child,
            startup_time: Duration::ZERO,
            dir,
        };
        server.wait_until_ready();
        server.startup_time = started.elapsed();
        server
    }

    /// Stops the server (SIGTERM, as an administrator would), as a sound card is
    /// unplugged; its clients lose their device. Returns once it has exited.
    pub fn stop(&mut self) {
        self.terminate();
        assert!(
            !self.is_running(),
            "jackd {} did not stop; its log:\n{}",
            self.name,
            self.log()
        );
    }

    /// Starts the server again under the same name, as a sound card plugged back in,
    /// and returns once it accepts clients: the instant the device is back.
    pub fn restart(&mut self) -> Instant {
        assert!(!self.is_running(), "restart a stopped server only");
        self.child = spawn_jackd(&self.name, self.period_frames, self.realtime, &self.dir);
        self.wait_until_ready();
        Instant::now()
    }

    /// Polls `jack_wait -c` every 20 ms.
    ///
    /// `jack_wait -w -t 10` would do the same in one call, but it retries only
    /// once a second, and the server is usually up after about 250 ms: polling
    /// saves most of a second per test.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "jackd exited during startup ({status}); its log:\n{}",
                    self.log()
                );
            }
            let check = Command::new("jack_wait")
                .arg("-c")
                .env("JACK_DEFAULT_SERVER", &self.name)
                .env("JACK_NO_START_SERVER", "1")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run jack_wait: {e}"));
            // `jack_wait -c` exits 0 either way and prints "running" or "not running".
            if String::from_utf8_lossy(&check.stdout)
                .lines()
                .any(|l| l.trim() == "running")
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "JACK server {} not ready after {STARTUP_TIMEOUT:?}; jackd log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server name; clients select it with `JACK_DEFAULT_SERVER`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The environment a JACK client needs to reach this server (and only it).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("JACK_DEFAULT_SERVER".to_owned(), self.name.clone()),
            ("JACK_NO_START_SERVER".to_owned(), "1".to_owned()),
        ]
    }

    /// Every port of the server now, one full name a line (`jack_lsp`).
    pub fn listing(&self) -> String {
        require_tool("jack_lsp", "jackd2");
        let out = Command::new("jack_lsp")
            .envs(self.env())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run jack_lsp: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ports whose full names start with `prefix`, now.
    pub fn ports(&self, prefix: &str) -> Vec<String> {
        ports_in(&self.listing(), prefix)
    }

    /// The ports whose full names start with `prefix`, waiting up to `timeout` for at
    /// least one to appear; panics naming what it found if none does.
    pub fn wait_for_ports(&self, prefix: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let listing = self.listing();
            let ports = ports_in(&listing, prefix);
            if !ports.is_empty() {
                return ports;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no JACK port named {prefix}… after {timeout:?}; the server has:\n{listing}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records `ports` for `seconds` with `jack_rec` (16-bit WAV) and returns what it
    /// recorded; panics with what `jack_rec` said if it wrote nothing readable.
    pub fn record(&self, ports: &[String], seconds: u32) -> Wav {
        let dir = TempDir::new("jack-rec");
        let wav_path = dir.path().join("recorded.wav");
        let mut rec = Command::new(require_tool("jack_rec", "jackd2"));
        rec.arg("-f")
            .arg(&wav_path)
            .args(["-d", &seconds.to_string(), "-b", "16"])
            .args(ports)
            .envs(self.env());
        let recorded = run_command(rec, Duration::from_secs(u64::from(seconds) + 16));
        read_wav_lenient(&wav_path).unwrap_or_else(|e| {
            panic!(
                "jack_rec wrote no readable WAV ({e}); it said:\n{}{}",
                recorded.stdout, recorded.stderr
            )
        })
    }

    pub fn period_frames(&self) -> u32 {
        self.period_frames
    }

    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    /// From spawning `jackd` until it accepted a client.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Everything `jackd` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jackd.log"))
            .unwrap_or_else(|e| format!("(jackd log unreadable: {e})"))
    }

    /// How many times a client missed its deadline, as counted by the server's
    /// log (`JackEngine::XRun` lines).
    pub fn xruns(&self) -> usize {
        self.log().matches("JackEngine::XRun").count()
    }

    /// Whether the server process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Starts `jackd` with the dummy driver under `name`, its output appended to the log
/// in `dir`.
fn spawn_jackd(name: &str, period_frames: u32, realtime: bool, dir: &TempDir) -> Child {
    let log_path = dir.path().join("jackd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    let log_err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot duplicate the handle of {}: {e}", log_path.display()));
    Command::new("jackd")
        .args(["-n", name, if realtime { "-R" } else { "--no-realtime" }])
        .args(["-d", "dummy"])
        .args(["-r", &SAMPLE_RATE.to_string()])
        .args(["-p", &period_frames.to_string()])
        .env("JACK_DEFAULT_SERVER", name)
        .env("JACK_NO_START_SERVER", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start jackd: {e}"))
}

impl Drop for JackServer {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl JackServer {
    fn terminate(&mut self) {
        if !self.is_running() {
            return;
        }
        // SIGTERM lets jackd remove its sockets and shared memory; std only
        // offers SIGKILL, so ask the shell's `kill` builtin, by pid.
        let pid = self.child.id().to_string();
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a `jack_lsp` listing that start with `prefix`.
fn ports_in(listing: &str, prefix: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
