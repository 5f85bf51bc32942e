//! The master bus's stereo reverb: an 8-line feedback delay network.
//!
//! Two allpass diffusers per channel smear each note's attack; eight delay lines of
//! mutually prime lengths, mixed through a Hadamard matrix and damped by a one-pole
//! low-pass each, ring out with a decay time set in seconds. It costs a few dozen
//! operations per frame — a fraction of a 32-line network's — which matters for a
//! service that plays for days on small machines. All memory is allocated in `new`.

use crate::simd::{dispatch_by_width, Width};

/// Line lengths in milliseconds at the reference room size: mutually prime sample
/// counts at 48 kHz, spread so that the echo density builds quickly without flutter.
const LINES_MS: [f64; 8] = [29.7, 37.1, 41.1, 43.7, 53.9, 61.3, 67.9, 73.1];
const REFERENCE_ROOM: f64 = 18.0;
/// Diffuser delays (ms) and gain, left and right slightly different for width.
const DIFFUSERS_MS: [[f64; 2]; 2] = [[4.77, 3.59], [5.13, 3.71]];
const DIFFUSION: f32 = 0.62;

struct Delay {
    buffer: Vec<f32>,
    pos: usize,
}

/// The most frames [`Reverb::process`] handles in one pass (the engine's block): the
/// length of its buffers on the stack.
const SPAN: usize = 64;

impl Delay {
    fn new(frames: usize) -> Self {
        Self {
            buffer: vec![0.0; frames.max(1)],
            pos: 0,
        }
    }

    /// Where the next `n` frames (at most the delay's length) lie in the buffer: the
    /// run from `pos` towards the end, then the run from the start after the wrap.
    #[inline(always)]
    fn runs(&self, n: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        debug_assert!(n <= self.buffer.len());
        let first = n.min(self.buffer.len() - self.pos);
        (self.pos..self.pos + first, 0..n - first)
    }

    #[inline(always)]
    fn advance(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buffer.len() {
            self.pos -= self.buffer.len();
        }
    }

    /// Schroeder allpass through this delay, in place, over at most its length.
    #[inline(always)]
    fn allpass_span(&mut self, x: &mut [f32], g: f32) {
        let (a, b) = self.runs(x.len());
        let (xa, xb) = x.split_at_mut(a.len());
        for (buffer, x) in [(a, xa), (b, xb)] {
            for (slot, x) in self.buffer[buffer].iter_mut().zip(x.iter_mut()) {
                let delayed = *slot;
                let v = *x + g * delayed;
                *slot = v;
                *x = delayed - g * v;
            }
        }
        self.advance(x.len());
    }

    /// The next `rows.len()` samples (what was written a length ago) into column
    /// `line` of `rows`.
    #[inline(always)]
    fn read_span(&self, rows: &mut [[f32; 8]], line: usize) {
        let (a, b) = self.runs(rows.len());
        let (ra, rb) = rows.split_at_mut(a.len());
        for (buffer, rows) in [(a, ra), (b, rb)] {
            for (row, &y) in rows.iter_mut().zip(&self.buffer[buffer]) {
                row[line] = y;
            }
        }
    }

    /// Column `line` of `rows` written where [`Delay::read_span`] read, and the delay
    /// moved past it.
    #[inline(always)]
    fn write_span(&mut self, rows: &[[f32; 8]], line: usize) {
        let (a, b) = self.runs(rows.len());
        let (ra, rb) = rows.split_at(a.len());
        for (buffer, rows) in [(a, ra), (b, rb)] {
            for (slot, row) in self.buffer[buffer].iter_mut().zip(rows) {
                *slot = row[line];
            }
        }
        self.advance(rows.len());
    }
}

pub struct Reverb {
    lines: [Delay; 8],
    gains: [f32; 8],
    lowpass: [f32; 8],
    damping: f32,
    diffusers: [[Delay; 2]; 2],
    wet: f32,
    /// Frames processed in one pass: [`SPAN`], or the shortest delay if shorter.
    span: usize,
    width: Width,
}

