//! Test harness for driving the real `carillon` binary through the real audio
//! device path, in real time, while recording exactly what it played.
//!
//! The path under test is cpal → ALSA `default` → `plug` (S16_LE, 48 kHz,
//! stereo) → `file` plugin (writes every sample to a WAV file) → `plug` →
//! `jack` plugin → a JACK server running the `dummy` driver. The dummy driver
//! has no hardware but keeps a real-time clock, so the program is paced exactly
//! as it would be by a sound card, and the file plugin records the samples the
//! program handed to the device. Each test starts its own JACK server under a
//! unique name, so tests run in parallel without hearing each other.
//!
//! Pieces:
//! - [`jack`]: a private JACK dummy server per test ([`JackServer`]).
//! - [`alsa`]: the ALSA configuration that routes `default` through the WAV tap
//!   into that server ([`DeviceTap`], [`write_alsa_config`]).
//! - [`process`]: spawning the binary with a timeout guard, and its `summary:`
//!   line ([`run_carillon`], [`RunOutput`], [`Summary`]).
//! - [`procfs`]: a running process's CPU time, memory and threads' scheduling, from `/proc`.
//! - [`wav`]: a WAV reader that copes with headers left unfinished by a killed
//!   writer ([`read_wav_lenient`]).
//! - [`bench`]: what `bench latency --json` measured ([`latency_row`]).
//! - [`analysis`]: FFT, pitch, onsets and level checks on recorded samples.
//! - [`ws`]: a scripted wikimon websocket server ([`WsServer`], [`Step`]).
//! - [`server`]: the thread, runtime and shutdown the websocket and file servers run on.
//! - [`score`]: what carillon's score says a message should play ([`expected`]).
//! - [`wikimon`]: wikimon-format messages ([`wikimon_edit`], [`wikimon_newuser`]).
//! - [`corpus`]: paths into `../shared/corpus` ([`corpus_path`]).
//! - [`net`]: free ports on 127.0.0.1 and waiting for a server ([`free_port`]).
//! - [`tools`]: checks that the system tools the harness needs are installed.
//! - [`samples`]: sample sets of known pitch in WAV, FLAC, Ogg and MP3, for samplers.

// Each integration test binary compiles this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod alsa;
pub mod analysis;
pub mod bench;
pub mod browser;
pub mod corpus;
pub mod files;
pub mod jack;
pub mod net;
pub mod process;
pub mod procfs;
pub mod samples;
pub mod score;
pub mod server;
pub mod sse;
pub mod tempdir;
pub mod tools;
pub mod wav;
pub mod wikimon;
pub mod ws;

pub use alsa::{write_alsa_config, DeviceTap};
pub use analysis::{
    cents, count_clipped, fft, nearest_csharp_pentatonic, onsets, peak_abs, rms, spectrum_peak,
};
pub use bench::{assert_callbacks_every, latency_row};
pub use corpus::{corpus_path, corpus_text};
pub use jack::{JackServer, SAMPLE_RATE};
pub use net::{free_port, wait_for_port};
pub use process::{
    play_with_display, run_carillon, run_command, spawn_carillon, RunOutput, Summary,
};
pub use score::expected;
pub use tempdir::TempDir;
pub use tools::require_tool;
pub use wav::{read_wav_lenient, Wav};
pub use wikimon::{wikimon_edit, wikimon_edit_value, wikimon_newuser, wikimon_newuser_value};
pub use ws::{Step, WsServer};
