//! OpenStreetMap's minutely replication: polls a replication folder's `state.txt` and
//! fetches each new diff (`AAA/BBB/CCC.osc.gz`), one event per changeset in it.
//!
//! It starts from the latest diff, not from history, then asks for news every
//! `poll_interval_s`. After an outage it catches up at most [`CATCH_UP`] diffs, the
//! newest ones, and passes over older ones rather than flood the score.
//!
//! A diff is a minute of edits arriving at once; its changesets are spread over the
//! poll interval that follows rather than played as one burst. The diffs found by a
//! poll take turns, each in an equal share (a slot) of the interval, in sequence order;
//! within its slot a changeset is due at its latest element timestamp's place in the
//! diff's span of timestamps, each second of the span getting an equal share of the
//! slot: `offset = (last − earliest) / (latest − earliest + 1 s) × slot`, where
//! earliest and latest are the diff's own. One with no timestamp is due at its slot's
//! start.
//!
//! A replication server that cannot be reached, answers with an error (a 404 included)
//! or with a state file that cannot be read is retried with the shared backoff; a diff
//! that cannot be downloaded is tried again at the next poll. A diff that downloads but
//! cannot be read (not gzip, over [`MAX_DIFF_BYTES`] unpacked, broken XML) is counted
//! (malformed or oversized), its readable changesets played, and passed over: fetching
//! it again would give the same bytes.

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use tokio::sync::mpsc;

use super::reconnect::Reconnect;
use crate::config::SourceConfig;
use crate::event::Event;
use crate::ingest::format::osmchange::{self, Diff};
use crate::ingest::Delivery;
use crate::stats::Stats;

/// The most diffs fetched by one poll; a source further behind skips the older ones.
pub const CATCH_UP: u64 = 3;
/// The largest diff read, unpacked. A busy minutely diff is a few MB; the frame limit
/// of the streaming feeds (1 MiB) would refuse many.
pub const MAX_DIFF_BYTES: u64 = 64 << 20;
/// The largest download (a gzip diff or a state file) taken in.
const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;
const MAX_STATE_BYTES: u64 = 64 << 10;

/// What `state.txt` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub sequence: u64,
    /// When the diff was cut, as written (`2020-05-12T06:13:02Z`), if given.
    pub timestamp: Option<String>,
}

/// Read a replication `state.txt`: `key=value` lines, `#` comments, colons escaped in
/// the Java properties way (`06\:13\:02`).
pub fn parse_state(text: &str) -> Result<State, String> {
    let mut sequence = None;
    let mut timestamp = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("state line without '=': {:.60}", line));
        };
        let value = value.trim().replace('\\', "");
        match key.trim() {
            "sequenceNumber" => {
                sequence = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("sequenceNumber {value:.40} is not a number"))?,
                )
            }
            "timestamp" => timestamp = Some(value),
            _ => {}
        }
    }
    Ok(State {
        sequence: sequence.ok_or("no sequenceNumber in the state file")?,
        timestamp,
    })
}

/// A diff's path in the replication folder: its sequence number zero-padded to nine
/// digits, split 3/3/3.
pub fn diff_path(sequence: u64) -> String {
    format!(
        "{:03}/{:03}/{:03}.osc.gz",
        sequence / 1_000_000,
        sequence / 1_000 % 1_000,
        sequence % 1_000
    )
}

/// Unpack and read a gzipped diff. `Err` if it is not gzip or is larger than `cap`
/// unpacked (the bool says which: true for over the cap).
pub fn read_diff(gzip: &[u8], cap: u64) -> Result<Diff, (bool, String)> {
    let mut xml = Vec::new();
    GzDecoder::new(gzip)
        .take(cap + 1)
        .read_to_end(&mut xml)
        .map_err(|e| (false, format!("not a gzip file: {e}")))?;
    if xml.len() as u64 > cap {
        return Err((true, format!("over {cap} bytes unpacked")));
    }
    Ok(osmchange::parse(xml.as_slice()))
}

/// Events with the instants they are due.
type Batch = Vec<(Instant, Event)>;

