//! Notes, scales and tuning: note names like "C#3", steps up a scale, equal temperament.

/// MIDI note number of a name such as "C#3", "Db4" or "A4" (A4 = 69, so C4 = 60).
pub fn parse_note(name: &str) -> Option<i32> {
    let mut chars = name.trim().chars().peekable();
    let letter = chars.next()?.to_ascii_uppercase();
    let pitch_class = match letter {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    };
    let accidental = match chars.peek() {
        Some('#') | Some('♯') => {
            chars.next();
            1
        }
        Some('b') | Some('♭') => {
            chars.next();
            -1
        }
        _ => 0,
    };
    let octave: i32 = chars.collect::<String>().parse().ok()?;
    if !(-1..=9).contains(&octave) {
        return None;
    }
    Some((octave + 1) * 12 + pitch_class + accidental)
}

/// Frequency in Hz of a (possibly fractional) MIDI note, A4 = 440 Hz, equal temperament.
pub fn midi_to_hz(midi: f64) -> f64 {
    440.0 * ((midi - 69.0) / 12.0).exp2()
}

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
    fn note_names_parse_to_midi() {
        assert_eq!(parse_note("A4"), Some(69));
        assert_eq!(parse_note("C4"), Some(60));
        assert_eq!(parse_note("C#3"), Some(49));
        assert_eq!(parse_note("Db3"), Some(49));
        assert_eq!(parse_note("C#1"), Some(25));
        assert_eq!(parse_note("H2"), None);
        assert_eq!(parse_note("C#"), None);
    }

    #[test]
    fn pentatonic_steps_walk_up_the_black_keys() {
        // Listen to Wikipedia's scale from C#: C# D# F# G# A#, the five black keys.
        let penta = [0, 2, 5, 7, 9];
        let semis: Vec<i32> = (0..6).map(|s| step_semitones(&penta, s)).collect();
        assert_eq!(semis, vec![0, 2, 5, 7, 9, 12]);
        assert_eq!(step_semitones(&penta, 23), 4 * 12 + 7);
    }

    #[test]
    fn a4_is_440() {
        assert!((midi_to_hz(69.0) - 440.0).abs() < 1e-9);
        assert!((midi_to_hz(49.0) - 138.591_315).abs() < 1e-4);
    }
}
