//! Reconnection, once for every transport: exponential backoff with jitter (started
//! again once a connection has stayed up long enough to be called healthy), the
//! source's connected state and counters, and a feed's ups and downs in the log.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::SourceConfig;
use crate::ingest::Delivery;
use crate::logs::Repeated;
use crate::rng::fnv1a;
use crate::stats::Stats;

/// One source's connection attempts.
pub struct Reconnect {
    url: String,
    backoff: Backoff,
    healthy_after: Duration,
    outages: Outages,
}

impl Reconnect {
    pub fn new(url: &str, config: &SourceConfig) -> Self {
        Self {
            url: url.to_owned(),
            backoff: Backoff::new(
                Duration::from_millis(config.backoff_initial_ms),
                Duration::from_millis(config.backoff_max_ms.max(config.backoff_initial_ms)),
                fnv1a(url.as_bytes()) ^ std::process::id() as u64,
            ),
            healthy_after: Duration::from_secs(config.healthy_after_s),
            outages: Outages::new(),
        }
    }

    /// Open a connection with `attempt`, given `timeout` to succeed. A failure or a
    /// timeout is reported as the feed going down, its backoff waited out, and gives
    /// None: the caller tries again.
    pub async fn connect<T, E: std::fmt::Display>(
        &mut self,
        timeout: Duration,
        attempt: impl std::future::Future<Output = Result<T, E>>,
        out: &Delivery,
    ) -> Option<T> {
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(connection)) => Some(connection),
            Ok(Err(e)) => {
                self.down(None, &format!("cannot connect: {e}"), out).await;
                None
            }
            Err(_) => {
                self.down(None, "connection timed out", out).await;
                None
            }
        }
    }

    /// A connection is open: count it, and say so if the feed was down. Returns when.
    pub fn up(&mut self, out: &Delivery) -> Instant {
        Stats::add(&out.stats.connects, 1);
        out.stats.connected.store(true, Relaxed);
        self.outages.up(&self.url);
        Instant::now()
    }

    /// A connection failed to open (`connected_at` None) or ended: count it, say the
    /// feed is down (once per outage, at most once a minute), and wait out the backoff.
    pub async fn down(&mut self, connected_at: Option<Instant>, reason: &str, out: &Delivery) {
        out.stats.connected.store(false, Relaxed);
        if connected_at.is_some_and(|t| t.elapsed() >= self.healthy_after) {
            self.backoff.reset();
        }
        Stats::add(&out.stats.disconnects, 1);
        let delay = self.backoff.delay();
        self.outages.down(&self.url, reason, delay);
        tokio::time::sleep(delay).await;
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