fn frames(ms: f64, sample_rate: f64) -> usize {
    (ms / 1000.0 * sample_rate).round() as usize
}

impl Reverb {
    /// `room_size` in metres (18 is a mid-sized hall), `time` to -60 dB in seconds,
    /// `damping` 0..1 (how much faster the highs die), `wet` the level of the reverb.
    pub fn new(room_size: f64, time: f64, damping: f64, wet: f32, sample_rate: f64) -> Self {
        let scale = (room_size / REFERENCE_ROOM).clamp(0.2, 4.0);
        let time = time.max(0.05);
        let lines = LINES_MS.map(|ms| Delay::new(frames(ms * scale, sample_rate)));
        // Each line loses 60 dB over `time`, whatever its length.
        let gains = std::array::from_fn(|i| {
            let seconds = lines[i].buffer.len() as f64 / sample_rate;
            10f64.powf(-3.0 * seconds / time) as f32
        });
        let diffusers = DIFFUSERS_MS.map(|pair| pair.map(|ms| Delay::new(frames(ms, sample_rate))));
        let shortest = lines
            .iter()
            .chain(diffusers.iter().flatten())
            .map(|d| d.buffer.len())
            .min()
            .unwrap_or(1);
        Self {
            lines,
            gains,
            lowpass: [0.0; 8],
            damping: (damping.clamp(0.0, 1.0) * 0.7) as f32,
            diffusers,
            wet,
            span: shortest.min(SPAN),
            width: Width::detect(),
        }
    }

    /// The longest a sound can take to come out after it went in: the longest line
    /// and both diffusers. After that many frames of silent input, an output that
    /// stayed inaudible throughout means nothing audible is left inside.
    pub fn memory_frames(&self) -> usize {
        let longest = self.lines.iter().map(|l| l.buffer.len()).max().unwrap_or(0);
        let diffusers: usize = self.diffusers[0].iter().map(|d| d.buffer.len()).sum();
        longest + diffusers
    }

    /// Run the hot loops at `width` if the CPU has it (the baseline otherwise): for
    /// tests and benchmarks that compare the two builds.
    pub fn set_width(&mut self, width: Width) {
        self.width = width.supported();
    }

    /// Silence every line and filter: the state of a reverb that has heard nothing.
    pub fn reset(&mut self) {
        for line in self
            .lines
            .iter_mut()
            .chain(self.diffusers.iter_mut().flatten())
        {
            line.buffer.fill(0.0);
        }
        self.lowpass = [0.0; 8];
    }

