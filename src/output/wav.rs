//! Offline WAV output: 16-bit stereo PCM, written as fast as the engine renders.
//!
//! 16-bit with plain rounding (no dither noise) keeps renders bit-for-bit identical for
//! the same input and seed.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use super::FrameSink;

/// Adding and then taking away 1.5·2²³ leaves an f32 of magnitude under 2²² rounded to
/// the nearest whole number (halves to even), in the default rounding mode: a sample
/// rounded in two additions the compiler vectorizes, where `round()` is a library call
/// for each one (a twentieth of an offline render's time).
const ROUNDER: f32 = 12_582_912.0;

/// Samples converted at a time, on the stack.
const CHUNK: usize = 256;

/// `x` (−1..=1 is full scale; beyond is clipped) as a 16-bit sample, rounded to the
/// nearest step.
#[inline(always)]
fn to_i16(x: f32) -> i16 {
    nearest(x.clamp(-1.0, 1.0) * 32767.0)
}

/// `y` (of magnitude under 2²²) rounded to the nearest whole number, halves to even;
/// NaN becomes 0, as `as` makes it.
#[inline(always)]
fn nearest(y: f32) -> i16 {
    ((y + ROUNDER) - ROUNDER) as i16
}

pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

fn io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

impl WavSink {
    pub fn create(path: &Path, sample_rate: u32) -> std::io::Result<Self> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(io)?;
        Ok(Self {
            writer: Some(writer),
        })
    }
}

impl FrameSink for WavSink {
    fn write(&mut self, interleaved: &[f32]) -> std::io::Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Err(std::io::Error::other("WAV file already finished"));
        };
        let mut samples = w.get_i16_writer(interleaved.len() as u32);
        let mut converted = [0i16; CHUNK];
        for chunk in interleaved.chunks(CHUNK) {
            for (y, &x) in converted.iter_mut().zip(chunk) {
                *y = to_i16(x);
            }
            for &y in &converted[..chunk.len()] {
                samples.write_sample(y);
            }
        }
        samples.flush().map_err(io)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(io),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_to_the_nearest_step_and_clip_at_full_scale() {
        // Every 16-bit step and the halves between them, up and down.
        for step in -32767i32..=32767 {
            let x = step as f32 / 32767.0;
            assert_eq!(i32::from(to_i16(x)), step, "{x}");
            for off in [-0.49f32, -0.25, 0.25, 0.49] {
                let x = (step as f32 + off) / 32767.0;
                assert_eq!(i32::from(to_i16(x)), step, "{step} {off}");
            }
        }
        // Halves go to the even step.
        for (y, step) in [(0.5, 0), (1.5, 2), (2.5, 2), (-1.5, -2), (32766.5, 32766)] {
            assert_eq!(nearest(y), step, "{y}");
        }
        for (x, y) in [(1.0, 32767), (3.0, 32767), (-1.0, -32767), (-7.5, -32767)] {
            assert_eq!(to_i16(x), y, "{x}");
        }
        assert_eq!(to_i16(f32::NAN), 0);
        assert_eq!(to_i16(f32::INFINITY), 32767);
    }
}
