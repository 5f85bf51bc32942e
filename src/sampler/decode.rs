//! Sample files into samples: decoded by rodio (WAV, FLAC, Ogg Vorbis, MP3), mixed
//! down to mono, and converted to the engine's sample rate by rubato's FFT resampler.
//!
//! All of it happens at start-up (or at `check-config`), never while playing; every
//! refusal names the file and says what to do about it.

use std::path::Path;

use rodio::Source;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The sample rates a recording may have: what any recorder or editor writes.
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=384_000;

/// The longest recording an instrument holds, in seconds: a note is a few seconds, and
/// a stray hour-long file would otherwise fill the memory.
pub const LONGEST_S: f64 = 60.0;

/// One recording, decoded: mono samples at its own rate.
#[derive(Debug)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Decode `path`, mixing its channels (one or two) down to mono. The error is a
/// sentence about the file, to follow its path.
pub fn decode(path: &Path) -> Result<Decoded, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let decoder = rodio::Decoder::try_from(file).map_err(|e| match e {
        rodio::decoder::DecoderError::UnrecognizedFormat => {
            "is not a WAV, FLAC, Ogg Vorbis or MP3 recording carillon can decode".to_owned()
        }
        other => format!("cannot be decoded: {other}"),
    })?;
    let channels = decoder.channels().get();
    let sample_rate = decoder.sample_rate().get();
    let announced = decoder.total_duration();
    if !(1..=2).contains(&channels) {
        return Err(format!(
            "has {channels} channels: expected a mono or stereo recording (stereo is mixed \
             down to mono; the score places each note in the stereo field)"
        ));
    }
    if !RATES.contains(&sample_rate) {
        return Err(format!(
            "is recorded at {sample_rate} Hz: expected {} to {} Hz",
            RATES.start(),
            RATES.end()
        ));
    }
    let most = (LONGEST_S * sample_rate as f64) as usize * channels as usize;
    let mut interleaved = Vec::new();
    for sample in decoder {
        if interleaved.len() == most {
            return Err(format!(
                "is longer than {LONGEST_S} s: trim it to the note and its ring"
            ));
        }
        interleaved.push(sample);
    }
    let samples: Vec<f32> = if channels == 2 {
        interleaved
            .chunks_exact(2)
            .map(|lr| 0.5 * (lr[0] + lr[1]))
            .collect()
    } else {
        interleaved
    };
    if samples.is_empty() {
        return Err("holds no sound".into());
    }
    // A WAV or FLAC header gives the exact length: a file that decodes to less was cut
    // short (an unfinished copy, a full disk), and the decoder just stops early. (An
    // MP3's or Ogg's length is only estimated, so theirs is not checked.)
    let exact = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| e == "wav" || e == "flac");
    if let Some(announced) = announced.filter(|_| exact) {
        let held = samples.len() as f64 / sample_rate as f64;
        if held + 0.01 < announced.as_secs_f64() {
            return Err(format!(
                "is cut short: it holds {held:.3} s of the {:.3} s its header announces (a \
                 damaged or unfinished file)",
                announced.as_secs_f64()
            ));
        }
    }
    if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
        return Err(format!("holds a non-finite sample at frame {i}"));
    }
    Ok(Decoded {
        samples,
        sample_rate,
    })
}

/// `samples` at `from` Hz converted to `to` Hz (a copy when they are the same).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let refused = |e: &dyn std::fmt::Display| {
        format!("cannot be converted from {from} Hz to the engine's {to} Hz: {e}")
    };
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| refused(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| refused(&e))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| refused(&e))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_tone_at_its_pitch_and_level() {
        let (from, to, hz) = (44_100u32, 48_000u32, 1000.0);
        let tone: Vec<f32> = (0..44_100)
            .map(|i| (std::f64::consts::TAU * hz * i as f64 / from as f64).sin() as f32)
            .collect();
        let out = resample(&tone, from, to).expect("resampled");
        assert!((out.len() as i64 - 48_000).abs() <= 1, "{}", out.len());
        // Away from the ends, sample for sample the tone at the new rate.
        let worst = (2000..46_000)
            .map(|i| {
                let want = (std::f64::consts::TAU * hz * i as f64 / to as f64).sin();
                (out[i] as f64 - want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-3, "{worst}");
    }
}
