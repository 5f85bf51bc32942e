//! The one normalized event type that every source produces and the score consumes.

/// What a contribution did, as far as the music is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Content was added (size > 0).
    Addition,
    /// Content was removed, or an edit left the size unchanged (size ≤ 0).
    Removal,
    /// A new member joined (an account was created).
    NewMember,
    /// Anything else (log actions, categorization…): counted, not played.
    Other,
}

/// A contribution, normalized from whatever format its source speaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Signed size of the change in bytes (0 when unknown).
    pub size: i64,
    pub title: String,
    pub user: String,
    pub is_bot: bool,
    pub is_anon: bool,
    pub is_minor: bool,
    pub is_new_page: bool,
    /// Namespace name as the wiki reports it ("Main" for articles).
    pub namespace: String,
    pub url: String,
    pub summary: String,
    /// Which wiki or feed the event came from, when known.
    pub source: String,
}

impl Event {
    /// An event with only a kind and size: the rest empty. Handy for tests and generators.
    pub fn new(kind: EventKind, size: i64, title: &str) -> Self {
        Self {
            kind,
            size,
            title: title.to_owned(),
            user: String::new(),
            is_bot: false,
            is_anon: false,
            is_minor: false,
            is_new_page: false,
            namespace: "Main".to_owned(),
            url: String::new(),
            summary: String::new(),
            source: String::new(),
        }
    }

    /// Kind of an edit of the given signed size, following Listen to Wikipedia:
    /// growth rings, no growth plucks.
    pub fn kind_for_size(size: i64) -> EventKind {
        if size > 0 {
            EventKind::Addition
        } else {
            EventKind::Removal
        }
    }
}
