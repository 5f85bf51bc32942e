//! A WAV reader that accepts the files ALSA's `file` plugin leaves behind.
//!
//! The plugin writes the header with zero sizes when the device opens and fills
//! them in when it closes. A program that is killed, or exits without closing
//! its stream, leaves `data` size 0, and `hound` then reads no samples at all.
//! So the header is parsed by hand and the samples are read to the end of the
//! file whenever the declared size is zero or runs past it.

use std::path::Path;
use std::time::Duration;

/// 16-bit PCM audio, one `Vec` of samples in [-1, 1) per channel.
#[derive(Debug, Clone)]
pub struct Wav {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
    /// Whether the writer filled in the `data` size (it closed the file).
    pub header_complete: bool,
}

impl Wav {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.sample_rate))
    }

    pub fn channel(&self, index: usize) -> &[f32] {
        &self.channels[index]
    }

    /// The average of all channels.
    pub fn mono(&self) -> Vec<f32> {
        let n = self.channels.len() as f32;
        (0..self.frames())
            .map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / n)
            .collect()
    }

    /// All samples of all channels, for level checks.
    pub fn all_samples(&self) -> impl Iterator<Item = f32> + '_ {
        self.channels.iter().flatten().copied()
    }
}

/// Reads a 16-bit PCM WAV (any number of channels), tolerating an unfinished
/// header: a zero or too large `data` size means "to the end of the file", and
/// a trailing partial frame is dropped.
pub fn read_wav_lenient(path: &Path) -> Result<Wav, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_wav_lenient(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_wav_lenient(bytes: &[u8]) -> Result<Wav, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut format: Option<(u16, u32)> = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let declared = u32_le(bytes, pos + 4) as usize;
        let body = pos + 8;
        match id {
            b"fmt " => format = Some(parse_fmt(&bytes[body..(body + declared).min(bytes.len())])?),
            b"data" => {
                let (channels, sample_rate) =
                    format.ok_or("`data` chunk before any `fmt ` chunk")?;
                let available = bytes.len() - body;
                let header_complete = declared != 0 && declared <= available;
                let len = if header_complete { declared } else { available };
                return Ok(Wav {
                    sample_rate,
                    channels: deinterleave(&bytes[body..body + len], channels),
                    header_complete,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(declared).saturating_add(declared & 1);
    }
    Err("no `data` chunk".into())
}

/// Returns (channels, sample rate) of a 16-bit PCM `fmt ` chunk.
fn parse_fmt(chunk: &[u8]) -> Result<(u16, u32), String> {
    if chunk.len() < 16 {
        return Err(format!("`fmt ` chunk of {} bytes, need 16", chunk.len()));
    }
    let tag = u16_le(chunk, 0);
    let channels = u16_le(chunk, 2);
    let sample_rate = u32_le(chunk, 4);
    let bits = u16_le(chunk, 14);
    // 1 = PCM; 0xFFFE = WAVE_FORMAT_EXTENSIBLE, whose sub-format is checked
    // through the bit depth: only 16-bit integer PCM is expected here.
    if tag != 1 && tag != 0xFFFE {
        return Err(format!("format tag {tag:#x}, expected 1 (PCM)"));
    }
    if bits != 16 {
        return Err(format!("{bits} bits per sample, expected 16"));
    }
    if channels == 0 {
        return Err("zero channels".into());
    }
    Ok((channels, sample_rate))
}

fn deinterleave(data: &[u8], channels: u16) -> Vec<Vec<f32>> {
    let channels = usize::from(channels);
    let frame_bytes = 2 * channels;
    let frames = data.len() / frame_bytes;
    let mut out = vec![Vec::with_capacity(frames); channels];
    for frame in data.chunks_exact(frame_bytes) {
        for (c, sample) in frame.chunks_exact(2).enumerate() {
            out[c].push(f32::from(i16::from_le_bytes([sample[0], sample[1]])) / 32768.0);
        }
    }
    out
}

fn u16_le(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
