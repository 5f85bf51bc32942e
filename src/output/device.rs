//! The audio device, through cpal: opens the default (or a named) output device and
//! runs the engine's audio half in its callback.
//!
//! The callback does nothing but `AudioHalf::render` and an atomic store: it never
//! allocates, locks, blocks or logs. Device errors (xruns, a lost device) are counted
//! in atomics and reported by the conductor, off the audio thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use thiserror::Error;

use crate::engine::AudioHalf;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("no output device named {wanted:?}; available: {available}")]
    NotFound { wanted: String, available: String },
    #[error("no default output device; available: {available}. Name one with --device NAME (see `carillon devices`)")]
    NoDefault { available: String },
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
    pub device: Option<String>,
    pub sample_rate: u32,
    /// Frames per buffer; 0 for the device's default.
    pub buffer_frames: u32,
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
    _stream: cpal::Stream,
    pub name: String,
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

/// Find the requested device: by exact name first, then by a name containing it.
fn find(host: &cpal::Host, wanted: &Option<String>) -> Result<cpal::Device, DeviceError> {
    let Some(wanted) = wanted else {
        return host
            .default_output_device()
            .ok_or_else(|| DeviceError::NoDefault {
                available: available(host),
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
        let host = cpal::default_host();
        let device = find(&host, &request.device)?;
        let name = device_name(&device);
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
        let buffer_size = if request.buffer_frames == 0 {
            cpal::BufferSize::Default
        } else {
            cpal::BufferSize::Fixed(request.buffer_frames)
        };
        let config = cpal::StreamConfig {
            channels,
            sample_rate: request.sample_rate,
            buffer_size,
        };
        let health = Arc::new(DeviceHealth::default());
        let open_error = |reason: String| DeviceError::Open {
            device: name.clone(),
            sample_rate: request.sample_rate,
            buffer: if request.buffer_frames == 0 {
                "default".to_owned()
            } else {
                request.buffer_frames.to_string()
            },
            reason,
            available: available(&host),
        };
        let callback_health = health.clone();
        let error_health = health.clone();
        let ch = channels as usize;
        let stream = device
            .build_output_stream::<f32, _, _>(
                config,
                move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    let at = Instant::now();
                    let first_frame = audio.clock();
                    audio.render(data, ch);
                    callback_health.callbacks.fetch_add(1, Relaxed);
                    if let Some(records) = records.as_mut() {
                        let t = info.timestamp();
                        let _ = records.push(CallbackRecord {
                            at,
                            first_frame,
                            frames: (data.len() / ch.max(1)) as u32,
                            playback_delay: t.playback.duration_since(t.callback),
                        });
                    }
                },
                move |e: cpal::Error| {
                    if e.kind() == cpal::ErrorKind::Xrun {
                        error_health.xruns.fetch_add(1, Relaxed);
                    } else {
                        error_health.errors.fetch_add(1, Relaxed);
                    }
                },
                None,
            )
            .map_err(|e| open_error(e.to_string()))?;
        stream.play().map_err(|e| open_error(e.to_string()))?;
        Ok(DeviceOutput {
            _stream: stream,
            name,
            sample_rate: request.sample_rate,
            channels,
            health,
        })
    }
}

/// A description of every output device and its supported configurations.
pub fn list() -> Result<String, DeviceError> {
    let host = cpal::default_host();
    let default = host.default_output_device().map(|d| device_name(&d));
    let mut out = format!("Audio host: {}\n", host.id().name());
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
                for c in configs {
                    let buffer = match c.buffer_size() {
                        cpal::SupportedBufferSize::Range { min, max } => {
                            format!("{min}..{max} frames")
                        }
                        cpal::SupportedBufferSize::Unknown => "buffer size unknown".to_owned(),
                    };
                    out.push_str(&format!(
                        "    {} ch, {}..{} Hz, {:?}, {buffer}\n",
                        c.channels(),
                        c.min_sample_rate(),
                        c.max_sample_rate(),
                        c.sample_format()
                    ));
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
