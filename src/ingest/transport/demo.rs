//! The demo: a seeded generator that sounds like English Wikipedia, for trying carillon
//! without a network and for reproducible renders.
//!
//! Figures derived from ../shared/corpus (see README, "The demo source"):
//! - rate: English Wikipedia runs at about 2 edits/s (corpus MANIFEST); edits arrive as
//!   a Poisson process (the wikiticker slices' gaps are close to exponential);
//! - removals: 30 % of the 2023 enwiki EventStreams sample and 37 % of the English
//!   wikiticker hour have size ≤ 0: about a quarter to a third, 30 % here;
//! - sizes: |size| is log-normal with μ = 3.8, σ = 1.9 (ln bytes; fitted on the enwiki
//!   sample: median ≈ 45 bytes, 1 % above ≈ 7 kB — a heavy tail), and 5 % of edits
//!   change nothing (size 0, as null edits and reverts-to-same do);
//! - 20 % bots and 15 % anonymous edits (English wikiticker hour), 97 % in the article
//!   namespace (all-wikis hour: 1950 of 2120 in Main);
//! - a new account about once a minute (the replay slices' rate).

use crate::event::{Event, EventKind};
use crate::ingest::replay::Timed;
use crate::ingest::Parsed;
use crate::rng::Rng;

const EDITS_PER_SECOND: f64 = 2.0;
const NEW_ACCOUNT_MEAN_SECONDS: f64 = 60.0;
const REMOVAL_SHARE: f64 = 0.30;
const NULL_EDIT_SHARE: f64 = 0.05;
const LOG_SIZE_MU: f64 = 3.8;
const LOG_SIZE_SIGMA: f64 = 1.9;
const BOT_SHARE: f64 = 0.20;
const ANON_SHARE: f64 = 0.15;
const ARTICLE_SHARE: f64 = 0.97;

/// Words to make page titles of: a title decides its note's fuzz, so titles repeat a
/// little, as popular pages do.
const WORDS: [&str; 24] = [
    "River",
    "Saint",
    "Battle",
    "Island",
    "Museum",
    "Lake",
    "Church",
    "Railway",
    "Opera",
    "Garden",
    "Library",
    "Bridge",
    "Comet",
    "Valley",
    "Harbour",
    "Forest",
    "Castle",
    "Market",
    "Festival",
    "Orchestra",
    "Mountain",
    "School",
    "Theatre",
    "Tower",
];

/// An endless, seeded sequence of timed events.
pub struct Demo {
    rng: Rng,
    next_edit: f64,
    next_account: f64,
    accounts: u64,
}

impl Demo {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0xD3E0_C0DE);
        let next_edit = rng.exponential(1.0 / EDITS_PER_SECOND);
        let next_account = rng.exponential(NEW_ACCOUNT_MEAN_SECONDS);
        Self {
            rng,
            next_edit,
            next_account,
            accounts: 0,
        }
    }

    fn edit(&mut self) -> Event {
        let r = &mut self.rng;
        let magnitude = if r.next_f64() < NULL_EDIT_SHARE {
            0
        } else {
            (LOG_SIZE_MU + LOG_SIZE_SIGMA * r.normal())
                .exp()
                .round()
                .max(1.0) as i64
        };
        let size = if r.next_f64() < REMOVAL_SHARE {
            -magnitude
        } else {
            magnitude
        };
        let title = format!(
            "{} {}",
            WORDS[r.below(WORDS.len() as u64) as usize],
            WORDS[r.below(WORDS.len() as u64) as usize]
        );
        let mut e = Event::new(Event::kind_for_size(size), size, &title);
        e.is_bot = r.next_f64() < BOT_SHARE;
        e.is_anon = !e.is_bot && r.next_f64() < ANON_SHARE;
        e.user = if e.is_anon {
            format!("192.0.2.{}", r.below(255))
        } else {
            format!("Editor{}", r.below(5000))
        };
        if r.next_f64() >= ARTICLE_SHARE {
            e.namespace = "Talk".into();
        }
        e.source = "demo".into();
        e
    }
}

impl Iterator for Demo {
    type Item = (f64, Event);

    fn next(&mut self) -> Option<(f64, Event)> {
        if self.next_account < self.next_edit {
            let t = self.next_account;
            self.next_account += self.rng.exponential(NEW_ACCOUNT_MEAN_SECONDS);
            self.accounts += 1;
            let mut e = Event::new(EventKind::NewMember, 0, "Special:Log/newusers");
            e.user = format!("Newcomer{}", self.accounts);
            e.namespace = "Special".into();
            e.source = "demo".into();
            return Some((t, e));
        }
        let t = self.next_edit;
        self.next_edit += self.rng.exponential(1.0 / EDITS_PER_SECOND);
        Some((t, self.edit()))
    }
}

impl Demo {
    /// The same sequence as replay lines (every one well-formed).
    pub fn timed(seed: u64) -> impl Iterator<Item = Timed> {
        Demo::new(seed).map(|(t, e)| (t, Parsed::Event(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let a: Vec<_> = Demo::new(3).take(50).collect();
        let b: Vec<_> = Demo::new(3).take(50).collect();
        assert_eq!(a, b);
        let c: Vec<_> = Demo::new(4).take(50).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn sounds_like_english_wikipedia() {
        let events: Vec<_> = Demo::new(1).take_while(|(t, _)| *t < 3600.0).collect();
        let edits: Vec<&Event> = events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.kind != EventKind::NewMember)
            .collect();
        let rate = edits.len() as f64 / 3600.0;
        assert!((1.8..2.2).contains(&rate), "edit rate {rate}/s");
        let accounts = events.len() - edits.len();
        assert!(
            (40..=85).contains(&accounts),
            "{accounts} new accounts in an hour"
        );
        let removals = edits
            .iter()
            .filter(|e| e.kind == EventKind::Removal)
            .count() as f64
            / edits.len() as f64;
        assert!((0.28..0.40).contains(&removals), "removal share {removals}");
        let big = edits.iter().filter(|e| e.size.abs() > 5000).count();
        assert!(big > 20, "a heavy tail: {big} edits over 5 kB");
    }
}
