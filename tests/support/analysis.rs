//! Listening to a recording the way a test can: pitch, note starts, level.

use std::f64::consts::PI;

/// In-place radix-2 FFT (forward, unnormalized): X[k] = Σ x[n]·e^(-2πikn/N).
///
/// Panics unless both slices have the same power-of-two length.
pub fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    assert_eq!(
        n,
        im.len(),
        "fft: real and imaginary parts differ in length"
    );
    assert!(n.is_power_of_two(), "fft: length {n} is not a power of two");
    if n < 2 {
        return;
    }
    let shift = usize::BITS - n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> shift;
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    // Twiddles e^(-2πik/N), computed once rather than by a recurrence whose
    // rounding error grows with N.
    let twiddles: Vec<(f64, f64)> = (0..n / 2)
        .map(|k| {
            let (s, c) = (-2.0 * PI * k as f64 / n as f64).sin_cos();
            (c, s)
        })
        .collect();
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let (wr, wi) = twiddles[k * stride];
                let (a, b) = (start + k, start + k + half);
                let tr = re[b] * wr - im[b] * wi;
                let ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len *= 2;
    }
}

/// The frequency (Hz) of the strongest spectral peak between `lo_hz` and
/// `hi_hz`: Hann window, zero-padded FFT, and a parabola through the log power
/// of the peak bin and its neighbours for the sub-bin position.
///
/// Zero-padding (4× up to 2^20 points) keeps the interpolation bias far below
/// a cent for notes of 100 ms or longer.
pub fn spectrum_peak(samples: &[f32], sample_rate: u32, lo_hz: f64, hi_hz: f64) -> f64 {
    assert!(!samples.is_empty(), "spectrum_peak: no samples");
    let nyquist = f64::from(sample_rate) / 2.0;
    assert!(
        0.0 <= lo_hz && lo_hz < hi_hz && hi_hz <= nyquist,
        "spectrum_peak: band {lo_hz}..{hi_hz} Hz is not within 0..{nyquist} Hz"
    );
    let len = samples.len();
    let base = len.next_power_of_two();
    let n = (base * 4).min(base.max(1 << 20));
    let mut re = vec![0.0; n];
    let mut im = vec![0.0; n];
    for (i, (&s, slot)) in samples.iter().zip(re.iter_mut()).enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * PI * i as f64 / len as f64).cos();
        *slot = f64::from(s) * hann;
    }
    fft(&mut re, &mut im);
    let bin_hz = f64::from(sample_rate) / n as f64;
    let log_power = |k: usize| (re[k] * re[k] + im[k] * im[k] + 1e-300).ln();
    let lo_bin = ((lo_hz / bin_hz).ceil() as usize).max(1);
    let hi_bin = ((hi_hz / bin_hz).floor() as usize).min(n / 2 - 1);
    assert!(
        lo_bin <= hi_bin,
        "spectrum_peak: band {lo_hz}..{hi_hz} Hz holds no FFT bin"
    );
    let peak = (lo_bin..=hi_bin)
        .max_by(|&a, &b| log_power(a).total_cmp(&log_power(b)))
        .unwrap_or(lo_bin);
    let (a, b, c) = (log_power(peak - 1), log_power(peak), log_power(peak + 1));
    let denominator = a - 2.0 * b + c;
    let offset = if denominator < 0.0 {
        (0.5 * (a - c) / denominator).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    (peak as f64 + offset) * bin_hz
}

