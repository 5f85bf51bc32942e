//! osmChange documents (OpenStreetMap's replication diffs), read as changesets.
//!
//! A minutely diff is a few MB of `<create>`, `<modify>` and `<delete>` blocks holding
//! `<node>`, `<way>` and `<relation>` elements, each naming its changeset. It is read as
//! a stream of XML events, never as a tree: only a tally per changeset is kept (its
//! user, how many elements it created, modified and deleted, its earliest and latest
//! element timestamps), in the order the changesets first appear.
//!
//! What sounds is the changeset, not the element. Its event (see [`Changeset::event`])
//! is an addition when the changeset left the map with more elements than it found
//! (created > deleted) and a removal otherwise, like an edit that made a page grow or
//! not; its size is the number of elements it touched, signed by that direction, so
//! that a big change sounds lower and louder whether it added, reshaped or removed.
//! The net count alone would make every changeset that only modifies (moving nodes,
//! retagging: about a third of them in busy minutes) sound as the same smallest edit.
//!
//! A document that breaks off (invalid XML, an element after the root was closed) keeps
//! the changesets read before the break, tallied as far as they got, and reports the
//! error: they are real contributions, and the diff will not be fetched again. An
//! element with no usable changeset id is counted as bad and left out.

use std::collections::HashMap;
use std::io::BufRead;

use quick_xml::events::{BytesStart, Event as Xml};
use quick_xml::{Reader, XmlVersion};

use crate::event::{Event, EventKind};
use crate::ingest::transport::replay::parse_rfc3339;

/// One changeset's share of a diff.
#[derive(Debug, Clone, PartialEq)]
pub struct Changeset {
    pub id: u64,
    /// Empty if no element of it named a user (anonymous edits from before 2009).
    pub user: String,
    pub created: u64,
    pub modified: u64,
    pub deleted: u64,
    /// Its earliest and latest element timestamps (seconds since the Unix epoch), if
    /// any element had a readable one.
    pub first: Option<f64>,
    pub last: Option<f64>,
}

/// What a diff held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// In the order of their first element in the document.
    pub changesets: Vec<Changeset>,
    /// Elements tallied.
    pub elements: u64,
    /// Elements left out for want of a changeset id.
    pub bad_elements: u64,
    /// Why the document could not be read to its end, if it could not.
    pub error: Option<String>,
}

impl Changeset {
    pub fn elements(&self) -> u64 {
        self.created + self.modified + self.deleted
    }

    /// Its event: an addition of `elements()` if it created more than it deleted, else
    /// a removal of `-elements()` (see the module's notes).
    pub fn event(&self) -> Event {
        let touched = i64::try_from(self.elements()).unwrap_or(i64::MAX);
        let size = if self.created > self.deleted {
            touched
        } else {
            -touched
        };
        let kind = if self.created > self.deleted {
            EventKind::Addition
        } else {
            EventKind::Removal
        };
        Event {
            kind,
            size,
            title: format!("Changeset {}", self.id),
            user: self.user.clone(),
            is_bot: false,
            is_anon: self.user.is_empty(),
            is_minor: false,
            is_new_page: false,
            // osmChange has no namespaces; "Main" passes the default namespace filter.
            namespace: "Main".to_owned(),
            url: format!("https://www.openstreetmap.org/changeset/{}", self.id),
            summary: format!("+{} ~{} -{}", self.created, self.modified, self.deleted),
            source: "osm".to_owned(),
        }
    }
}

impl Diff {
    /// The earliest and the latest element timestamps of the whole diff.
    pub fn span(&self) -> Option<(f64, f64)> {
        let first = self
            .changesets
            .iter()
            .filter_map(|c| c.first)
            .reduce(f64::min)?;
        let last = self
            .changesets
            .iter()
            .filter_map(|c| c.last)
            .reduce(f64::max)?;
        Some((first, last))
    }
}

#[derive(Clone, Copy)]
enum Action {
    Create,
    Modify,
    Delete,
}

