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
#[test]
fn probe() {
    // dense notes: célesta every 150 ms with long decays
    let pent = [277.18, 311.13, 369.99, 415.30, 466.16, 554.37, 622.25, 739.99];
    for &decay in &[0.1, 0.2, 0.4, 0.8, 2.0] {
        let mut line = format!("decay {decay}:");
        for &gap in &[0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7] {
            let mut signal = vec![0.0; 6 * SR as usize];
            let mut n = 0; let mut t = 0.1;
            while t < 4.0 { mix_at(&mut signal, t, &struck(pent[(n * 3) % 8], 2.0, decay)); n += 1; t += gap; }
            line += &format!(" gap {gap}: {}/{}", onsets(&signal, SR).len(), n);
            if decay == 2.0 && gap == 0.5 || decay == 0.8 && gap == 0.2 { eprintln!("{gap} {decay} {:?}", onsets(&signal, SR).iter().map(|&i| i as f64 / 48.0).collect::<Vec<_>>()); }
        }
        eprintln!("{line}");
    }
}
