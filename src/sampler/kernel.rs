//! Band-limited interpolation: reading a recording at any fractional position, for
//! playing it faster or slower than it was recorded (transposing it).
//!
//! A windowed sinc of 16 taps, tabulated at 256 fractional positions (phases) and
//! interpolated linearly between them. Read faster than recorded, a recording's highest
//! partials would pass the playback Nyquist and fold back as inharmonic whistles, so
//! the sinc is narrowed by the transposition: one table per semitone up, each with its
//! cut-off under the Nyquist of the transposed sound. Sixteen taps make a wide
//! transition band: what would fold back far (into the hearing's middle) is stopped by
//! 60 dB or more, while a little of what lies just over the cut-off folds back into the
//! top octave, attenuated. Built once per sample set, shared
//! by all its voices; reading a sample is a 16-tap dot product, with no allocation and
//! no table lookups past the two phase rows.

/// Taps either side of the reading position.
pub const HALF: usize = 8;
/// Taps in all: samples `floor(pos) - 7 ..= floor(pos) + 8`.
pub const TAPS: usize = 2 * HALF;
/// Tabulated fractional positions per sample.
const PHASES: usize = 256;
/// The cut-off of an untransposed read, as a share of Nyquist: the sinc's transition
/// band (about a tenth of Nyquist with 16 taps) lies above it, not across it.
const PASSBAND: f64 = 0.9;
/// The Kaiser window's shape: with 16 taps it keeps the stopband about 70 dB down.
const KAISER_BETA: f64 = 7.0;

/// One sinc of a given cut-off, at every tabulated phase.
#[derive(Debug)]
pub struct Kernel {
    /// `(PHASES + 1)` rows of `TAPS` coefficients: row `p` reads at fraction `p / PHASES`
    /// (the last row, fraction 1, lets the interpolation between rows need no wrap).
    rows: Box<[[f32; TAPS]]>,
}

impl Kernel {
    /// A sinc cutting off at `cutoff` (a share of the recording's Nyquist, 0..=1).
    pub fn new(cutoff: f64) -> Kernel {
        let rows = (0..=PHASES)
            .map(|p| {
                let frac = p as f64 / PHASES as f64;
                let mut row = [0.0f64; TAPS];
                for (k, c) in row.iter_mut().enumerate() {
                    // Tap k reads sample floor(pos) - (HALF - 1) + k, this far from pos.
                    let x = k as f64 - (HALF - 1) as f64 - frac;
                    *c = cutoff * sinc(cutoff * x) * kaiser(x / HALF as f64);
                }
                // Each row sums to exactly 1: a constant reads back as itself at every
                // phase, so a tone does not pick up a ripple at the phase rate.
                let sum: f64 = row.iter().sum();
                row.map(|c| (c / sum) as f32)
            })
            .collect();
        Kernel { rows }
    }

    /// The value at `frac` (0..1) past `taps[HALF - 1]`, from the 16 samples around it.
    #[inline(always)]
    pub fn read(&self, taps: &[f32; TAPS], frac: f64) -> f32 {
        let at = frac * PHASES as f64;
        let p = (at as usize).min(PHASES - 1);
        let t = (at - p as f64) as f32;
        let (a, b) = (&self.rows[p], &self.rows[p + 1]);
        // Products side by side, then summed as a tree: one running sum would make each
        // addition wait for the one before (floats are not reassociated for us), four
        // times slower than the arithmetic itself.
        let products: [f32; TAPS] = std::array::from_fn(|k| (a[k] + (b[k] - a[k]) * t) * taps[k]);
        let eights: [f32; 8] = std::array::from_fn(|k| products[k] + products[k + 8]);
        let fours: [f32; 4] = std::array::from_fn(|k| eights[k] + eights[k + 4]);
        (fours[0] + fours[2]) + (fours[1] + fours[3])
    }
}

/// The kernels of a sample set: `by_semitones_up[n]` reads a recording transposed up
/// by at most `n` semitones without aliasing; transposing down uses the first.
#[derive(Debug)]
pub struct Kernels {
    by_semitones_up: Vec<Kernel>,
}

impl Kernels {
    /// Kernels for transpositions up to `max_semitones_up`.
    pub fn new(max_semitones_up: u32) -> Kernels {
        let by_semitones_up = (0..=max_semitones_up)
            .map(|n| Kernel::new(PASSBAND * (-(n as f64) / 12.0).exp2()))
            .collect();
        Kernels { by_semitones_up }
    }