/// Read an osmChange document.
pub fn parse<R: BufRead>(input: R) -> Diff {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut diff = Diff::default();
    let mut index: HashMap<u64, usize> = HashMap::new();
    // Depth 1 is the root, 2 an action block, 3 an element of it. Every block sets the
    // action as it opens, so an element is always counted under its own block's.
    let mut depth = 0usize;
    let mut action: Option<Action> = None;
    let mut seen_root = false;
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                diff.error = Some(format!(
                    "invalid XML at byte {}: {e}",
                    reader.error_position()
                ));
                break;
            }
        };
        match event {
            Xml::Start(ref start) | Xml::Empty(ref start) => {
                let empty = matches!(event, Xml::Empty(_));
                let name = start.local_name();
                match depth {
                    0 if seen_root => {
                        diff.error = Some("content after the root element".to_owned());
                        break;
                    }
                    0 if name.as_ref() != "osmChange" => {
                        diff.error = Some(format!(
                            "not an osmChange document (root <{}>)",
                            name.as_ref()
                        ));
                        break;
                    }
                    0 => seen_root = true,
                    1 => {
                        action = match name.as_ref() {
                            "create" => Some(Action::Create),
                            "modify" => Some(Action::Modify),
                            "delete" => Some(Action::Delete),
                            _ => None,
                        }
                    }
                    2 => {
                        if let (Some(action), "node" | "way" | "relation") = (action, name.as_ref())
                        {
                            tally(start, action, &mut diff, &mut index);
                        }
                    }
                    _ => {}
                }
                if !empty {
                    depth += 1;
                }
            }
            Xml::End(_) => depth = depth.saturating_sub(1),
            Xml::Eof => {
                if !seen_root {
                    diff.error = Some("no root element".to_owned());
                } else if depth > 0 {
                    diff.error = Some("the document ends before its root is closed".to_owned());
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    diff
}

/// Count one element in its changeset's tally.
fn tally(start: &BytesStart, action: Action, diff: &mut Diff, index: &mut HashMap<u64, usize>) {
    let mut id = None;
    let mut user = None;
    let mut time = None;
    for attr in start.attributes().flatten() {
        match attr.key.as_ref() {
            "changeset" => id = attr.value.trim().parse::<u64>().ok(),
            "user" => user = attr.normalized_value(XmlVersion::Implicit1_0).ok(),
            "timestamp" => time = parse_rfc3339(attr.value.trim()),
            _ => {}
        }
    }
    let Some(id) = id else {
        diff.bad_elements += 1;
        return;
    };
    let at = *index.entry(id).or_insert_with(|| {
        diff.changesets.push(Changeset {
            id,
            user: String::new(),
            created: 0,
            modified: 0,
            deleted: 0,
            first: None,
            last: None,
        });
        diff.changesets.len() - 1
    });
    let changeset = &mut diff.changesets[at];
    if changeset.user.is_empty() {
        if let Some(user) = user {
            changeset.user = user.into_owned();
        }
    }
    match action {
        Action::Create => changeset.created += 1,
        Action::Modify => changeset.modified += 1,
        Action::Delete => changeset.deleted += 1,
    }
    if let Some(t) = time {
        changeset.first = Some(changeset.first.map_or(t, |f| f.min(t)));
        changeset.last = Some(changeset.last.map_or(t, |l| l.max(t)));
    }
    diff.elements += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF_2017: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/osm/osmdiff_minutely_osmchange_2017-11-10.osc.xml"
    );
    const DIFF_2020: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/osm/osmcha_minutely_osmchange_241_2020-05-12.osc.xml"
    );

    fn read(path: &str) -> Diff {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(std::io::BufReader::new(file))
    }

    fn changeset(diff: &Diff, id: u64) -> &Changeset {
        diff.changesets
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no changeset {id}"))
    }

    fn users(diff: &Diff) -> usize {
        let users: std::collections::BTreeSet<&str> =
            diff.changesets.iter().map(|c| c.user.as_str()).collect();
        users.len()
    }

    #[test]
    fn tallies_the_2017_minutely_diff() {
        let diff = read(DIFF_2017);
        assert_eq!(diff.error, None);
        assert_eq!(diff.elements, 4751);
        assert_eq!(diff.bad_elements, 0);
        assert_eq!(diff.changesets.len(), 31);
        assert_eq!(users(&diff), 24);
        let sum: u64 = diff.changesets.iter().map(Changeset::elements).sum();
        assert_eq!(sum, 4751);

        let c = changeset(&diff, 53667118);
        assert_eq!(c.user, "tkamada");
        assert_eq!((c.created, c.modified, c.deleted), (364, 134, 28));
        assert_eq!(c.first, parse_rfc3339("2017-11-10T13:49:13Z"));
        assert_eq!(c.last, parse_rfc3339("2017-11-10T13:49:32Z"));

        let c = changeset(&diff, 53667062);
        assert_eq!(c.user, "WojtekK");
        assert_eq!((c.created, c.modified, c.deleted), (0, 0, 3000));

        let c = changeset(&diff, 53667119);
        assert_eq!(c.user, "chris66");
        assert_eq!((c.created, c.modified, c.deleted), (67, 148, 6));

        assert_eq!(
            diff.span(),
            parse_rfc3339("2017-11-10T13:48:27Z").zip(parse_rfc3339("2017-11-10T13:50:02Z"))
        );
        // The first element of the document is aracnus's.
        assert_eq!(diff.changesets[0].id, 53667136);
    }

    #[test]
    fn tallies_the_2020_minutely_diff() {
        let diff = read(DIFF_2020);
        assert_eq!(diff.error, None);
        assert_eq!(diff.elements, 4697);
        assert_eq!(diff.changesets.len(), 59);
        assert_eq!(users(&diff), 56);

        let c = changeset(&diff, 85063097);
        assert_eq!(c.user, "t-degawa");
        assert_eq!((c.created, c.modified, c.deleted), (919, 49, 35));

        let c = changeset(&diff, 85063055);
        assert_eq!(c.user, "SelatPandan");
        assert_eq!((c.created, c.modified, c.deleted), (104, 207, 1));
        assert_eq!(
            diff.span(),
            parse_rfc3339("2020-05-12T06:12:02Z").zip(parse_rfc3339("2020-05-12T06:13:01Z"))
        );
    }

    #[test]
    fn a_changeset_sounds_by_direction_and_amount() {
        let diff = read(DIFF_2017);
        let e = changeset(&diff, 53667118).event();
        assert_eq!(e.kind, EventKind::Addition);
        assert_eq!(e.size, 364 + 134 + 28);
        assert_eq!(e.title, "Changeset 53667118");
        assert_eq!(e.user, "tkamada");
        assert_eq!(e.url, "https://www.openstreetmap.org/changeset/53667118");
        assert_eq!(e.summary, "+364 ~134 -28");
        assert_eq!((e.source.as_str(), e.namespace.as_str()), ("osm", "Main"));
        assert!(!e.is_bot && !e.is_anon);

        let e = changeset(&diff, 53667062).event();
        assert_eq!((e.kind, e.size), (EventKind::Removal, -3000));

        let only_modified = diff
            .changesets
            .iter()
            .filter(|c| c.created == 0 && c.deleted == 0)
            .count();
        assert_eq!(only_modified, 13);
        for c in diff
            .changesets
            .iter()
            .filter(|c| c.created == 0 && c.deleted == 0)
        {
            let e = c.event();
            assert_eq!(e.kind, EventKind::Removal);
            assert_eq!(e.size, -(c.modified as i64));
            assert!(e.size < 0, "changeset {} touched elements", c.id);
        }
    }

    #[test]
    fn escaped_user_names_are_read_as_text() {
        let doc = r#"<osmChange version="0.6"><create>
            <node id="1" version="1" timestamp="2020-05-12T06:12:02Z" user="A &amp; B" changeset="7" lat="0" lon="0"/>
            </create></osmChange>"#;
        let diff = parse(doc.as_bytes());
        assert_eq!(diff.changesets[0].user, "A & B");
    }

    #[test]
    fn a_broken_document_keeps_what_was_read_and_says_why() {
        let doc = r#"<osmChange version="0.6"><create>
            <node id="1" version="1" timestamp="2020-05-12T06:12:02Z" user="a" changeset="7" lat="0" lon="0"/>
            <way id="2" version="1" timestamp="2020-05-12T06:12:03Z" user="a" changeset="7"><nd ref="1"/></way>
            <node id="3" version="1" user="b" changeset="8" lat="0" lon="0"/>
            <node id="4" version="1" user="c" lat="0" lon="0"/>
            </create><modify><node id="5" changeset="9" user="d"></way></modify></osmChange>"#;
        let diff = parse(doc.as_bytes());
        assert!(diff.error.is_some(), "mismatched end tag must be reported");
        let ids: Vec<u64> = diff.changesets.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![7, 8, 9]);
        assert_eq!(diff.changesets[0].created, 2);
        assert_eq!(diff.changesets[1].first, None);
        assert_eq!(diff.bad_elements, 1);
        assert_eq!(diff.elements, 4);
    }

    #[test]
    fn what_is_not_an_osmchange_is_an_error() {
        for doc in [
            "",
            "<html><body>Not Found</body></html>",
            "\u{1f}\u{8b} not xml",
            "<osmChange><create></create></osmChange><osmChange/>",
        ] {
            let diff = parse(doc.as_bytes());
            assert!(diff.error.is_some(), "{doc:?} read as {diff:?}");
            assert!(diff.changesets.is_empty());
        }
        let truncated = r#"<osmChange><modify><node changeset="1"/>"#;
        let diff = parse(truncated.as_bytes());
        assert!(diff.error.is_some());
        assert_eq!(diff.changesets.len(), 1);
    }
}
