//! Sample sets a test writes for itself: tones of known pitch as WAV (hound), and as
//! FLAC, Ogg Vorbis or MP3 (encoded from that WAV by `sox`), in a folder beside a
//! sampler recipe.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::require_tool;

/// A recorded tone: its pitch, and a "fingerprint" partial at `marker` times it, so
/// that a test can tell which recording a note was played from.
#[derive(Debug, Clone, Copy)]
pub struct Tone {
    pub hz: f64,
    pub marker: f64,
    pub seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    /// Time to fall 60 dB (s); `f64::INFINITY` for a steady tone.
    pub t60: f64,
    /// A rise (s) at the start, as a bowed swell has.
    pub attack: f64,
}

impl Tone {
    pub fn new(hz: f64, marker: f64) -> Tone {
        Tone {
            hz,
            marker,
            seconds: 1.5,
            sample_rate: 48_000,
            channels: 1,
            t60: f64::INFINITY,
            attack: 0.005,
        }
    }

    /// Its sample at frame `i` (every channel the same).
    pub fn at(&self, i: usize) -> f64 {
        let t = i as f64 / self.sample_rate as f64;
        let tau = std::f64::consts::TAU;
        let rise = (t / self.attack).min(1.0);
        let fall = (-6.907_755 * t / self.t60).exp();
        let tone = 0.5 * (tau * self.hz * t).sin() + 0.2 * (tau * self.hz * self.marker * t).sin();
        rise * fall * tone
    }
}

/// Write `tone` as a 16-bit WAV file.
pub fn write_wav(path: &Path, tone: &Tone) {
    let spec = hound::WavSpec {
        channels: tone.channels,
        sample_rate: tone.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let frames = (tone.seconds * tone.sample_rate as f64) as usize;
    for i in 0..frames {
        let s = (tone.at(i) * 32767.0).round() as i16;
        for _ in 0..tone.channels {
            w.write_sample(s).expect("a sample");
        }
    }
    w.finalize().expect("a finished WAV");
}

/// Write `tone` to `path`, in the format its extension names: WAV directly, FLAC, Ogg
/// and MP3 through `sox` (MP3 needs its `libsox-fmt-mp3` handler).
pub fn write_tone(path: &Path, tone: &Tone) {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if extension == "wav" {
        return write_wav(path, tone);
    }
    let sox = require_tool("sox", "sox");
    let wav = path.with_extension("source.wav.tmp");
    write_wav(&wav, tone);
    let out = Command::new(sox)
        .arg("-t")
        .arg("wav")
        .arg(&wav)
        .arg(path)
        .output()
        .expect("sox runs");
    let _ = std::fs::remove_file(&wav);
    assert!(
        out.status.success(),
        "sox could not write {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        if extension == "mp3" {
            " (MP3 needs sox's MP3 handler: apt-get install -y libsox-fmt-mp3)"
        } else {
            ""
        }
    );
}

/// The built-in recipes, copied into `dir` (a folder of recipes replaces them all).
pub fn copy_built_in_recipes(dir: &Path) {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("instruments");
    for name in ["celesta.toml", "clavichord.toml", "violin.toml"] {
        std::fs::copy(built_in.join(name), dir.join(name))
            .unwrap_or_else(|e| panic!("cannot copy {name}: {e}"));
    }
}

/// A sampler recipe `NAME.toml` in `dir`, with its `[sampler]` table's other lines
/// `extra`, and its recordings in `dir/NAME/`, which it returns (created).
pub fn sampler_recipe(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!("name = \"{name}\"\ngain = 0.5\n\n[sampler]\ndir = \"{name}\"\n{extra}");
    std::fs::write(dir.join(format!("{name}.toml")), text).expect("a recipe");
    let samples = dir.join(name);
    std::fs::create_dir_all(&samples).expect("a sample folder");
    samples
}
