//! The ALSA configuration that makes the `default` device a WAV recorder in
//! front of a JACK server.
//!
//! `default` is a `plug` to S16_LE / 48 kHz / stereo, so whatever the program
//! opens (f32 included) reaches the `file` plugin in one format, and the WAV
//! header it writes tells the truth (raw f32 into the file plugin gets a header
//! that lies about the format). The `file` plugin writes each sample as the
//! program hands it to the device and passes it on to a second `plug`, which
//! converts it to JACK's float format for the `jack` plugin. The JACK server
//! pulls one period at a time in real time, so the program is paced as by a
//! sound card. The WAV holds every sample the program played, quantized to 16
//! bits (and resampled to 48 kHz, had the program opened another rate).
//!
//! The file is the whole ALSA configuration (not an overlay on the system's
//! `alsa.conf`), so nothing in `/etc/asound.conf`, `~/.asoundrc` or a
//! PipeWire/PulseAudio ALSA package can reroute `default` on a developer's
//! machine or in CI.

use std::path::{Path, PathBuf};

use super::jack::{JackServer, SAMPLE_RATE};
use super::tempdir::TempDir;
use super::tools::require_alsa_jack_plugin;
use super::wav::{read_wav_lenient, Wav};

/// The variable the ALSA configuration reads the WAV path from. With it unset,
/// opening the device fails ("file is not defined") rather than recording to
/// some shared default path.
pub const WAV_PATH_VAR: &str = "CARILLON_TEST_WAV";

/// Writes `asound.conf` into `dir` and returns the environment a child process
/// needs so that its ALSA `default` device records into `wav` and plays into
/// the JACK server named `jack_server`.
pub fn write_alsa_config(dir: &Path, wav: &Path, jack_server: &str) -> Vec<(String, String)> {
    require_alsa_jack_plugin();
    let conf = dir.join("asound.conf");
    std::fs::write(&conf, alsa_config_text())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    vec![
        ("ALSA_CONFIG_PATH".into(), path_string(&conf)),
        (WAV_PATH_VAR.into(), path_string(wav)),
        ("JACK_DEFAULT_SERVER".into(), jack_server.into()),
        // A client must never start a server of its own: it would not be ours.
        ("JACK_NO_START_SERVER".into(), "1".into()),
    ]
}

fn alsa_config_text() -> String {
    format!(
        r#"# ALSA default device for carillon's tests: record to a WAV, play into JACK.
pcm.!default {{
    type plug
    slave {{ pcm "carillon_wavtap" format S16_LE rate {SAMPLE_RATE} channels 2 }}
    hint {{ show on description "carillon test sink: WAV tap in front of a JACK dummy server" }}
}}
pcm.carillon_wavtap {{
    type file
    slave.pcm "carillon_jack"
    file {{ @func getenv vars [ {WAV_PATH_VAR} ] default "" }}
    format "wav"
}}
pcm.carillon_jack {{
    type plug
    slave.pcm {{
        type jack
        playback_ports {{ 0 system:playback_1 1 system:playback_2 }}
    }}
}}
"#
    )
}

fn path_string(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("test path is not UTF-8: {}", path.display()))
        .to_owned()
}

/// A WAV tap in a scratch directory, wired to one JACK server.
pub struct DeviceTap {
    dir: TempDir,
    wav: PathBuf,
    env: Vec<(String, String)>,
}

impl DeviceTap {
    pub fn new(server: &JackServer) -> DeviceTap {
        let dir = TempDir::new("alsa-tap");
        let wav = dir.path().join("played.wav");
        let env = write_alsa_config(dir.path(), &wav, server.name());
        DeviceTap { dir, wav, env }
    }

    /// Variables to set on the child process (`ALSA_CONFIG_PATH`,
    /// `CARILLON_TEST_WAV`, `JACK_DEFAULT_SERVER`, `JACK_NO_START_SERVER`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Where the device's WAV recording is written.
    pub fn wav_path(&self) -> &Path {
        &self.wav
    }

    /// The scratch directory (kept if the test fails), for the test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads the recording; panics with the path if there is none.
    pub fn read(&self) -> Wav {
        read_wav_lenient(&self.wav).unwrap_or_else(|e| {
            panic!(
                "no usable recording at {} (did the program open the ALSA default device?): {e}",
                self.wav.display()
            )
        })
    }
}
