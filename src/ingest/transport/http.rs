//! Streams over HTTP: Server-Sent Events (Wikimedia EventStreams, Mastodon) and NDJSON,
//! read as the body arrives and reconnected forever.
//!
//! SSE is read as the WHATWG spec says (fields `data`, `event`, `id`; `:` comments;
//! a blank line dispatches; CR, LF or CRLF ends a line), and the id of the last event
//! delivered goes back as `Last-Event-ID` on every reconnection, so that a feed that
//! keeps its history (EventStreams does, by Kafka offsets) resumes where it stopped:
//! nothing lost, nothing played twice. A connection with no byte at all (not even a
//! heartbeat comment) for the silence timeout is presumed dead. A line over the frame
//! limit is counted as oversized and its bytes dropped as they arrive, never held
//! whole, and the connection stays up: unlike a websocket frame, the end of an
//! over-long line is found by reading on.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT};

use super::reconnect::Reconnect;
use crate::config::SourceConfig;
use crate::ingest::format::Message;
use crate::ingest::{Delivery, HttpLines};
use crate::stats::Stats;

/// Wikimedia refuses clients that do not say who they are.
const USER_AGENT: &str = concat!(
    "carillon/",
    env!("CARGO_PKG_VERSION"),
    " (live contribution streams made audible; rust-reqwest)"
);

/// Why a connection ended.
enum Ended {
    Closed,
    Error(String),
    Silent,
}

pub async fn run(
    url: &str,
    lines: HttpLines,
    bearer: Option<String>,
    config: &SourceConfig,
    out: Delivery,
) {
    // reqwest panics on building a client if no TLS provider was chosen; main.rs
    // installs one, but a library caller may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connect_timeout = Duration::from_secs(config.connect_timeout_s);
    let silence_timeout = Duration::from_secs(config.silence_timeout_s);
    let mut reconnect = Reconnect::new(url, config);
    let client = loop {
        match reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .build()
        {
            Ok(client) => break client,
            Err(e) => {
                reconnect
                    .down(None, &format!("cannot make an HTTP client: {e}"), &out)
                    .await
            }
        }
    };
    let accept = match lines {
        HttpLines::Sse => "text/event-stream",
        HttpLines::Ndjson => "application/json",
    };
    let mut last_id: Option<HeaderValue> = None;
    loop {
        let mut request = client.get(url).header(ACCEPT, accept);
        // An empty `id:` is the server forgetting the position: nothing to resume.
        if let Some(id) = last_id.as_ref().filter(|id| !id.is_empty()) {
            request = request.header("Last-Event-ID", id.clone());
        }
        if let Some(token) = &bearer {
            request = request.bearer_auth(token);
        }
        // The client's connect timeout covers TCP and TLS; this one also covers a
        // server that accepts and never answers.
        let Some(response) = reconnect
            .connect(connect_timeout, request.send(), &out)
            .await
        else {
            continue;
        };
        let status = response.status();
        if !status.is_success() {
            reconnect
                .down(None, &format!("the server answered {status}"), &out)
                .await;
            continue;
        }
        let connected_at = reconnect.up(&out);
        let mut splitter = Splitter::new(config.max_frame_bytes, lines == HttpLines::Sse);
        let mut reader = match lines {
            HttpLines::Sse => Reader::Sse(Sse::new(config.max_frame_bytes)),
            HttpLines::Ndjson => Reader::Ndjson,
        };
        let mut body = response.bytes_stream();
        let ended = loop {
            let chunk = match tokio::time::timeout(silence_timeout, body.next()).await {
                Err(_) => break Ended::Silent,
                Ok(None) => break Ended::Closed,
                Ok(Some(Err(e))) => break Ended::Error(e.to_string()),
                Ok(Some(Ok(chunk))) => chunk,
            };
            splitter.feed(&chunk, |piece| reader.piece(piece, &out, &mut last_id));
        };
        let reason = match ended {
            Ended::Closed => "the server closed the connection".to_owned(),
            Ended::Error(e) => format!("connection lost: {e}"),
            Ended::Silent => format!("no byte for {} s", silence_timeout.as_secs()),
        };
        reconnect.down(Some(connected_at), &reason, &out).await;
    }
}

