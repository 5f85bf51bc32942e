//! The websocket client: connects to a wikimon feed and keeps connecting, forever.
//!
//! Dropped connections are retried with exponential backoff and jitter (reset once a
//! connection has stayed up long enough to be called healthy). Frames that are not
//! text, or not a wikimon message, are counted and skipped. The frame limit is a memory
//! limit: the protocol layer refuses a frame (or message) over it from its header,
//! before reading its payload, so a hostile sender costs carillon nothing; carillon
//! then counts it as oversized, hangs up and reconnects, as it must, since the rest of
//! that frame is still on its way.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::wikimon::parse_wikimon;
use super::Delivery;
use crate::backoff::Backoff;
use crate::config::SourceConfig;
use crate::logs::Repeated;
use crate::rng::fnv1a;
use crate::stats::Stats;

/// Why a connection ended.
enum Ended {
    Closed,
    Error(String),
    Silent,
}

pub async fn run(url: &str, config: &SourceConfig, out: Delivery) {
    let mut backoff = Backoff::new(
        Duration::from_millis(config.backoff_initial_ms),
        Duration::from_millis(config.backoff_max_ms.max(config.backoff_initial_ms)),
        fnv1a(url.as_bytes()) ^ std::process::id() as u64,
    );
    let healthy_after = Duration::from_secs(config.healthy_after_s);
    // The longest wait for a connection (TCP, TLS and the websocket handshake) to open,
    // and for a message (or a ping) on an open one: a server that accepts and never
    // answers, or stalls in the middle of a frame, is dropped and tried again.
    let connect_timeout = Duration::from_secs(config.connect_timeout_s);
    let silence_timeout = Duration::from_secs(config.silence_timeout_s);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    let mut outages = Outages::new();
    loop {
        let attempt = tokio::time::timeout(
            connect_timeout,
            tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true),
        )
        .await;
        let stream = match attempt {
            Ok(Ok((stream, _response))) => stream,
            Ok(Err(e)) => {
                retry(
                    &mut backoff,
                    url,
                    &format!("cannot connect: {e}"),
                    &out,
                    &mut outages,
                )
                .await;
                continue;
            }
            Err(_) => {
                retry(
                    &mut backoff,
                    url,
                    "connection timed out",
                    &out,
                    &mut outages,
                )
                .await;
                continue;
            }
        };
        Stats::add(&out.stats.connects, 1);
        out.stats
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        outages.up(url);
        let connected_at = Instant::now();
        let ended = read(stream, silence_timeout, &out).await;
        out.stats
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if connected_at.elapsed() >= healthy_after {
            backoff.reset();
        }
        let reason = match ended {
            Ended::Closed => "the server closed the connection".to_owned(),
            Ended::Error(e) => format!("connection lost: {e}"),
            Ended::Silent => format!("no message for {} s", silence_timeout.as_secs()),
        };
        retry(&mut backoff, url, &reason, &out, &mut outages).await;
    }
}

/// The feed's ups and downs, for the log: a line when it goes down and one when it is
/// back; but a feed that drops again and again gets at most one such pair a minute,
/// the next down line saying how many outages it stands for.
struct Outages {
    since: Option<Instant>,
    lines: Repeated,
    /// Whether the current outage was announced (so its end is too).
    announced: bool,
    first: bool,
}

impl Outages {
    fn new() -> Self {
        Self {
            since: None,
            lines: Repeated::new(Duration::from_secs(60)),
            announced: false,
            first: true,
        }
    }

    fn down(&mut self, url: &str, reason: &str, delay: Duration) {
        if self.since.is_some() {
            tracing::debug!(
                "feed {url} still down ({reason}); next try in {:.1} s",
                delay.as_secs_f64()
            );
            return;
        }
        self.since = Some(Instant::now());
        self.announced = match self.lines.count(1, Instant::now()) {
            Some(n) => {
                let more = if n > 1 {
                    format!(" ({} outages since the last report)", n)
                } else {
                    String::new()
                };
                tracing::warn!(
                    "feed {url} is down ({reason}){more}; retrying in {:.1} s, then with growing delays",
                    delay.as_secs_f64()
                );
                true
            }
            None => {
                tracing::debug!("feed {url} is down again ({reason})");
                false
            }
        };
    }

    fn up(&mut self, url: &str) {
        match self.since.take() {
            Some(since) if self.announced => tracing::info!(
                "feed {url} is back after {:.1} s down",
                since.elapsed().as_secs_f64()
            ),
            Some(_) => tracing::debug!("feed {url} is back"),
            None if self.first => tracing::info!("connected to {url}"),
            None => tracing::debug!("connected to {url} again"),
        }
        self.first = false;
    }
}

/// Count the failure, say the feed is down (once per outage, at most once a minute),
/// and wait out the backoff.
async fn retry(
    backoff: &mut Backoff,
    url: &str,
    reason: &str,
    out: &Delivery,
    outages: &mut Outages,
) {
    Stats::add(&out.stats.disconnects, 1);
    let delay = backoff.delay();
    outages.down(url, reason, delay);
    tokio::time::sleep(delay).await;
}

async fn read<S>(mut stream: S, silence_timeout: Duration, out: &Delivery) -> Ended
where
    S: StreamExt<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let next = match tokio::time::timeout(silence_timeout, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Ended::Silent,
        };
        match next {
            None => return Ended::Closed,
            Some(Ok(Message::Text(text))) => match parse_wikimon(text.as_str()) {
                Ok(event) => out.send(event),
                Err(e) => {
                    out.malformed();
                    tracing::debug!("skipped a message: {e}");
                }
            },
            Some(Ok(Message::Binary(_))) => out.malformed(),
            Some(Ok(Message::Close(_))) => return Ended::Closed,
            // Pings are answered by the protocol layer as the stream is read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(WsError::Capacity(e))) => {
                Stats::add(&out.stats.oversized, 1);
                return Ended::Error(format!("{e}: hung up rather than read it"));
            }
            Some(Err(WsError::Utf8(e))) => {
                out.malformed();
                return Ended::Error(format!("text frame was not UTF-8: {e}"));
            }
            Some(Err(e)) => return Ended::Error(e.to_string()),
        }
    }
}
