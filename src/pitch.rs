//! Pitch: note names such as "C#3", MIDI note numbers and equal-tempered frequencies.
//!
//! Both the configuration (which checks note names when it is read) and the score
//! (which turns steps into frequencies) need these, so they live below both.

/// Pitch-class names used when a MIDI note is written back as a name.
const NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

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

/// The name of a MIDI note, with sharps ("C#3" for 49); any number has one, even those
/// outside the range [`parse_note`] accepts, so that an error can name the note reached.
pub fn note_name(midi: i32) -> String {
    let class = NAMES[midi.rem_euclid(12) as usize];
    format!("{class}{}", midi.div_euclid(12) - 1)
}

/// Frequency in Hz of a (possibly fractional) MIDI note, A4 = 440 Hz, equal temperament.
pub fn midi_to_hz(midi: f64) -> f64 {
    440.0 * ((midi - 69.0) / 12.0).exp2()
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
    fn midi_notes_are_named_back() {
        for name in ["C#3", "A4", "C-1", "B9", "F#0"] {
            let midi = parse_note(name).expect("a note name");
            assert_eq!(note_name(midi), name);
        }
        assert_eq!(note_name(164), "G#12");
    }

    #[test]
    fn a4_is_440() {
        assert!((midi_to_hz(69.0) - 440.0).abs() < 1e-9);
        assert!((midi_to_hz(49.0) - 138.591_315).abs() < 1e-4);
    }
}
