//! The audio device, through cpal: opens the default (or a named) output device of the
//! system's audio host (ALSA on Linux) or of a named one (`jack`, straight into a JACK
//! server with no ALSA bridge), and runs the engine's audio half in its callback.
//!
//! The callback does nothing but `AudioHalf::render` and atomic stores (and, at its first
//! call, one system call asking real-time priority for its thread, or under JACK, which
//! sets its clients' priority itself, two that read it): it never allocates,
//! locks, blocks or logs. A panic inside the engine is caught there, and the stream
//! plays silence from then on and says so through an atomic. Device errors are counted
//! in atomics, and those that end the stream (a lost device) are also passed, whole,
//! through a small preallocated queue, for the [`supervisor`](super::supervisor) to
//! read, log and act on, off the audio thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use thiserror::Error;

use crate::engine::AudioHalf;
use crate::output::realtime::{FirstCallback, RealtimeStatus};

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("no audio host named {wanted:?}; this build has: {available}")]
    UnknownHost { wanted: String, available: String },
    #[error("cannot use the {host} audio host: {reason}")]
    Host { host: String, reason: String },
    #[error("no output device named {wanted:?}; available: {available}")]
    NotFound { wanted: String, available: String },
    #[error("no default output device on the {host} host; available: {available}. {hint}")]
    NoDefault {
        host: String,
        available: String,
        hint: &'static str,
    },
    #[error("cannot open output device {device:?} at {sample_rate} Hz, {buffer} frames per buffer: {reason}. Available devices: {available}. Try another --device, --sample-rate or --buffer-frames (see `carillon devices`)")]
    Open {
        device: String,
        sample_rate: u32,
        buffer: String,
        reason: String,
        available: String,
    },
    #[error("cannot list audio devices: {0}")]
    List(String),
}

/// What to open.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// Audio host (`alsa`, `jack`…); `None` or empty for the system's default.
    pub host: Option<String>,
    pub device: Option<String>,
    pub sample_rate: u32,
    /// Frames per buffer; 0 for the device's default.
    pub buffer_frames: u32,
    /// Where the server sets the buffer size itself (JACK): fail if it is not
    /// `buffer_frames`, rather than play at the server's size.
    pub exact_buffer: bool,
    /// `SCHED_FIFO` priority to ask for the audio thread (1..=99); 0 not to ask. Not
    /// asked of JACK, which sets its clients' priority itself.
    pub realtime_priority: i32,
}

/// Counters the device reports from outside the audio callback.
#[derive(Debug, Default)]
pub struct DeviceHealth {
    /// Buffer under/overruns reported by the device.
    pub xruns: AtomicU64,
    /// Other stream errors.
    pub errors: AtomicU64,
    /// Callbacks run.
    pub callbacks: AtomicU64,
    /// Whether the audio thread got real-time priority.
    pub realtime: RealtimeStatus,
    /// The device reported an error that ends the stream (it is gone, or its
    /// configuration no longer holds).
    pub lost: AtomicBool,
    /// The engine panicked inside the callback; the stream plays silence since.
    pub failed: AtomicBool,
    /// How long after its callback the device last said a buffer would be heard (ns):
    /// what turns a note's stream time into the instant it is heard.
    pub playback_delay_ns: AtomicU64,
}

/// Errors that end a stream: what is left of it will not play again.
fn ends_the_stream(kind: cpal::ErrorKind) -> bool {
    matches!(
        kind,
        cpal::ErrorKind::DeviceNotAvailable
            | cpal::ErrorKind::HostUnavailable
            | cpal::ErrorKind::StreamInvalidated
            | cpal::ErrorKind::PermissionDenied
    )
}

/// Errors that end a stream, kept for the supervisor's log line (a few are plenty).
const ERROR_QUEUE: usize = 8;

/// One device callback: fill `data` from the engine, or with silence once the engine
/// has failed. A panic in the engine is caught here, so that it can never unwind into
/// the audio library's thread (which would end the stream unnoticed): it is recorded
/// in `failed`, and the engine, whose state it may have broken, is not called again.
pub fn fill(audio: &mut AudioHalf, data: &mut [f32], channels: usize, failed: &AtomicBool) {
    if failed.load(Relaxed) {
        data.fill(0.0);
        return;
    }
    if catch_unwind(AssertUnwindSafe(|| audio.render(data, channels))).is_err() {
        failed.store(true, Relaxed);
        data.fill(0.0);
    }
}

