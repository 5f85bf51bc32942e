//! Replay files: JSONL messages with their times, read in the source's format (wikimon
//! or EventStreams recentchange told apart line by line, unless the source names
//! another), and pacing any timed sequence of events in real time.
//!
//! A file written by `carillon record` holds each raw message as it arrived: a line
//! `{"_t": SECONDS, "_event": NAME, "_data": TEXT}`, after a header line
//! `{"_record": {"format": NAME, "source": SPEC}}` that names the format to read them
//! in. Any other line is itself the message.
//!
//! A message's time is its `_t` field (seconds from the start) if present, else its
//! EventStreams `timestamp` (Unix seconds) or `meta.dt` (RFC 3339), taken relative to
//! the first message; a message with none of these comes one second after the previous.
//! A time that is not finite, or further than a century from the start, is no recording's
//! and is read as absent: the files are outside input, and pacing needs a real duration.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ingest::format::{Format, Message, Parsed};
use crate::ingest::Delivery;

/// The longest a replay file may run, in its own seconds.
const CENTURY: f64 = 100.0 * 365.25 * 86_400.0;

#[derive(Debug, Error)]
#[error("cannot read replay file {path}: {source}")]
pub struct ReplayError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A message's time in seconds from the start of the file (finite, not negative, at most
/// a century), and what its format made of it.
pub type Timed = (f64, Parsed);

/// Read a replay file: every line, timed, parsed or not. `format` reads the lines; if
/// it is `Auto` and the file is a recording, the format its header names does.
pub fn load(path: &Path, format: &Format) -> Result<Vec<Timed>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError {
        path: path.to_owned(),
        source,
    })?;
    let recorded = match format {
        Format::Auto => recorded_format(&text, path.parent()),
        _ => None,
    };
    Ok(timed_messages(&text, recorded.as_ref().unwrap_or(format)))
}

/// The format a recording's header names, if the file starts with one.
fn recorded_format(text: &str, dir: Option<&Path>) -> Option<Format> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    let value: serde_json::Value = serde_json::from_str(first).ok()?;
    let name = value.get("_record")?.get("format")?.as_str()?;
    match Format::named(name, dir) {
        Ok(format) => Some(format),
        Err(e) => {
            tracing::warn!("the recording names the format {name:?}, which cannot be read ({e}); reading its lines as wikimon or EventStreams");
            None
        }
    }
}

/// Time and parse each non-empty line as wikimon or EventStreams.
pub fn timed_lines(text: &str) -> Vec<Timed> {
    timed_messages(text, &Format::Auto)
}

/// Time each non-empty line and read it in `format`.
pub fn timed_messages(text: &str, format: &Format) -> Vec<Timed> {
    let mut out = Vec::new();
    let mut first_abs: Option<f64> = None;
    let mut last = -1.0f64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Option<serde_json::Value> = serde_json::from_str(line).ok();
        if value.as_ref().is_some_and(|v| v.get("_record").is_some()) {
            continue;
        }
        let stamp = value.as_ref().and_then(|v| {
            if let Some(t) = v.get("_t").and_then(|t| t.as_f64()) {
                return Some(t);
            }
            let abs = v.get("timestamp").and_then(|t| t.as_f64()).or_else(|| {
                v.get("meta")
                    .and_then(|m| m.get("dt"))
                    .and_then(|d| d.as_str())
                    .and_then(parse_rfc3339)
            })?;
            let first = *first_abs.get_or_insert(abs);
            Some(abs - first)
        });
        let t = stamp
            .filter(|t| t.is_finite() && *t <= CENTURY)
            .unwrap_or(last + 1.0)
            .max(0.0);
        last = t;
        let raw = value.as_ref().and_then(|v| v.get("_data")?.as_str());
        let parsed = match raw {
            Some(data) => {
                let event = value.as_ref().and_then(|v| v.get("_event")?.as_str());
                format.parse(&Message { event, data })
            }
            None => format.parse(&Message::text(line)),
        };
        out.push((t, parsed));
    }
    out
}

/// Seconds since the Unix epoch of an RFC 3339 date-time such as
/// `2023-07-29T07:51:39Z` or `2023-07-29T07:51:39.123+02:00`.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

