mod support;
use support::*;
use std::f64::consts::PI;
const SR: u32 = 48000;
fn sine(freq: f64, seconds: f64, amplitude: f64) -> Vec<f32> {
    let n = (seconds * 48000.0) as usize;
    (0..n).map(|i| (amplitude * (2.0 * PI * freq * i as f64 / 48000.0).sin()) as f32).collect()
}
fn struck(freq: f64, seconds: f64, decay: f64) -> Vec<f32> {
    let attack = 0.002 * f64::from(SR);
    sine(freq, seconds, 0.5).into_iter().enumerate().map(|(i, s)| {
            let t = i as f64 / f64::from(SR);
            let envelope = (i as f64 / attack).min(1.0) * (-t / decay).exp();
            (f64::from(s) * envelope) as f32 }).collect()
}
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n).map(|_| { state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            ((state >> 40) as f64 / f64::from(1u32 << 23) - 1.0) as f32 }).collect()
}
fn mix_at(out: &mut [f32], at_seconds: f64, sound: &[f32]) {
    let start = (at_seconds * f64::from(SR)) as usize;
    for (o, s) in out[start..].iter_mut().zip(sound) { *o += s; }
}
fn lowpass(x: &[f32], a: f32) -> Vec<f32> { let mut y = 0.0; let mut z = 0.0; x.iter().map(|&v| { y += a * (v - y); z += a * (y - z); z }).collect() }
#[test]
fn probe() {
    let mut bad = 0;
    for seed in 1..30u64 {
        for &level in &[0.05f32, 0.15, 0.3, 0.5] {
          for &lp in &[1.0f32, 0.05, 0.01, 0.003] {
            let mut signal = vec![0.0; 3 * SR as usize];
            mix_at(&mut signal, 0.1, &struck(554.37, 0.3, 0.08));
            let raw = lowpass(&noise(2 * SR as usize, seed), lp);
            let norm = raw.iter().fold(0f32, |m, v| m.max(v.abs()));
            let tail: Vec<f32> = raw.iter().enumerate().map(|(i, &n)| n / norm * level * (-(i as f32) / SR as f32 * 3.45).exp()).collect();
            mix_at(&mut signal, 0.1, &tail);
            let found = onsets(&signal, SR);
            if found.len() != 1 { bad += 1; eprintln!("seed {seed} level {level} lp {lp}: tail alone gave {:?}", found); }
            mix_at(&mut signal, 0.9, &struck(466.16, 0.6, 0.2));
            let found = onsets(&signal, SR);
            if found.len() != 2 { bad += 1; eprintln!("seed {seed} level {level} lp {lp}: with note gave {:?}", found); }
          }
        }
    }
    // beating pair, sustained 2 s, and vibrato
    for &(f1, f2) in &[(440.0, 441.0), (440.0, 443.0), (440.0, 452.0), (277.18, 311.13)] {
        let mut signal = vec![0.0; 3 * SR as usize];
        mix_at(&mut signal, 0.2, &sine(f1, 2.0, 0.3)); mix_at(&mut signal, 0.2, &sine(f2, 2.0, 0.3));
        eprintln!("beat {f1}/{f2}: {:?}", onsets(&signal, SR));
    }
    let vib: Vec<f32> = { let mut ph = 0.0f64; (0..2*SR as usize).map(|i| { let t = i as f64 / 48000.0; let f = 440.0 * 2f64.powf(0.3/12.0 * (2.0*PI*5.5*t).sin()); ph += 2.0*PI*f/48000.0; (0.4*ph.sin()) as f32 }).collect() };
    let mut signal = vec![0.0; 3 * SR as usize]; mix_at(&mut signal, 0.2, &vib);
    eprintln!("vibrato: {:?}", onsets(&signal, SR));
    eprintln!("bad {bad}");
}
