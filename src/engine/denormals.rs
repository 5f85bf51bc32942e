//! Flush-to-zero for the audio thread.
//!
//! A reverb tail or a filter's state decaying towards silence passes through subnormal
//! numbers, and on x86 every operation on one can cost a hundred times a normal one:
//! the engine would spend most when nothing plays. Flushing them to zero (FTZ) and
//! treating subnormal inputs as zero (DAZ) changes nothing audible — they lie 700 dB
//! below full scale — and keeps silence cheap. The floating-point control register
//! belongs to the thread, so [`FlushToZero`] sets it for the span of one render call
//! and puts back what it found: the thread that renders (a device callback, the offline
//! renderer, a benchmark) keeps its own settings outside it.

/// While alive, subnormal floats on this thread are flushed to zero; dropping it
/// restores the previous mode. Two instructions each way: cheap enough for every
/// audio callback.
pub struct FlushToZero {
    previous: Option<u64>,
}

impl FlushToZero {
    /// Flush subnormals on this thread until the guard is dropped; `enable = false`
    /// leaves the thread as it is (to measure what flushing saves).
    #[inline]
    pub fn new(enable: bool) -> FlushToZero {
        let previous = if enable {
            let previous = imp::read();
            imp::write(previous | imp::FLUSH_BITS);
            Some(previous)
        } else {
            None
        };
        FlushToZero { previous }
    }

    /// Whether this platform can flush subnormals (x86-64 and aarch64 can).
    pub fn supported() -> bool {
        imp::FLUSH_BITS != 0
    }
}

impl Drop for FlushToZero {
    #[inline]
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            imp::write(previous);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH_BITS: u64 = (1 << 15) | (1 << 6);

    #[inline]
    pub fn read() -> u64 {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the SSE control/status register into `csr`, which
        // lives across the instruction; SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        }
        u64::from(csr)
    }

    #[inline]
    pub fn write(value: u64) {
        let csr = value as u32;
        // SAFETY: ldmxcsr loads a value read by `read` with only the FTZ and DAZ mode
        // bits changed; both are defined on every x86-64 processor.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// FPCR's FZ bit (24): subnormal inputs and results are flushed to zero.
    pub const FLUSH_BITS: u64 = 1 << 24;

    #[inline]
    pub fn read() -> u64 {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effect.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        fpcr
    }

    #[inline]
    pub fn write(value: u64) {
        // SAFETY: writes back a value read by `read` with only the FZ mode bit changed.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) value, options(nomem, nostack, preserves_flags));
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    pub const FLUSH_BITS: u64 = 0;

    pub fn read() -> u64 {
        0
    }

    pub fn write(_: u64) {}
}

#[cfg(test)]
mod tests {
    use super::FlushToZero;

    /// Halve a normal float until it would turn subnormal: with flushing, it becomes 0.
    fn smallest_result() -> f32 {
        let mut x = std::hint::black_box(f32::MIN_POSITIVE);
        x = std::hint::black_box(x) * std::hint::black_box(0.5);
        x
    }

    #[test]
    fn subnormals_flush_to_zero_inside_the_guard_only() {
        assert!(FlushToZero::supported(), "this platform should flush");
        assert!(smallest_result() > 0.0, "a plain thread keeps subnormals");
        {
            let _guard = FlushToZero::new(true);
            assert_eq!(smallest_result(), 0.0, "flushed inside the guard");
        }
        assert!(smallest_result() > 0.0, "the previous mode is back");
        let _off = FlushToZero::new(false);
        assert!(smallest_result() > 0.0, "a disabled guard changes nothing");
    }
}