/// What one device callback did, for measuring latency: sent from the callback
/// through a preallocated ring buffer when a measurement asks for it.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRecord {
    /// When the callback began writing the device buffer.
    pub at: Instant,
    /// Stream frame of the buffer's first frame, and how many frames it holds.
    pub first_frame: u64,
    pub frames: u32,
    /// How long after the callback the device reports the buffer will be heard.
    pub playback_delay: Duration,
}

/// A running output stream. Dropping it stops the sound.
pub struct DeviceOutput {
    stream: cpal::Stream,
    /// Errors that ended the stream, as the device reported them.
    pub fatal_errors: rtrb::Consumer<cpal::Error>,
    pub host: String,
    pub name: String,
    /// Frames per buffer in force, when known before the stream plays (0: the device
    /// chooses; `ControlHalf::device_buffer` tells once it plays).
    pub buffer_frames: u32,
    pub sample_rate: u32,
    pub channels: u16,
    pub health: Arc<DeviceHealth>,
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| "(unnamed device)".to_owned())
}

fn available(host: &cpal::Host) -> String {
    match host.output_devices() {
        Ok(devices) => {
            let names: Vec<String> = devices.map(|d| device_name(&d)).collect();
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        }
        Err(e) => format!("(cannot list: {e})"),
    }
}

/// The audio hosts this build can use.
fn hosts() -> String {
    cpal::available_hosts()
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// JACK sets the buffer size and its clients' priority itself, and needs a server.
fn is_jack(host: &cpal::Host) -> bool {
    host.id().name().eq_ignore_ascii_case("jack")
}

/// The requested audio host, or the system's default.
pub fn open_host(name: Option<&str>) -> Result<cpal::Host, DeviceError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(cpal::default_host());
    };
    let id: cpal::HostId = name.parse().map_err(|_| DeviceError::UnknownHost {
        wanted: name.to_owned(),
        available: hosts(),
    })?;
    cpal::host_from_id(id).map_err(|e| DeviceError::Host {
        host: id.to_string(),
        reason: e.to_string(),
    })
}

/// Find the requested device: by exact name first, then by a name containing it.
fn find(host: &cpal::Host, wanted: &Option<String>) -> Result<cpal::Device, DeviceError> {
    let Some(wanted) = wanted else {
        return host
            .default_output_device()
            .ok_or_else(|| DeviceError::NoDefault {
                host: host.id().to_string(),
                available: available(host),
                hint: if is_jack(host) {
                    "Is a JACK server running (with JACK_DEFAULT_SERVER naming it, if it has a name)?"
                } else {
                    "Name one with --device NAME (see `carillon devices`)"
                },
            });
    };
    let devices: Vec<cpal::Device> = host
        .output_devices()
        .map_err(|e| DeviceError::List(e.to_string()))?
        .collect();
    let exact = devices.iter().position(|d| device_name(d) == *wanted);
    let partial = || {
        devices
            .iter()
            .position(|d| device_name(d).contains(wanted.as_str()))
    };
    match exact.or_else(partial) {
        Some(i) => Ok(devices[i].clone()),
        None => Err(DeviceError::NotFound {
            wanted: wanted.clone(),
            available: available(host),
        }),
    }
}

impl DeviceOutput {
    /// Open the device and start playing the audio half's output.
    pub fn start(request: &DeviceRequest, audio: AudioHalf) -> Result<Self, DeviceError> {
        Self::start_measured(request, audio, None)
    }