pub async fn run(url: &str, config: &SourceConfig, out: Delivery) {
    let (tx, rx) = mpsc::unbounded_channel();
    // Polling and pacing run side by side in this one task, so that a slow download
    // never delays a due event, and both stop when the source is dropped.
    tokio::join!(poll(url, config, &out, tx), pace(rx, &out));
}

/// Hand each event to the conductor when it is due.
async fn pace(mut batches: mpsc::UnboundedReceiver<Batch>, out: &Delivery) {
    let mut due: VecDeque<(Instant, Event)> = VecDeque::new();
    loop {
        let next = due.front().map(|(at, _)| *at);
        tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => {
                    due.extend(batch);
                    due.make_contiguous().sort_by_key(|(at, _)| *at);
                }
                None if due.is_empty() => return,
                None => {}
            },
            () = sleep_until(next), if next.is_some() => {
                if let Some((_, event)) = due.pop_front() {
                    out.send(event);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

async fn poll(
    url: &str,
    config: &SourceConfig,
    out: &Delivery,
    batches: mpsc::UnboundedSender<Batch>,
) {
    let base = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    // reqwest panics on building a client if no TLS provider was chosen; main.rs
    // installs one, but a library caller may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .user_agent(concat!("carillon/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(config.connect_timeout_s))
        .read_timeout(Duration::from_secs(config.silence_timeout_s))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cannot start an HTTP client for {url}: {e}");
            return std::future::pending().await;
        }
    };
    let interval = Duration::from_secs(config.poll_interval_s.max(1));
    let mut reconnect = Reconnect::new(url, config);
    let mut connected_at: Option<Instant> = None;
    // The last sequence fetched (or passed over); None until the first state is read.
    let mut done: Option<u64> = None;
    loop {
        let polled = Instant::now();
        let state = match get(&client, &format!("{base}state.txt"), MAX_STATE_BYTES).await {
            Ok(body) => match std::str::from_utf8(&body)
                .map_err(|_| "the state file is not text".to_owned())
                .and_then(parse_state)
            {
                Ok(state) => state,
                Err(e) => {
                    out.malformed();
                    reconnect.down(connected_at.take(), &e, out).await;
                    continue;
                }
            },
            Err(e) => {
                reconnect.down(connected_at.take(), &e, out).await;
                continue;
            }
        };
        if connected_at.is_none() {
            connected_at = Some(reconnect.up(out));
        }
        let newest = state.sequence;
        let first = match done {
            // Started, or the server's numbering went back (a new replication): begin
            // again from its latest diff.
            None => newest,
            Some(d) if newest < d => {
                tracing::warn!("{url}: sequence went back from {d} to {newest}; following it");
                newest
            }
            Some(d) => (d + 1).max(newest.saturating_sub(CATCH_UP - 1)),
        };
        if let Some(d) = done.filter(|&d| first > d + 1 && newest >= d) {
            tracing::warn!(
                "{url}: {} diffs behind; passed over {} to catch up",
                newest - d,
                first - d - 1
            );
        }
        if first <= newest {
            tracing::debug!(
                "{url}: diffs {first}..={newest} (state {})",
                state.timestamp.as_deref().unwrap_or("without a timestamp")
            );
            let slot = interval / (newest - first + 1) as u32;
            for (n, sequence) in (first..=newest).enumerate() {
                let diff_url = format!("{base}{}", diff_path(sequence));
                let gzip = match get(&client, &diff_url, MAX_DOWNLOAD_BYTES).await {
                    Ok(gzip) => gzip,
                    Err(e) => {
                        // Tried again, from this diff on, at the next poll.
                        reconnect.down(connected_at.take(), &e, out).await;
                        break;
                    }
                };
                let diff =
                    match tokio::task::spawn_blocking(move || read_diff(&gzip, MAX_DIFF_BYTES))
                        .await
                    {
                        Ok(read) => read,
                        Err(e) => Err((false, format!("reading stopped: {e}"))),
                    };
                done = Some(sequence);
                let diff = match diff {
                    Ok(diff) => diff,
                    Err((oversized, e)) => {
                        if oversized {
                            Stats::add(&out.stats.oversized, 1);
                        } else {
                            out.malformed();
                        }
                        tracing::warn!("{diff_url}: passed over: {e}");
                        continue;
                    }
                };
                if let Some(e) = &diff.error {
                    out.malformed();
                    tracing::warn!("{diff_url}: read up to an error: {e}");
                }
                if diff.bad_elements > 0 {
                    Stats::add(&out.stats.malformed, diff.bad_elements);
                }
                let start = polled + slot * n as u32;
                // The receiver lives as long as this future (both are in `run`).
                let _ = batches.send(schedule(&diff, start, slot));
            }
        }
        if connected_at.is_some() {
            tokio::time::sleep_until((polled + interval).into()).await;
        }
    }
}

/// When each changeset of a diff is due, in a slot of `slot` from `start` (see the
/// module's notes).
pub fn schedule(diff: &Diff, start: Instant, slot: Duration) -> Batch {
    let span = diff.span();
    diff.changesets
        .iter()
        .map(|c| {
            let offset = match (span, c.last) {
                (Some((earliest, latest)), Some(last)) => {
                    let place = (last - earliest) / (latest - earliest + 1.0);
                    slot.mul_f64(place.clamp(0.0, 1.0))
                }
                _ => Duration::ZERO,
            };
            (start + offset, c.event())
        })
        .collect()
}

/// GET a URL's body, refusing an error status or a body over `cap` bytes.
async fn get(client: &reqwest::Client, url: &str, cap: u64) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(format!("{url}: over {cap} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{url}: download broke off: {e}"))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(format!("{url}: over {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_replication_state_file() {
        let text = "#Tue May 12 06:13:04 UTC 2020\nsequenceNumber=4036241\ntimestamp=2020-05-12T06\\:13\\:02Z\n";
        let state = parse_state(text);
        assert_eq!(
            state,
            Ok(State {
                sequence: 4036241,
                timestamp: Some("2020-05-12T06:13:02Z".to_owned()),
            })
        );
        assert!(parse_state("<html>502 Bad Gateway</html>").is_err());
        assert!(parse_state("timestamp=2020-05-12T06\\:13\\:02Z\n").is_err());
        assert!(parse_state("sequenceNumber=12ab\n").is_err());
    }

    #[test]
    fn diff_paths_split_nine_digits_three_ways() {
        assert_eq!(diff_path(241), "000/000/241.osc.gz");
        assert_eq!(diff_path(4_036_241), "004/036/241.osc.gz");
        assert_eq!(diff_path(999_999_999), "999/999/999.osc.gz");
    }

    #[test]
    fn a_diff_over_the_cap_unpacked_or_not_gzip_is_refused() {
        use std::io::Write;
        let doc = format!("<osmChange>{}</osmChange>", " ".repeat(2000));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        assert!(gz.write_all(doc.as_bytes()).is_ok());
        let gzip = gz.finish().unwrap_or_default();
        assert!(read_diff(&gzip, 4000).is_ok());
        assert!(matches!(read_diff(&gzip, 1000), Err((true, _))));
        assert!(matches!(read_diff(doc.as_bytes(), 4000), Err((false, _))));
    }

    #[test]
    fn a_diff_is_spread_over_its_slot_by_timestamp() {
        let doc = r#"<osmChange><create>
            <node user="a" changeset="1" timestamp="2020-05-12T06:12:00Z"/>
            <node user="b" changeset="2" timestamp="2020-05-12T06:12:30Z"/>
            <node user="b" changeset="2" timestamp="2020-05-12T06:12:59Z"/>
            <node user="c" changeset="3"/>
            </create></osmChange>"#;
        let diff = osmchange::parse(doc.as_bytes());
        let start = Instant::now();
        let slot = Duration::from_secs(60);
        let due: Vec<Duration> = schedule(&diff, start, slot)
            .iter()
            .map(|(at, _)| *at - start)
            .collect();
        // A 60-second span: second 59 is the start of the last of sixty shares.
        assert_eq!(
            due,
            vec![Duration::ZERO, Duration::from_secs(59), Duration::ZERO]
        );
    }
}
