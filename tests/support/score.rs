//! What carillon's own score says a message should play, to compare with what is heard.

use carillon::config::Config;
use carillon::ingest::wikimon::parse_wikimon;
use carillon::score::{Outcome, Score};

/// The instrument (0 célesta, 1 clavichord, 2 violin) and frequency the default score
/// gives `message`; panics if it would not play.
pub fn expected(message: &str) -> (u8, f64) {
    let names = ["celesta", "clavichord", "violin"].map(String::from);
    let mut score = Score::new(&Config::defaults().score, &names).expect("default score");
    let event = parse_wikimon(message).expect("a valid wikimon message");
    match score.map(&event, 0.0) {
        Outcome::Play(note) => (note.instrument.0, f64::from(note.frequency)),
        other => panic!("{message} should play, but the score says {other:?}"),
    }
}