    /// Like [`DeviceOutput::start`], and each callback also reports a
    /// [`CallbackRecord`] into `records` (dropped when it is full).
    pub fn start_measured(
        request: &DeviceRequest,
        mut audio: AudioHalf,
        mut records: Option<rtrb::Producer<CallbackRecord>>,
    ) -> Result<Self, DeviceError> {
        let host = open_host(request.host.as_deref())?;
        let device = find(&host, &request.device)?;
        let name = device_name(&device);
        let open_error = |reason: String| DeviceError::Open {
            device: name.clone(),
            sample_rate: request.sample_rate,
            buffer: if request.buffer_frames == 0 {
                "default".to_owned()
            } else {
                request.buffer_frames.to_string()
            },
            // cpal's reasons end with a full stop of their own.
            reason: reason.trim_end_matches('.').to_owned(),
            available: available(&host),
        };
        // A server that runs the whole graph at one buffer size (JACK) offers only that.
        let imposed = match device.default_output_config().map(|c| *c.buffer_size()) {
            Ok(cpal::SupportedBufferSize::Range { min, max }) if min == max => Some(min),
            _ => None,
        };
        // Stereo where the device offers it; otherwise whatever it prefers.
        let channels = match device.supported_output_configs() {
            Ok(mut configs) => {
                if configs.any(|c| c.channels() == 2) {
                    2
                } else {
                    device
                        .default_output_config()
                        .map(|c| c.channels())
                        .unwrap_or(2)
                }
            }
            Err(_) => 2,
        };
        let buffer_frames = match (request.buffer_frames, imposed) {
            (0, imposed) => imposed.unwrap_or(0),
            (wanted, Some(imposed)) if wanted != imposed => {
                if request.exact_buffer {
                    return Err(open_error(format!(
                        "the {} server sets the buffer size, and runs at {imposed} frames",
                        host.id()
                    )));
                }
                tracing::warn!(
                    "the {} server runs at {imposed} frames per buffer: playing at that size, not {wanted}",
                    host.id()
                );
                imposed
            }
            (wanted, _) => wanted,
        };
        let buffer_size = if buffer_frames == 0 {
            cpal::BufferSize::Default
        } else {
            cpal::BufferSize::Fixed(buffer_frames)
        };
        let config = cpal::StreamConfig {
            channels,
            sample_rate: request.sample_rate,
            buffer_size,
        };
        let health = Arc::new(DeviceHealth::default());
        let callback_health = health.clone();
        let error_health = health.clone();
        let (mut fatal_tx, fatal_errors) = rtrb::RingBuffer::<cpal::Error>::new(ERROR_QUEUE);
        let ch = channels as usize;
        let mut first_callback = FirstCallback::new(is_jack(&host), request.realtime_priority);
        let stream = device
            .build_output_stream::<f32, _, _>(
                config,
                move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    // Everything below must not allocate: counted, for the tests to see.
                    let _watch = crate::alloc_watch::Watch::new();
                    // Once, from the audio thread itself.
                    first_callback.settle(&callback_health.realtime);
                    let at = Instant::now();
                    let first_frame = audio.clock();
                    fill(&mut audio, data, ch, &callback_health.failed);
                    callback_health.callbacks.fetch_add(1, Relaxed);
                    let t = info.timestamp();
                    let delay = t.playback.duration_since(t.callback);
                    callback_health
                        .playback_delay_ns
                        .store(delay.as_nanos() as u64, Relaxed);
                    if let Some(records) = records.as_mut() {
                        let _ = records.push(CallbackRecord {
                            at,
                            first_frame,
                            frames: (data.len() / ch.max(1)) as u32,
                            playback_delay: delay,
                        });
                    }
                },
                // ALSA calls this on the audio thread itself: atomics and a preallocated
                // queue only.
                move |e: cpal::Error| {
                    if e.kind() == cpal::ErrorKind::Xrun {
                        error_health.xruns.fetch_add(1, Relaxed);
                        return;
                    }
                    error_health.errors.fetch_add(1, Relaxed);
                    if ends_the_stream(e.kind()) {
                        error_health.lost.store(true, Relaxed);
                        // A full queue already holds the news.
                        let _ = fatal_tx.push(e);
                    }
                },
                None,
            )
            .map_err(|e| open_error(e.to_string()))?;
        stream.play().map_err(|e| open_error(e.to_string()))?;
        Ok(DeviceOutput {
            stream,
            fatal_errors,
            host: host.id().to_string(),
            name,
            buffer_frames,
            sample_rate: request.sample_rate,
            channels,
            health,
        })
    }
}

impl DeviceOutput {
    /// Stop and close the stream here, waiting until the device is free again.
    pub fn close(self) {
        let _ = self.stream.pause();
        drop(self);
    }

    /// Stop the stream and free it on a thread of its own: a stream whose device has
    /// vanished can take long to close (or never return), and the caller must not wait
    /// for it. The audio half inside goes with it, freed there, off the audio thread.
    pub fn close_in_background(self) {
        let closing = std::thread::Builder::new()
            .name("carillon-close".into())
            .spawn(move || self.close());
        if let Err(e) = closing {
            // The stream went down with the failed spawn's closure, closed here.
            tracing::warn!(
                "cannot start a thread to close the old stream ({e}): closed it in line"
            );
        }
    }
}

