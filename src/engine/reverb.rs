//! The master bus's stereo reverb: an 8-line feedback delay network.
//!
//! Two allpass diffusers per channel smear each note's attack; eight delay lines of
//! mutually prime lengths, mixed through a Hadamard matrix and damped by a one-pole
//! low-pass each, ring out with a decay time set in seconds. It costs a few dozen
//! operations per frame — a fraction of a 32-line network's — which matters for a
//! service that plays for days on small machines. All memory is allocated in `new`.

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

impl Delay {
    fn new(frames: usize) -> Self {
        Self {
            buffer: vec![0.0; frames.max(1)],
            pos: 0,
        }
    }

    /// The sample written `len` frames ago.
    #[inline]
    fn read(&self) -> f32 {
        self.buffer[self.pos]
    }

    #[inline]
    fn write_advance(&mut self, x: f32) {
        self.buffer[self.pos] = x;
        self.pos += 1;
        if self.pos == self.buffer.len() {
            self.pos = 0;
        }
    }

    /// Schroeder allpass through this delay.
    #[inline]
    fn allpass(&mut self, x: f32, g: f32) -> f32 {
        let delayed = self.read();
        let v = x + g * delayed;
        self.write_advance(v);
        delayed - g * v
    }
}

pub struct Reverb {
    lines: [Delay; 8],
    gains: [f32; 8],
    lowpass: [f32; 8],
    damping: f32,
    diffusers: [[Delay; 2]; 2],
    wet: f32,
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
        Self {
            lines,
            gains,
            lowpass: [0.0; 8],
            damping: (damping.clamp(0.0, 1.0) * 0.7) as f32,
            diffusers,
            wet,
        }
    }

    /// Silence every line and filter: the state of a reverb that has heard nothing.
    /// The longest a sound can take to come out after it went in: the longest line
    /// and both diffusers. After that many frames of silent input, an output that
    /// stayed inaudible throughout means nothing audible is left inside.
    pub fn memory_frames(&self) -> usize {
        let longest = self.lines.iter().map(|l| l.buffer.len()).max().unwrap_or(0);
        let diffusers: usize = self.diffusers[0].iter().map(|d| d.buffer.len()).sum();
        longest + diffusers
    }

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

    /// Add the reverb of `left`/`right` to them, in place.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let d = self.damping;
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let mut inl = *l;
            let mut inr = *r;
            for stage in 0..2 {
                inl = self.diffusers[0][stage].allpass(inl, DIFFUSION);
                inr = self.diffusers[1][stage].allpass(inr, DIFFUSION);
            }
            let mut x = [0.0f32; 8];
            for (i, xi) in x.iter_mut().enumerate() {
                // Damped, decaying output of each line.
                let y = self.lines[i].read();
                self.lowpass[i] = y + d * (self.lowpass[i] - y);
                *xi = self.lowpass[i] * self.gains[i];
            }
            let out_l = x[0] - x[2] + x[4] - x[6];
            let out_r = x[1] - x[3] + x[5] - x[7];
            hadamard8(&mut x);
            for (i, xi) in x.iter().enumerate() {
                let input = if i % 2 == 0 { inl } else { inr };
                self.lines[i].write_advance(xi * 0.353_553_38 + input * 0.5);
            }
            *l += self.wet * out_l;
            *r += self.wet * out_r;
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