/// Deliver timed events at their times (divided by `speed`) from now.
pub async fn pace(events: impl Iterator<Item = Timed>, speed: f64, out: Delivery) {
    let start = Instant::now();
    let speed = if speed > 0.0 { speed } else { 1.0 };
    for (t, event) in events {
        // A very slow speed can put a time past what a clock counts: that event is never
        // due, and neither is the rest of the replay.
        let Some(due) = Duration::try_from_secs_f64(t / speed)
            .ok()
            .and_then(|d| start.checked_add(d))
        else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::time::sleep_until(due.into()).await;
        out.deliver(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_t_field_then_timestamps_then_one_per_second() {
        let text = concat!(
            r#"{"_t": 0.5, "page_title": "A", "change_size": 1}"#,
            "\n",
            r#"{"_t": 2.25, "page_title": "B", "change_size": 1}"#,
            "\n"
        );
        let t: Vec<f64> = timed_lines(text).iter().map(|x| x.0).collect();
        assert_eq!(t, vec![0.5, 2.25]);

        let text = concat!(
            r#"{"type":"edit","title":"A","timestamp":1690617099}"#,
            "\n",
            r#"{"type":"edit","title":"B","meta":{"dt":"2023-07-29T07:51:42Z"}}"#,
            "\n",
            r#"{"type":"edit","title":"C"}"#,
            "\n"
        );
        let t: Vec<f64> = timed_lines(text).iter().map(|x| x.0).collect();
        assert_eq!(t, vec![0.0, 3.0, 4.0]);
    }

    #[test]
    fn times_out_of_any_recording_are_read_as_absent() {
        // Stamps at the ends of f64 put the second one an infinite time after the first.
        let text = concat!(
            r#"{"type":"edit","title":"A","timestamp":-1e308}"#,
            "\n",
            r#"{"type":"edit","title":"B","timestamp":1e308}"#,
            "\n",
            r#"{"_t":1e300,"page_title":"C"}"#,
            "\n"
        );
        let t: Vec<f64> = timed_lines(text).iter().map(|x| x.0).collect();
        assert_eq!(t, vec![0.0, 1.0, 2.0]);
    }

    #[tokio::test]
    async fn a_time_past_the_clock_never_comes_and_does_not_panic() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let out = Delivery::new(tx, Default::default(), 0, Format::Auto);
        let events =
            timed_lines("{\"_t\":0,\"page_title\":\"A\"}\n{\"_t\":1,\"page_title\":\"B\"}\n");
        let paced = pace(events.into_iter(), 1e-300, out);
        // The first event is due at once; the second, 1e300 s later, never.
        assert!(tokio::time::timeout(Duration::from_millis(200), paced)
            .await
            .is_err());
        assert_eq!(rx.try_iter().count(), 1);
    }

    #[test]
    fn rfc3339_dates_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2023-07-29T07:51:39Z"), Some(1_690_617_099.0));
        assert_eq!(
            parse_rfc3339("2023-07-29T09:51:39.5+02:00"),
            Some(1_690_617_099.5)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn a_recording_is_read_in_the_format_its_header_names_with_its_event_names() {
        let dir = std::env::temp_dir().join(format!("carillon-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let path = dir.join("toots.jsonl");
        // What `record` writes for a Mastodon SSE source: the event name beside the data.
        let status = r#"{"id":"1","url":"https://example.social/@a/1","content":"<p>hello</p>","account":{"acct":"a"}}"#;
        let lines = [
            serde_json::json!({"_record": {"format": "mastodon", "source": "https://example.social/api/v1/streaming/public"}}),
            serde_json::json!({"_t": 0.25, "_event": "update", "_data": status}),
            serde_json::json!({"_t": 1.5, "_event": "delete", "_data": "1"}),
            serde_json::json!({"_t": 2.0, "_event": "filters_changed", "_data": "undefined"}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).expect("write the recording");
        let timed = load(&path, &Format::Auto).expect("reads");
        std::fs::remove_dir_all(&dir).ok();
        let times: Vec<f64> = timed.iter().map(|t| t.0).collect();
        assert_eq!(times, vec![0.25, 1.5, 2.0]);
        match (&timed[0].1, &timed[1].1, &timed[2].1) {
            (Parsed::Event(update), Parsed::Event(delete), Parsed::Skipped(name)) => {
                assert_eq!(update.kind, crate::event::EventKind::Addition);
                assert_eq!(delete.kind, crate::event::EventKind::Removal);
                assert_eq!(name, "filters_changed");
            }
            other => panic!("read as {other:?}"),
        }
    }

    #[test]
    fn broken_lines_are_kept_as_errors() {
        let lines = timed_lines("{\"_t\":0,\"page_title\":\"A\"}\nnot json\n");
        assert_eq!(lines.len(), 2);
        assert!(matches!(lines[0].1, Parsed::Event(_)));
        assert!(matches!(lines[1].1, Parsed::Malformed(_)));
    }
}