/// A description of every output device and its supported configurations.
pub fn list(host: Option<&str>) -> Result<String, DeviceError> {
    let host = open_host(host)?;
    let default = host.default_output_device().map(|d| device_name(&d));
    let mut out = format!("Audio host: {} (this build has: {})\n", host.id(), hosts());
    let devices = host
        .output_devices()
        .map_err(|e| DeviceError::List(e.to_string()))?;
    let mut any = false;
    for device in devices {
        any = true;
        let name = device_name(&device);
        let mark = if Some(&name) == default.as_ref() {
            " (default)"
        } else {
            ""
        };
        out.push_str(&format!("{name}{mark}\n"));
        match device.supported_output_configs() {
            Ok(configs) => {
                // One line per configuration, except that configurations differing only
                // in their channel count (JACK offers 1 to 64) share a line.
                let mut lines: Vec<(u16, u16, String)> = Vec::new();
                for c in configs {
                    let buffer = match c.buffer_size() {
                        cpal::SupportedBufferSize::Range { min, max } => {
                            format!("{min}..{max} frames")
                        }
                        cpal::SupportedBufferSize::Unknown => "buffer size unknown".to_owned(),
                    };
                    let rest = format!(
                        "{}..{} Hz, {:?}, {buffer}",
                        c.min_sample_rate(),
                        c.max_sample_rate(),
                        c.sample_format()
                    );
                    match lines.last_mut() {
                        Some((_, last, r)) if *r == rest && *last + 1 == c.channels() => {
                            *last = c.channels();
                        }
                        _ => lines.push((c.channels(), c.channels(), rest)),
                    }
                }
                for (first, last, rest) in lines {
                    let channels = if first == last {
                        format!("{first} ch")
                    } else {
                        format!("{first}..{last} ch")
                    };
                    out.push_str(&format!("    {channels}, {rest}\n"));
                }
            }
            Err(e) => out.push_str(&format!("    (cannot read configurations: {e})\n")),
        }
    }
    if !any {
        out.push_str("no output devices found\n");
    }
    Ok(out)
}

/// Route libasound's and libjack's own diagnostics away from stderr: to the debug log
/// (`CARILLON_LOG=debug`), where they help, instead of two dozen `ALSA lib …` lines
/// before carillon's one message on a machine with no sound card, and a few more at
/// every attempt to reopen a lost JACK server. Call once, at start.
pub fn quiet_audio_libraries() {
    // SAFETY: `alsa_error` has the fixed parameters of libasound's error handler and
    // ignores the variadic ones, which the C calling conventions of the platforms
    // carillon runs on (x86-64 System V, AArch64) allow. libasound is linked by cpal.
    #[cfg(target_os = "linux")]
    unsafe {
        snd_lib_error_set_handler(Some(alsa_error));
    }
    // libjack is loaded at run time; where it is not installed there is nothing to quiet.
    if jack::jack_sys::library().is_ok() {
        jack::set_logger(jack::LoggerType::Custom {
            info: jack_message,
            error: jack_message,
        });
    }
}

#[cfg(target_os = "linux")]
type AlsaErrorHandler = unsafe extern "C" fn(
    file: *const std::ffi::c_char,
    line: std::ffi::c_int,
    function: *const std::ffi::c_char,
    err: std::ffi::c_int,
    fmt: *const std::ffi::c_char,
);

#[cfg(target_os = "linux")]
extern "C" {
    fn snd_lib_error_set_handler(handler: Option<AlsaErrorHandler>) -> std::ffi::c_int;
}

/// A C string for the log, or "?" for a null pointer.
///
/// # Safety
/// `s` is null or points to a NUL-terminated string.
unsafe fn c_text(s: *const std::ffi::c_char) -> std::borrow::Cow<'static, str> {
    if s.is_null() {
        "?".into()
    } else {
        // SAFETY: non-null, and NUL-terminated by the caller's contract.
        unsafe { std::ffi::CStr::from_ptr(s) }
            .to_string_lossy()
            .into_owned()
            .into()
    }
}

/// libasound's message, less its printf arguments (a stable Rust function cannot read
/// C varargs): where it came from and the error number say enough to search for.
#[cfg(target_os = "linux")]
unsafe extern "C" fn alsa_error(
    file: *const std::ffi::c_char,
    line: std::ffi::c_int,
    function: *const std::ffi::c_char,
    err: std::ffi::c_int,
    fmt: *const std::ffi::c_char,
) {
    // Nothing at all unless asked for: this may run on the audio thread.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    // SAFETY: libasound passes NUL-terminated strings or null.
    let (file, function, fmt) = unsafe { (c_text(file), c_text(function), c_text(fmt)) };
    let reason = if err == 0 {
        String::new()
    } else {
        format!(": {}", std::io::Error::from_raw_os_error(err.abs()))
    };
    tracing::debug!("libasound: {function} ({file}:{line}): {fmt:?}{reason}");
}

unsafe extern "C" fn jack_message(message: *const std::ffi::c_char) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    // SAFETY: libjack passes a NUL-terminated string.
    let message = unsafe { c_text(message) };
    tracing::debug!("libjack: {message}");
}
