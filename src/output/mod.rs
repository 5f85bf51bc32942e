//! Outputs: what drives the engine's audio half.
//!
//! The audio device pulls frames through its callback ([`device`]), and a
//! [`supervisor`] keeps it open through losses and returns; offline sinks are
//! pushed frames by the renderer and implement [`FrameSink`]: a WAV file ([`wav`]) or
//! nothing at all ([`null`], for benchmarks). The engine does not know which one runs it.

pub mod device;
pub mod null;
pub mod realtime;
pub mod supervisor;
pub mod wav;

/// A destination for rendered, interleaved stereo frames, written as fast as the CPU
/// allows.
pub trait FrameSink {
    fn write(&mut self, interleaved: &[f32]) -> std::io::Result<()>;
    /// Flush and close; the sink must not be written to afterwards.
    fn finish(&mut self) -> std::io::Result<()>;
}
