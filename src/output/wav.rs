//! Offline WAV output: 16-bit stereo PCM, written as fast as the engine renders.
//!
//! 16-bit with plain rounding (no dither noise) keeps renders bit-for-bit identical for
//! the same input and seed.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use super::FrameSink;

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
        for &x in interleaved {
            samples.write_sample((x.clamp(-1.0, 1.0) * 32767.0).round() as i16);
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