/// Sample indices where notes start, found from short-window energy rises in
/// each frequency bin, so that a new note is heard over the ringing of earlier
/// ones (reverb, long decays) as long as it is at another pitch.
///
/// Every 5 ms, the power spectrum of the last 21 ms (1024 samples at 48 kHz,
/// Hann window) is compared bin by bin with the highest power that bin had in
/// the windows ending 25 to 120 ms earlier (up to the start of the current
/// one). Power that rose 6 dB above that is new. A note starts where new power
/// is at least 15% of the window's power, the window is louder than the mean of
/// those earlier windows, and it is within 45 dB of the loudest
/// window. The onset is then moved back over the windows (up to 20 ms) where
/// the new share was already building. After an onset the detector waits for
/// the share to fall below 5% (the attack is over) before it accepts another,
/// and onsets are at least 40 ms apart. The bins that held at least 1% of a
/// window's power while the attack was heard are that note's for 120 ms more:
/// power rising in them is not a new note, since a note's partials go on
/// growing past its attack (a bell's fundamental out of its sidebands, a beat
/// with a ringing neighbour a tone away reaching its peak).
///
/// What it is robust to: decaying tails, including noise-like reverb up to
/// about -10 dB under the note (fluctuations rarely beat the recent maximum by
/// 6 dB); beating and vibrato of sustained tones; a sound cut short at a
/// steady or falling level (its splatter is new, but the window gets quieter;
/// an abrupt cut near a peak is a click, and may count). Limits: a note within
/// ~150 ms of one at its pitch or a tone from it (their main lobes overlap), a
/// new note under many louder ringing ones (with
/// 0.8 s decays, notes 200 ms apart are all found; with 2 s decays, 300 ms),
/// and tails as loud as the note. Indices are within 5 ms of a sharp attack
/// over silence, up to ~20 ms late over loud ringing, later for a slow swell.
pub fn onsets(samples: &[f32], sample_rate: u32) -> Vec<usize> {
    const RISE_DB: f64 = 6.0;
    const ONSET_SHARE: f64 = 0.15;
    const REARM_SHARE: f64 = 0.05;
    const GATE_DB: f64 = 45.0;
    // Baseline: the windows that end 25..120 ms before the current one ends,
    // i.e. before the current window starts.
    const BASELINE: std::ops::Range<usize> = 5..25;
    // How far (in 5 ms hops) an onset may be moved back to where it began.
    const MAX_BACKTRACK: usize = 4;
    // A bin holding at least this share of a window's power while a note's
    // attack is being heard is that note's for the next 120 ms (24 hops).
    const CLAIM_SHARE: f64 = 0.01;
    const CLAIM_WINDOWS: usize = 24;
    // Per-bin power below this is silence: keeps ratios finite.
    const FLOOR: f64 = 1e-12;

    let hop = (sample_rate as usize / 200).max(1);
    let window = (sample_rate as usize / 50).next_power_of_two();
    if samples.len() < window {
        return Vec::new();
    }
    let hann: Vec<f64> = (0..window)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / window as f64).cos())
        .collect();
    // spectra[t]: power per bin of the window ending at (t + 1) * hop.
    let first = window.div_ceil(hop) - 1;
    let spectra: Vec<Vec<f64>> = (first..samples.len() / hop)
        .map(|t| {
            let end = (t + 1) * hop;
            let mut re: Vec<f64> = samples[end - window..end]
                .iter()
                .zip(&hann)
                .map(|(&s, &w)| f64::from(s) * w)
                .collect();
            let mut im = vec![0.0; window];
            fft(&mut re, &mut im);
            (1..window / 2)
                .map(|k| re[k] * re[k] + im[k] * im[k])
                .collect()
        })
        .collect();
    let energy: Vec<f64> = spectra.iter().map(|s| s.iter().sum()).collect();
    let loudest = energy.iter().copied().fold(0.0, f64::max);
    let gate = loudest * 10f64.powf(-GATE_DB / 10.0);
    let rise = 10f64.powf(RISE_DB / 10.0);
    let min_gap = (sample_rate as usize / 25).max(1);
    let earlier = |i: usize| i.saturating_sub(BASELINE.end)..i.saturating_sub(BASELINE.start);

    // Each window's new power per bin, and the share of its energy that is new.
    let new_power: Vec<Vec<f64>> = spectra
        .iter()
        .enumerate()
        .map(|(i, spectrum)| {
            let earlier = &spectra[earlier(i)];
            spectrum
                .iter()
                .enumerate()
                .map(|(k, &power)| {
                    let baseline = earlier.iter().map(|s| s[k]).fold(0.0, f64::max);
                    if power + FLOOR >= rise * (baseline + FLOOR) {
                        power - baseline
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let shares: Vec<f64> = new_power
        .iter()
        .zip(&energy)
        .map(|(new, &energy)| new.iter().sum::<f64>() / (energy + FLOOR))
        .collect();

    // The bins a found note's attack brought, and the window until which they
    // are its own: a note's partials go on growing after its attack (a bell's
    // fundamental out of its fading sidebands, a beat with a neighbouring note
    // reaching its peak) past what the baseline saw of it.
    let mut claimed_until = vec![0usize; window / 2 - 1];
    let claim = |j: usize, claimed_until: &mut [usize]| {
        for (k, &power) in new_power[j].iter().enumerate() {
            if power >= CLAIM_SHARE * energy[j] {
                claimed_until[k] = claimed_until[k].max(j + CLAIM_WINDOWS);
            }
        }
    };

    let mut found: Vec<usize> = Vec::new();
    let mut armed = true;
    for (i, &share) in shares.iter().enumerate() {
        if !armed {
            claim(i, &mut claimed_until);
            armed = share < REARM_SHARE;
            continue;
        }
        // Only power in bins no recent note claimed is a new note's.
        let unclaimed: f64 = new_power[i]
            .iter()
            .zip(&claimed_until)
            .filter(|&(_, &until)| i >= until)
            .map(|(&power, _)| power)
            .sum();
        let share = unclaimed / (energy[i] + FLOOR);
        // A note adds energy; a sound cut short splatters over many bins,
        // but the window as a whole gets quieter.
        let before = &energy[earlier(i)];
        let louder =
            before.is_empty() || energy[i] * before.len() as f64 > before.iter().sum::<f64>();
        if share < ONSET_SHARE || !louder || energy[i] < gate || energy[i] < FLOOR {
            continue;
        }
        // Over loud ringing the share builds up over a few windows before it
        // crosses the threshold: the note started where it began to build.
        let mut start = i;
        while start > i.saturating_sub(MAX_BACKTRACK) && shares[start - 1] >= REARM_SHARE {
            start -= 1;
        }
        let at = (first + start) * hop;
        if found.last().is_none_or(|&last| at >= last + min_gap) {
            found.push(at);
            armed = false;
            for j in start..=i {
                claim(j, &mut claimed_until);
            }
        }
    }
    found
}

/// The interval from `reference` to `f` in cents (100 per 12-TET semitone).
pub fn cents(f: f64, reference: f64) -> f64 {
    1200.0 * (f / reference).log2()
}

/// The nearest note of C♯ major pentatonic (C♯ D♯ F♯ G♯ A♯; 12-TET with
/// A4 = 440 Hz) to `f`, named like "C#4", and how many cents `f` is above it
/// (negative: below).
pub fn nearest_csharp_pentatonic(f: f64) -> (String, f64) {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    const SCALE: [i64; 5] = [1, 3, 6, 8, 10];
    assert!(
        f.is_finite() && f > 0.0,
        "nearest_csharp_pentatonic: {f} Hz is not a frequency"
    );
    let midi = 69.0 + 12.0 * (f / 440.0).log2();
    let rounded = midi.round() as i64;
    // The scale's widest step is 3 semitones, so a scale note lies within 2.
    let note = (rounded - 2..=rounded + 2)
        .filter(|n| SCALE.contains(&n.rem_euclid(12)))
        .min_by(|a, b| {
            (midi - *a as f64)
                .abs()
                .total_cmp(&(midi - *b as f64).abs())
        })
        .unwrap_or(rounded);
    let name = format!(
        "{}{}",
        NAMES[note.rem_euclid(12) as usize],
        note.div_euclid(12) - 1
    );
    (name, (midi - note as f64) * 100.0)
}

/// The largest absolute sample value.
pub fn peak_abs(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0, |peak, &s| peak.max(s.abs()))
}

/// How many samples sit at 16-bit full scale (|x| ≥ 32767/32768): clipped, or
/// as good as.
pub fn count_clipped(samples: &[f32]) -> usize {
    const FULL_SCALE: f32 = 32767.0 / 32768.0;
    samples.iter().filter(|s| s.abs() >= FULL_SCALE).count()
}

/// Root mean square level (0 for no samples).
pub fn rms(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}