/// What the splitter hands on: a whole line (without its end), or word that a line
/// was over the limit and dropped.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Line(&'a [u8]),
    Oversized,
}

/// Cuts a byte stream into lines, holding at most `max` bytes of one: the bytes of a
/// longer line are dropped as they arrive, up to its end.
struct Splitter {
    partial: Vec<u8>,
    max: usize,
    /// Whether a lone CR ends a line too (SSE), not only LF.
    cr_ends_line: bool,
    /// In the middle of a line already reported oversized.
    dropping: bool,
    /// The last chunk ended on a CR, so an LF first in the next one ends nothing.
    after_cr: bool,
    /// Before the first byte of the stream, where SSE allows a byte order mark.
    at_start: bool,
}

impl Splitter {
    fn new(max: usize, cr_ends_line: bool) -> Self {
        Self {
            partial: Vec::new(),
            max,
            cr_ends_line,
            dropping: false,
            after_cr: false,
            at_start: true,
        }
    }

    fn feed(&mut self, mut chunk: &[u8], mut each: impl FnMut(Piece<'_>)) {
        if self.at_start && !chunk.is_empty() {
            // Only a whole mark is skipped; split over chunks, it is just bytes.
            if let Some(rest) = chunk.strip_prefix("\u{feff}".as_bytes()) {
                chunk = rest;
            }
            self.at_start = false;
        }
        if self.after_cr && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.after_cr = false;
        }
        while !chunk.is_empty() {
            let end = if self.cr_ends_line {
                chunk.iter().position(|&b| b == b'\n' || b == b'\r')
            } else {
                chunk.iter().position(|&b| b == b'\n')
            };
            let Some(end) = end else {
                if !self.dropping {
                    if self.partial.len() + chunk.len() > self.max {
                        self.partial = Vec::new();
                        self.dropping = true;
                        each(Piece::Oversized);
                    } else {
                        self.partial.extend_from_slice(chunk);
                    }
                }
                return;
            };
            let line = &chunk[..end];
            let mut rest = &chunk[end + 1..];
            if chunk[end] == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.dropping {
                self.dropping = false;
            } else if self.partial.len() + line.len() > self.max {
                self.partial = Vec::new();
                each(Piece::Oversized);
            } else if self.partial.is_empty() {
                each(Piece::Line(self.strip(line)));
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                each(Piece::Line(self.strip(&whole)));
                whole.clear();
                self.partial = whole;
            }
            chunk = rest;
        }
    }

    /// NDJSON written on Windows ends its lines with CRLF.
    fn strip<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        match line {
            [head @ .., b'\r'] if !self.cr_ends_line => head,
            _ => line,
        }
    }
}

enum Reader {
    Sse(Sse),
    Ndjson,
}

impl Reader {
    fn piece(&mut self, piece: Piece<'_>, out: &Delivery, last_id: &mut Option<HeaderValue>) {
        match self {
            Reader::Sse(sse) => sse.piece(piece, out, last_id),
            Reader::Ndjson => match piece {
                Piece::Oversized => Stats::add(&out.stats.oversized, 1),
                Piece::Line(line) if line.trim_ascii().is_empty() => {}
                Piece::Line(line) => match std::str::from_utf8(line) {
                    Ok(text) => out.message(&Message::text(text)),
                    Err(_) => out.malformed(),
                },
            },
        }
    }
}

/// One connection's SSE event being put together.
struct Sse {
    data: String,
    event: String,
    /// The id the event will carry once dispatched; until then the last one stands.
    id: Option<HeaderValue>,
    /// Part of the event was dropped (over the limit, or not UTF-8): so is the rest.
    broken: bool,
    max: usize,
}

impl Sse {
    fn new(max: usize) -> Self {
        Self {
            data: String::new(),
            event: String::new(),
            id: None,
            broken: false,
            max,
        }
    }

