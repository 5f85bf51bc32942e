//! The DSP's hot loops in two builds: one for any x86-64 CPU, one for CPUs with AVX2
//! and FMA, chosen at run time.
//!
//! carillon is compiled for baseline x86-64, so that one binary runs on any such
//! machine; there its loops vectorize four `f32` (two `f64`) to an instruction. Nearly
//! every x86-64 CPU since 2013 has AVX2, twice as wide, but the small Atom- and
//! Celeron-class machines a venue might leave it on often do not, and a binary built
//! for AVX2 would stop there on an illegal instruction. So the few loops where the time
//! goes (the célesta's voices, the mix, the reverb, the limiter) are compiled twice by
//! `dispatch_by_width!` (below), and each part takes the wider copy when the CPU has it.
//!
//! Both copies compute the same values to the bit: Rust neither fuses a multiply with
//! an add nor reorders a sum unless the code says so, so a wider vector changes how
//! many values an instruction carries and nothing else. The tests compare the two.

/// Which build of the hot loops a part runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// Baseline x86-64 (SSE2), or any other architecture.
    Baseline,
    /// x86-64 with AVX2 and FMA.
    Avx2,
}

impl Width {
    /// The widest this CPU runs. Cheap (the standard library asks the CPU once and
    /// keeps the answer), but parts ask it when they are built, not per block.
    pub fn detect() -> Width {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Width::Avx2;
        }
        Width::Baseline
    }

    /// This width if the CPU runs it, the baseline otherwise: what a part asked to
    /// run at a given width (by a test or a benchmark) runs at.
    pub fn supported(self) -> Width {
        if self == Width::Avx2 {
            Width::detect()
        } else {
            Width::Baseline
        }
    }
}

/// A method `$name(&mut self, args…)` that runs `$body` (an `#[inline(always)]`
/// method with the same arguments) compiled for AVX2 and FMA when `self.width` is
/// [`Width::Avx2`], and as built otherwise. `$wide` names the AVX2 copy.
macro_rules! dispatch_by_width {
    ($(#[$meta:meta])* $vis:vis fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) => $body:ident, $wide:ident) => {
        $(#[$meta])*
        $vis fn $name(&mut self $(, $arg: $ty)*) {
            #[cfg(target_arch = "x86_64")]
            if self.width == $crate::simd::Width::Avx2 {
                // SAFETY: `width` is `Avx2` only where `Width::detect` found AVX2 and
                // FMA on this CPU: parts set it from `detect` or `supported`.
                return unsafe { self.$wide($($arg),*) };
            }
            // Elsewhere there is one build, and the width goes unread.
            #[cfg(not(target_arch = "x86_64"))]
            let _ = self.width;
            self.$body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $wide(&mut self $(, $arg: $ty)*) {
            self.$body($($arg),*)
        }
    };
}
pub(crate) use dispatch_by_width;

#[cfg(test)]
pub(crate) mod tests {
    use super::Width;

    /// The wider build, for tests that compare it with the baseline: they need a CPU
    /// that has it, and say so instead of comparing the baseline with itself.
    pub fn wide_for_test() -> Width {
        let width = Width::detect();
        assert_eq!(
            width,
            Width::Avx2,
            "this test compares the AVX2 build of a DSP loop with the baseline one, and needs a CPU with AVX2 and FMA"
        );
        width
    }

    /// How many samples of two renders differ in any bit.
    pub fn samples_differing(a: &[f32], b: &[f32]) -> usize {
        assert_eq!(a.len(), b.len(), "renders of different lengths");
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
    }
}