    dispatch_by_width!(
    /// Add the reverb of `left`/`right` to them, in place.
    ///
    /// Frame by frame, each of the twelve delays would be read, written and wrapped
    /// in turn. But no delay is shorter than `span`, so within a span no sample reads
    /// what an earlier one of the span wrote: each delay can be read for the whole
    /// span, and written after it, in at most two straight runs (either side of its
    /// wrap), with no bounds check or wrap test per sample. What is left per frame,
    /// the filters and the mix, runs across the eight lines at once.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) => process_body, process_wide);

    #[inline(always)]
    fn process_body(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let mut from = 0;
        while from < n {
            let to = (from + self.span).min(n);
            self.process_span(&mut left[from..to], &mut right[from..to]);
            from = to;
        }
    }

    /// [`Reverb::process`] on at most `self.span` frames.
    #[inline(always)]
    fn process_span(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len();
        let mut inl = [0.0f32; SPAN];
        let mut inr = [0.0f32; SPAN];
        let (inl, inr) = (&mut inl[..n], &mut inr[..n]);
        inl.copy_from_slice(left);
        inr.copy_from_slice(&right[..n]);
        for stage in 0..2 {
            self.diffusers[0][stage].allpass_span(inl, DIFFUSION);
            self.diffusers[1][stage].allpass_span(inr, DIFFUSION);
        }
        // Frame-major: row `k` holds what the eight lines give out at frame `k`, and
        // then what goes into them.
        let mut rows = [[0.0f32; 8]; SPAN];
        let rows = &mut rows[..n];
        for (i, line) in self.lines.iter().enumerate() {
            line.read_span(rows, i);
        }
        let d = self.damping;
        let gains = self.gains;
        let mut lowpass = self.lowpass;
        for ((row, (l, r)), (&inl, &inr)) in rows
            .iter_mut()
            .zip(left.iter_mut().zip(right.iter_mut()))
            .zip(inl.iter().zip(inr.iter()))
        {
            let mut x = [0.0f32; 8];
            for i in 0..8 {
                // Damped, decaying output of each line.
                let y = row[i];
                lowpass[i] = y + d * (lowpass[i] - y);
                x[i] = lowpass[i] * gains[i];
            }
            let out_l = x[0] - x[2] + x[4] - x[6];
            let out_r = x[1] - x[3] + x[5] - x[7];
            hadamard8(&mut x);
            for i in 0..8 {
                let input = if i % 2 == 0 { inl } else { inr };
                row[i] = x[i] * 0.353_553_38 + input * 0.5;
            }
            *l += self.wet * out_l;
            *r += self.wet * out_r;
        }
        self.lowpass = lowpass;
        for (i, line) in self.lines.iter_mut().enumerate() {
            line.write_span(rows, i);
        }
    }
}

/// Unnormalized fast Walsh–Hadamard transform of eight values.
#[inline]
fn hadamard8(x: &mut [f32; 8]) {
    let mut h = 1;
    while h < 8 {
        let mut i = 0;
        while i < 8 {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
            i += 2 * h;
        }
        h *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impulse_response(time: f64, seconds: f64) -> (Vec<f32>, Vec<f32>) {
        let sr = 48_000.0;
        let mut r = Reverb::new(18.0, time, 0.5, 1.0, sr);
        let n = (seconds * sr) as usize;
        let (mut left, mut right) = (vec![0.0f32; n], vec![0.0f32; n]);
        left[0] = 1.0;
        right[0] = 1.0;
        for (l, r2) in left.chunks_mut(64).zip(right.chunks_mut(64)) {
            r.process(l, r2);
        }
        (left, right)
    }

    /// The reverb as first written, a frame at a time through every delay in turn:
    /// what processing in spans must not change.
    impl Delay {
        fn read(&self) -> f32 {
            self.buffer[self.pos]
        }

        fn write_advance(&mut self, x: f32) {
            self.buffer[self.pos] = x;
            self.pos += 1;
            if self.pos == self.buffer.len() {
                self.pos = 0;
            }
        }

        fn allpass(&mut self, x: f32, g: f32) -> f32 {
            let delayed = self.read();
            let v = x + g * delayed;
            self.write_advance(v);
            delayed - g * v
        }
    }

    fn process_by_frame(reverb: &mut Reverb, left: &mut [f32], right: &mut [f32]) {
        let d = reverb.damping;
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let mut inl = *l;
            let mut inr = *r;
            for stage in 0..2 {
                inl = reverb.diffusers[0][stage].allpass(inl, DIFFUSION);
                inr = reverb.diffusers[1][stage].allpass(inr, DIFFUSION);
            }
            let mut x = [0.0f32; 8];
            for (i, xi) in x.iter_mut().enumerate() {
                let y = reverb.lines[i].read();
                reverb.lowpass[i] = y + d * (reverb.lowpass[i] - y);
                *xi = reverb.lowpass[i] * reverb.gains[i];
            }
            let out_l = x[0] - x[2] + x[4] - x[6];
            let out_r = x[1] - x[3] + x[5] - x[7];
            hadamard8(&mut x);
            for (i, xi) in x.iter().enumerate() {
                let input = if i % 2 == 0 { inl } else { inr };
                reverb.lines[i].write_advance(xi * 0.353_553_38 + input * 0.5);
            }
            *l += reverb.wet * out_l;
            *r += reverb.wet * out_r;
        }
    }

    #[test]
    fn the_avx2_build_sounds_as_the_baseline_to_the_bit() {
        let mut wide = Reverb::new(18.0, 3.0, 0.5, 0.8, 48_000.0);
        let mut baseline = Reverb::new(18.0, 3.0, 0.5, 0.8, 48_000.0);
        wide.set_width(crate::simd::tests::wide_for_test());
        baseline.set_width(Width::Baseline);
        let mut rng = crate::rng::Rng::new(9);
        let signal: Vec<f32> = (0..48_000).map(|_| rng.next_f64() as f32 - 0.5).collect();
        let (mut wl, mut wr) = (signal.clone(), signal.clone());
        let (mut bl, mut br) = (signal.clone(), signal);
        for ((wl, wr), (bl, br)) in wl
            .chunks_mut(64)
            .zip(wr.chunks_mut(64))
            .zip(bl.chunks_mut(64).zip(br.chunks_mut(64)))
        {
            wide.process(wl, wr);
            baseline.process(bl, br);
        }
        let differ = crate::simd::tests::samples_differing(&wl, &bl)
            + crate::simd::tests::samples_differing(&wr, &br);
        assert_eq!(differ, 0, "{differ} samples differ between the two builds");
    }

    #[test]
    fn spans_sound_as_frame_by_frame_processing() {
        // Small rooms at low rates make delays shorter than a block (a diffuser of 3.59
        // ms is 29 frames at 8 kHz); blocks of odd sizes and longer than a span put
        // every wrap at another place in a span.
        for (room, sample_rate) in [(18.0, 48_000.0), (4.0, 8_000.0), (72.0, 44_100.0)] {
            let mut fast = Reverb::new(room, 3.0, 0.5, 0.8, sample_rate);
            let mut slow = Reverb::new(room, 3.0, 0.5, 0.8, sample_rate);
            let mut rng = crate::rng::Rng::new(5);
            let n = sample_rate as usize;
            let left: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect();
            let right: Vec<f32> = (0..n)
                .map(|i| if i % 997 == 0 { 1.0 } else { 0.0 })
                .collect();
            let (mut fl, mut fr) = (left.clone(), right.clone());
            let (mut sl, mut sr) = (left, right);
            let mut from = 0;
            for size in [64, 1, 63, 200, 17, 64, 64, 129].iter().cycle() {
                if from == n {
                    break;
                }
                let to = (from + size).min(n);
                fast.process(&mut fl[from..to], &mut fr[from..to]);
                process_by_frame(&mut slow, &mut sl[from..to], &mut sr[from..to]);
                from = to;
            }
            let worst = fl
                .iter()
                .zip(&sl)
                .chain(fr.iter().zip(&sr))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-6,
                "room {room} at {sample_rate} Hz: off by {worst}"
            );
        }
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&s| (s as f64).powi(2)).sum()
    }

    #[test]
    fn decays_by_60_db_in_its_time() {
        let (left, _) = impulse_response(2.0, 3.0);
        let sr = 48_000;
        // Energy in 100 ms windows, after the impulse itself.
        let early = energy(&left[sr / 10..sr / 5]);
        let at_time = energy(&left[2 * sr..2 * sr + sr / 10]);
        let drop_db = 10.0 * (early / at_time).log10();
        // About 60 dB minus the 0.15 s between the windows' starts (≈ 4.5 dB),
        // a little more for the damping of the highs.
        assert!((50.0..75.0).contains(&drop_db), "dropped {drop_db:.1} dB");
    }

    #[test]
    fn is_stable_and_stereo() {
        let (left, right) = impulse_response(8.0, 4.0);
        assert!(left
            .iter()
            .chain(&right)
            .all(|x| x.is_finite() && x.abs() < 2.0));
        let tail = 48_000..96_000;
        let (l, r) = (&left[tail.clone()], &right[tail]);
        let dot: f64 = l
            .iter()
            .zip(r)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        let correlation = dot / (energy(l) * energy(r)).sqrt();
        assert!(correlation.abs() < 0.5, "channels too alike: {correlation}");
    }
}