    /// The kernel for reading `step` recorded samples per played sample.
    pub fn for_step(&self, step: f64) -> usize {
        let up = (12.0 * step.log2()).ceil().max(0.0) as usize;
        up.min(self.by_semitones_up.len() - 1)
    }

    pub fn get(&self, index: usize) -> &Kernel {
        &self.by_semitones_up[index]
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The Kaiser window at `x` in -1..=1 (zero outside).
fn kaiser(x: f64) -> f64 {
    if x.abs() >= 1.0 {
        return 0.0;
    }
    bessel_i0(KAISER_BETA * (1.0 - x * x).sqrt()) / bessel_i0(KAISER_BETA)
}

/// The modified Bessel function of the first kind, order 0, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, half) = (1.0, 1.0, x / 2.0);
    for k in 1..50 {
        term *= (half / k as f64).powi(2);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sine of `cycles_per_sample` read at fractional positions through `kernel`:
    /// the worst error against the sine itself.
    fn worst_error(kernel: &Kernel, cycles_per_sample: f64) -> f64 {
        let at = |i: f64| (std::f64::consts::TAU * cycles_per_sample * i).sin();
        let mut worst: f64 = 0.0;
        for step in 0..1000 {
            let pos = 100.0 + step as f64 * 0.0137;
            let base = pos.floor();
            let taps: [f32; TAPS] =
                std::array::from_fn(|k| at(base - (HALF - 1) as f64 + k as f64) as f32);
            let got = kernel.read(&taps, pos - base) as f64;
            worst = worst.max((got - at(pos)).abs());
        }
        worst
    }

    #[test]
    fn it_reads_a_tone_between_samples_to_about_minus_70_db() {
        let kernel = Kernels::new(0);
        // Up to 10 kHz at 48 kHz: well inside the passband.
        for hz in [100.0, 1000.0, 5000.0, 10_000.0] {
            let err = worst_error(kernel.get(0), hz / 48_000.0);
            assert!(err < 10f64.powf(-60.0 / 20.0), "{hz} Hz: {err}");
        }
    }

    /// The loudest output of `kernel` reading, every other sample (an octave up), a
    /// unit sine of `cycles_per_sample`.
    fn peak_read_an_octave_up(kernel: &Kernel, cycles_per_sample: f64) -> f64 {
        let at = |i: f64| (std::f64::consts::TAU * cycles_per_sample * i).sin();
        (0..500)
            .map(|n| {
                let pos = 50.0 + n as f64 * 2.0 + 0.37;
                let base = pos.floor();
                let taps: [f32; TAPS] =
                    std::array::from_fn(|k| at(base - (HALF - 1) as f64 + k as f64) as f32);
                kernel.read(&taps, pos - base).abs() as f64
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn a_narrowed_kernel_stops_what_would_fold_back_far() {
        // Read twice as fast, a partial at 0.42 of the recording's rate lands at 0.84 of
        // the playback rate, and would fold back to 0.16 (7.7 kHz at 48 kHz): the kernel
        // for an octave up must stop it.
        let kernels = Kernels::new(12);
        let octave = kernels.get(kernels.for_step(2.0));
        let peak = peak_read_an_octave_up(octave, 0.42);
        assert!(peak < 10f64.powf(-60.0 / 20.0), "{peak}");
        // The untransposed kernel lets much of it through: narrowing is what stops it.
        assert!(peak_read_an_octave_up(kernels.get(0), 0.42) > 0.1);
        // What does pass the octave kernel's transition band folds back high: from 0.3,
        // to 0.4 of the playback rate (19 kHz), and 24 dB down.
        assert!(peak_read_an_octave_up(octave, 0.3) < 10f64.powf(-20.0 / 20.0));
    }

    #[test]
    fn the_kernel_for_a_step_covers_its_transposition() {
        let k = Kernels::new(12);
        assert_eq!(k.for_step(1.0), 0);
        assert_eq!(k.for_step(0.5), 0);
        assert_eq!(k.for_step((1.0f64 / 12.0).exp2() * 1.0001), 2);
        assert_eq!(k.for_step(4.0), 12);
    }
}
