//! A sink that discards frames: the engine's cost alone, for benchmarks.

use super::FrameSink;

#[derive(Debug, Default)]
pub struct NullSink {
    pub frames: u64,
}

impl FrameSink for NullSink {
    fn write(&mut self, interleaved: &[f32]) -> std::io::Result<()> {
        self.frames += interleaved.len() as u64 / 2;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
