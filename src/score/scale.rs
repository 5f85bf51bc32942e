//! Scales: how many semitones above a register's base note a step up a scale lands.
//!
//! Note names and tuning live in [`crate::pitch`], below both the score and the
//! configuration; they are re-exported here, where callers first looked for them.

pub use crate::pitch::{midi_to_hz, parse_note};

/// Semitones above the base note of `step` steps up a scale given as degrees in one octave.
pub fn step_semitones(scale: &[i32], step: i32) -> i32 {
    let n = scale.len() as i32;
    let octave = step.div_euclid(n);
    let degree = step.rem_euclid(n) as usize;
    octave * 12 + scale[degree]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pentatonic_steps_walk_up_the_black_keys() {
        // Listen to Wikipedia's scale from C#: C# D# F# G# A#, the five black keys.
        let penta = [0, 2, 5, 7, 9];
        let semis: Vec<i32> = (0..6).map(|s| step_semitones(&penta, s)).collect();
        assert_eq!(semis, vec![0, 2, 5, 7, 9, 12]);
        assert_eq!(step_semitones(&penta, 23), 4 * 12 + 7);
    }
}
