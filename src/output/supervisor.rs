//! The device supervisor: owns the output stream's lifecycle, so that carillon plays
//! for months whatever happens to its sound card.
//!
//! A stream ends in one of three ways that it can notice: the device reports an error
//! that ends it (unplugged, its server stopped), the engine panics inside the callback
//! (caught there), or the device simply stops asking for audio — the ALSA route into a
//! JACK server that has died does just that, without an error. The supervisor checks
//! for all three each time the conductor polls it, says what happened in one log line,
//! closes the dead stream on a thread of its own and reopens the output with backoff
//! (the same device by name, else the default), each time with a fresh audio half. The
//! conductor keeps its sources, score and counters running meanwhile. With `wait` set,
//! a device missing at start is the same as a device lost: carillon waits for it.
//!
//! It also lets the device go when nothing has sounded for a while (`suspend`), so that
//! a silent carillon is not woken every buffer by its sound server, and opens it again
//! for the next note (`resume`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::engine::{AudioHalf, ControlHalf};
use crate::logs::Repeated;
use crate::output::device::{DeviceError, DeviceOutput, DeviceRequest};

/// The first retry after a loss, and the longest wait between retries: short, so that
/// the sound is back within moments of the device.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_millis(1000);
/// A stream that has not asked for audio for this long (or four of its buffers, if
/// longer) has stopped.
const STALL_MIN: Duration = Duration::from_millis(1500);
/// The longest a resumed stream is waited for to start asking for audio.
const RESUME_WAIT: Duration = Duration::from_millis(500);
/// While the device stays away, a reminder this often.
const REMINDER: Duration = Duration::from_secs(60);

/// Where the output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Playing,
    /// Lost while playing; being reopened.
    Lost,
    /// Not yet found at start (`--wait-for-device`).
    Waiting,
    /// Let go during a silence, until the next note.
    Suspended,
}

impl DeviceState {
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Playing => "playing",
            DeviceState::Lost => "lost",
            DeviceState::Waiting => "waiting",
            DeviceState::Suspended => "suspended",
        }
    }
}

/// What the supervisor has seen, over every stream it opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCounters {
    pub xruns: u64,
    /// Device errors other than xruns.
    pub errors: u64,
    /// Streams that ended (device lost, stopped, or engine failed).
    pub losses: u64,
    /// Streams reopened after a loss (or after waiting at start).
    pub reopens: u64,
    /// Engine panics caught in the callback.
    pub engine_failures: u64,
    /// Allocations made inside the audio callback (there must be none).
    pub audio_allocs: u64,
    /// Times the device was let go during a silence, and opened again for a note.
    pub suspends: u64,
    pub resumes: u64,
}

pub struct Supervisor {
    request: DeviceRequest,
    stream: Option<DeviceOutput>,
    state: DeviceState,
    /// When the output went away (or the wait began), and why, for the log.
    down_since: Instant,
    last_error: String,
    next_try: Instant,
    next_reminder: Instant,
    backoff: Backoff,
    /// The stream's callback count at the last poll, and when it last moved.
    callbacks: u64,
    progress_at: Instant,
    /// Counters of streams already closed, and of losses and reopenings.
    past: DeviceCounters,
    /// A device that comes and goes gets at most one loss line a minute, and its
    /// return is told only when its loss was.
    loss_lines: Repeated,
    announced: bool,
}