    fn piece(&mut self, piece: Piece<'_>, out: &Delivery, last_id: &mut Option<HeaderValue>) {
        let line = match piece {
            Piece::Line(line) => line,
            Piece::Oversized => {
                if !self.broken {
                    Stats::add(&out.stats.oversized, 1);
                }
                self.break_event();
                return;
            }
        };
        if line.is_empty() {
            self.dispatch(out, last_id);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            // What is left of a dropped event is dropped too, but its id still counts.
            b"data" | b"event" if self.broken => {}
            b"data" => {
                let Ok(value) = std::str::from_utf8(value) else {
                    out.malformed();
                    self.break_event();
                    return;
                };
                if self.data.len() + value.len() + 1 > self.max {
                    Stats::add(&out.stats.oversized, 1);
                    self.break_event();
                    return;
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            b"event" => match std::str::from_utf8(value) {
                Ok(value) => value.clone_into(&mut self.event),
                Err(_) => {
                    out.malformed();
                    self.break_event();
                }
            },
            // The spec ignores an id with a NUL; one that cannot go back in a header
            // could not resume anything either.
            b"id" if !value.contains(&0) => {
                if let Ok(id) = HeaderValue::from_bytes(value) {
                    self.id = Some(id);
                }
            }
            // `retry` is the server's advice on reconnection delays: the backoff
            // decides those, for every transport alike.
            _ => {}
        }
    }

    fn break_event(&mut self) {
        self.broken = true;
        self.data = String::new();
    }

    fn dispatch(&mut self, out: &Delivery, last_id: &mut Option<HeaderValue>) {
        if let Some(id) = self.id.take() {
            // Even an event that was dropped is past: resuming before it would only
            // drop it again.
            *last_id = Some(id);
        }
        if !self.broken && !self.data.is_empty() {
            self.data.pop();
            let event = (!self.event.is_empty()).then_some(self.event.as_str());
            out.message(&Message {
                event,
                data: &self.data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.broken = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the splitter hands on for these chunks, lines as text.
    fn split(max: usize, sse: bool, chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = Splitter::new(max, sse);
        let mut pieces = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |p| {
                pieces.push(match p {
                    Piece::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Piece::Oversized => "<oversized>".to_owned(),
                })
            });
        }
        pieces
    }

    #[test]
    fn cr_lf_and_crlf_end_lines_even_across_chunks() {
        let got = split(
            100,
            true,
            &[
                b"\xef\xbb\xbfa\r",
                b"\nb\rc\n",
                b"\r",
                b"\nd\r\n\r\ne",
                b"f\n",
            ],
        );
        assert_eq!(got, ["a", "b", "c", "", "d", "", "ef"]);
    }

    #[test]
    fn ndjson_lines_end_at_lf_only_and_lose_a_trailing_cr() {
        let got = split(100, false, &[b"{\"a\":\r1}\r\n{\"b\"", b":2}\n"]);
        assert_eq!(got, ["{\"a\":\r1}", "{\"b\":2}"]);
    }

    #[test]
    fn an_oversized_line_is_never_held_whole_and_the_next_line_is_whole() {
        let mut splitter = Splitter::new(1024, true);
        let mut pieces = Vec::new();
        let block = vec![b'x'; 700];
        let mut fed = 0;
        for i in 0..10_000 {
            // 7 MB of one line, then the next line.
            let chunk: &[u8] = if i == 9_999 { b"x\nnext\n" } else { &block };
            fed += chunk.len();
            splitter.feed(chunk, |p| pieces.push(format!("{p:?}")));
            assert!(splitter.partial.capacity() <= 1024, "after {fed} bytes");
        }
        assert_eq!(
            pieces,
            [
                "Oversized".to_owned(),
                format!("{:?}", Piece::Line(b"next"))
            ]
        );
        // A line of exactly the limit is not oversized.
        let exact = "y".repeat(1024) + "\n";
        assert_eq!(
            split(
                1024,
                true,
                &[&exact.as_bytes()[..10], &exact.as_bytes()[10..]]
            ),
            ["y".repeat(1024)]
        );
    }
}