impl Supervisor {
    /// Open the output for `audio`. If that fails and `wait` is set, start waiting for
    /// a device instead of failing.
    pub fn start(
        request: DeviceRequest,
        wait: bool,
        audio: AudioHalf,
    ) -> Result<Supervisor, DeviceError> {
        let now = Instant::now();
        let mut supervisor = Supervisor {
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX, u64::from(std::process::id())),
            request,
            stream: None,
            state: DeviceState::Waiting,
            down_since: now,
            last_error: String::new(),
            next_try: now,
            next_reminder: now + REMINDER,
            callbacks: 0,
            progress_at: now,
            past: DeviceCounters::default(),
            loss_lines: Repeated::new(Duration::from_secs(60)),
            announced: true,
        };
        match DeviceOutput::start(&supervisor.request, audio) {
            Ok(stream) => supervisor.playing(stream, now),
            Err(e) if wait => {
                tracing::warn!("no audio device yet ({e}); waiting for one (--wait-for-device)");
                supervisor.last_error = e.to_string();
                supervisor.next_try = now + supervisor.backoff.delay();
            }
            Err(e) => return Err(e),
        }
        Ok(supervisor)
    }

    fn playing(&mut self, stream: DeviceOutput, now: Instant) {
        self.callbacks = 0;
        self.progress_at = now;
        self.stream = Some(stream);
        self.state = DeviceState::Playing;
        self.backoff.reset();
    }

    pub fn state(&self) -> DeviceState {
        self.state
    }

    /// The stream playing now, if any.
    pub fn stream(&self) -> Option<&DeviceOutput> {
        self.stream.as_ref()
    }

    /// Counters over every stream so far, the current one included.
    pub fn counters(&self) -> DeviceCounters {
        let mut c = self.past;
        if let Some(s) = &self.stream {
            c.xruns += s.health.xruns.load(Relaxed);
            c.errors += s.health.errors.load(Relaxed);
            c.engine_failures += u64::from(s.health.failed.load(Relaxed));
        }
        c.audio_allocs = crate::alloc_watch::AUDIO_ALLOCATIONS.load(Relaxed);
        c
    }

    /// Check the stream, and reopen the output if it is due. Call it often (every few
    /// tens of milliseconds) from the thread that owns the engine's control half.
    pub fn poll(&mut self, control: &mut ControlHalf) {
        let now = Instant::now();
        if let Some(reason) = self.why_ended(now) {
            self.lose(reason, now);
        }
        if self.down() && now >= self.next_try {
            self.try_reopen(control, now);
        }
        if self.down() && now >= self.next_reminder {
            self.next_reminder = now + REMINDER;
            tracing::warn!(
                "still no audio device after {:.0} s ({}); retrying every {:.0} s",
                now.duration_since(self.down_since).as_secs_f64(),
                self.last_error,
                RETRY_MAX.as_secs_f64()
            );
        }
    }

    /// Whether the output is missing and being retried: lost, or not yet found. (A
    /// device let go in a silence is not down: it opens again for the next note.)
    fn down(&self) -> bool {
        matches!(self.state, DeviceState::Lost | DeviceState::Waiting)
    }

    /// Let the device go, while nothing sounds: the stream is closed here (so that a
    /// device that allows one stream at a time is free for the next), and nothing is
    /// reopened until [`Supervisor::resume`].
    pub fn suspend(&mut self) {
        if self.state != DeviceState::Playing {
            return;
        }
        if let Some(stream) = self.stream.take() {
            self.retire_counters(&stream);
            stream.close();
        }
        self.past.suspends += 1;
        self.state = DeviceState::Suspended;
    }

    /// Open the device again after [`Supervisor::suspend`], and wait (at most
    /// `RESUME_WAIT`, half a second) for its first callback, so that the stream clock
    /// is running when this returns. On failure the device is lost, and reopened as
    /// any lost device is. Returns whether it plays.
    pub fn resume(&mut self, control: &mut ControlHalf) -> bool {
        if self.state != DeviceState::Suspended {
            return self.state == DeviceState::Playing;
        }
        let asked = Instant::now();
        match DeviceOutput::start(&self.request, control.renew_audio()) {
            Ok(stream) => {
                let health = stream.health.clone();
                self.past.resumes += 1;
                self.playing(stream, asked);
                while health.callbacks.load(Relaxed) == 0 && asked.elapsed() < RESUME_WAIT {
                    std::thread::sleep(Duration::from_micros(500));
                }
                tracing::debug!(
                    "audio output open again after {:.1} ms",
                    asked.elapsed().as_secs_f64() * 1e3
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "the audio output cannot be opened again after a silence ({e}); retrying"
                );
                self.went_down(asked);
                self.last_error = e.to_string();
                false
            }
        }
    }

    /// The output is lost as of `now`: counted, and its first retry and reminder due.
    fn went_down(&mut self, now: Instant) {
        self.past.losses += 1;
        self.state = DeviceState::Lost;
        self.down_since = now;
        self.next_reminder = now + REMINDER;
        self.next_try = now + self.backoff.delay();
    }

    /// Add a closing stream's counters to those of the streams before it.
    fn retire_counters(&mut self, stream: &DeviceOutput) {
        let h = &stream.health;
        self.past.xruns += h.xruns.load(Relaxed);
        self.past.errors += h.errors.load(Relaxed);
        self.past.engine_failures += u64::from(h.failed.load(Relaxed));
    }

    /// Why the current stream has ended, if it has.
    fn why_ended(&mut self, now: Instant) -> Option<String> {
        let stream = self.stream.as_mut()?;
        let health = &stream.health;
        if health.failed.load(Relaxed) {
            return Some(
                "the audio engine panicked inside the device callback (see the message above)"
                    .to_owned(),
            );
        }
        if health.lost.load(Relaxed) {
            return Some(match stream.fatal_errors.pop() {
                Ok(e) => format!("the device reported: {e}"),
                Err(_) => "the device reported an error that ends the stream".to_owned(),
            });
        }
        let callbacks = health.callbacks.load(Relaxed);
        if callbacks != self.callbacks {
            self.callbacks = callbacks;
            self.progress_at = now;
            return None;
        }
        let buffer = f64::from(stream.buffer_frames.max(1)) / f64::from(stream.sample_rate.max(1));
        let stall = STALL_MIN.max(Duration::from_secs_f64(4.0 * buffer));
        let quiet = now.duration_since(self.progress_at);
        (quiet >= stall).then(|| {
            format!(
                "the device stopped asking for audio {:.1} s ago",
                quiet.as_secs_f64()
            )
        })
    }

    fn lose(&mut self, reason: String, now: Instant) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        self.retire_counters(&stream);
        self.went_down(now);
        self.announced = match self.loss_lines.count(1, now) {
            Some(n) => {
                let more = if n > 1 {
                    format!(" ({n} losses since the last report)")
                } else {
                    String::new()
                };
                tracing::warn!(
                    "audio output to {:?} ({}) lost: {reason}{more}; the sources play on silently while it is reopened (every {:.0} s at most)",
                    stream.name,
                    stream.host,
                    RETRY_MAX.as_secs_f64()
                );
                true
            }
            None => {
                tracing::debug!("audio output lost again: {reason}");
                false
            }
        };
        self.last_error = reason;
        stream.close_in_background();
    }

    /// One attempt: the device by name, else (if that one is missing) the default.
    fn try_reopen(&mut self, control: &mut ControlHalf, now: Instant) {
        let mut result = DeviceOutput::start(&self.request, control.renew_audio());
        if let (Err(DeviceError::NotFound { .. }), Some(_)) = (&result, &self.request.device) {
            let default = DeviceRequest {
                device: None,
                ..self.request.clone()
            };
            result = DeviceOutput::start(&default, control.renew_audio());
        }
        match result {
            Ok(stream) if !self.announced => {
                tracing::debug!("audio output back on {:?}", stream.name);
                self.past.reopens += 1;
                self.playing(stream, Instant::now());
            }
            Ok(stream) => {
                tracing::info!(
                    "audio output {} after {:.1} s: playing on {:?} ({}), {} Hz, {} frames per buffer",
                    if self.state == DeviceState::Waiting {
                        "found"
                    } else {
                        "back"
                    },
                    now.duration_since(self.down_since).as_secs_f64(),
                    stream.name,
                    stream.host,
                    stream.sample_rate,
                    stream.buffer_frames
                );
                self.past.reopens += 1;
                self.playing(stream, Instant::now());
            }
            Err(e) => {
                let delay = self.backoff.delay();
                tracing::debug!(
                    "audio device still unavailable ({e}); next try in {:.2} s",
                    delay.as_secs_f64()
                );
                self.last_error = e.to_string();
                self.next_try = Instant::now() + delay;
            }
        }
    }
}
