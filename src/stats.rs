//! Counters shared by every part of a running carillon: what arrived, what sounded, what
//! was skipped and why. Plain atomics, so the audio thread may update its own without
//! locking, and the status line and final summary read them from anywhere.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Stats {
    /// Messages parsed into events that can sound (edits, new pages, account creations).
    pub events: AtomicU64,
    /// Notes handed to the engine.
    pub notes: AtomicU64,
    /// Notes over the density limit.
    pub throttled: AtomicU64,
    /// Events left out by a filter or of a kind that does not sound.
    pub filtered: AtomicU64,
    /// Messages that could not be understood (broken JSON, wrong types, binary junk).
    pub malformed: AtomicU64,
    /// Frames over the size limit.
    pub oversized: AtomicU64,
    /// Successful connections of network sources.
    pub connects: AtomicU64,
    /// Connections lost or refused.
    pub disconnects: AtomicU64,
    /// Notes that could not reach the engine because its queue was full.
    pub engine_full: AtomicU64,
    /// Events dropped because the conductor had fallen behind (its queue was full).
    pub backlog: AtomicU64,
    /// Notes the score played that nobody heard: no audio device was open (lost, or
    /// not yet found), or carillon was stopping.
    pub silenced: AtomicU64,
    /// Requests the local ingest endpoint refused (a wrong or missing signature, a body
    /// too big, not the source's kind of request): nothing of them plays.
    pub refused: AtomicU64,
    /// Whether a network source is connected right now.
    pub connected: AtomicBool,
    /// Messages understood but of a kind that never sounds (canaries, categorizations,
    /// other log entries…), by kind. Only the sources' tasks count these (never the
    /// audio thread), so a lock is fine.
    pub skipped: Mutex<BTreeMap<Cow<'static, str>, u64>>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// Count a message of a kind that never sounds.
    pub fn skip(&self, kind: Cow<'static, str>) {
        if let Ok(mut skipped) = self.skipped.lock() {
            *skipped.entry(kind).or_insert(0) += 1;
        }
    }

    /// The skipped kinds and their counts.
    pub fn skipped(&self) -> BTreeMap<Cow<'static, str>, u64> {
        self.skipped.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The counters of several sources added up.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let total = Stats::default();
        for s in all {
            for (sum, one) in total.counters().into_iter().zip(s.counters()) {
                Stats::add(sum, Stats::get(one));
            }
            if s.connected.load(Relaxed) {
                total.connected.store(true, Relaxed);
            }
            for (kind, n) in s.skipped() {
                if let Ok(mut skipped) = total.skipped.lock() {
                    *skipped.entry(kind).or_insert(0) += n;
                }
            }
        }
        total
    }

    fn counters(&self) -> [&AtomicU64; 12] {
        [
            &self.events,
            &self.notes,
            &self.throttled,
            &self.filtered,
            &self.malformed,
            &self.oversized,
            &self.connects,
            &self.disconnects,
            &self.engine_full,
            &self.backlog,
            &self.silenced,
            &self.refused,
        ]
    }

    /// One line, `key=value` pairs, for logs and tests.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "events={} notes={} throttled={} filtered={} malformed={} oversized={} connects={} disconnects={} engine_full={} backlog={} silenced={} refused={}",
            Self::get(&self.events),
            Self::get(&self.notes),
            Self::get(&self.throttled),
            Self::get(&self.filtered),
            Self::get(&self.malformed),
            Self::get(&self.oversized),
            Self::get(&self.connects),
            Self::get(&self.disconnects),
            Self::get(&self.engine_full),
            Self::get(&self.backlog),
            Self::get(&self.silenced),
            Self::get(&self.refused),
        );
        let skipped = self.skipped();
        line.push_str(&format!(" skipped={}", skipped.values().sum::<u64>()));
        for (kind, n) in skipped {
            line.push_str(&format!(" skipped.{kind}={n}"));
        }
        line
    }
}

/// Events a minute per source, for the status line and the display: the sources'
/// `events` counters sampled over a sliding minute.
#[derive(Debug, Default)]
pub struct EventRates {
    history: VecDeque<(Instant, Vec<u64>)>,
}

impl EventRates {
    pub fn new() -> Self {
        Self {
            history: VecDeque::with_capacity(64),
        }
    }

    /// Sample the counters at `now`; each source's events a minute over the last
    /// minute, or since the first sample if that is more recent (0 at the first).
    pub fn sample(&mut self, stats: &[Arc<Stats>], now: Instant) -> Vec<f64> {
        let events: Vec<u64> = stats.iter().map(|s| Stats::get(&s.events)).collect();
        self.history.push_back((now, events.clone()));
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.history.pop_front();
        }
        let oldest = self
            .history
            .front()
            .filter(|(t, n)| now > *t && n.len() == events.len());
        events
            .iter()
            .enumerate()
            .map(|(i, &count)| match oldest {
                Some((t, n)) => {
                    count.saturating_sub(n[i]) as f64 * 60.0 / now.duration_since(*t).as_secs_f64()
                }
                None => 0.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod rates {
    use super::*;

    #[test]
    fn rates_are_per_minute_over_the_last_minute() {
        let stats = vec![Arc::new(Stats::default()), Arc::new(Stats::default())];
        let mut rates = EventRates::new();
        let t0 = Instant::now();
        assert_eq!(rates.sample(&stats, t0), vec![0.0, 0.0]);
        Stats::add(&stats[0].events, 30);
        let r = rates.sample(&stats, t0 + Duration::from_secs(30));
        assert!((r[0] - 60.0).abs() < 1e-9 && r[1] == 0.0, "{r:?}");
        // Ninety seconds in, the first sample has left the minute: 30 events in the
        // last 60 s, none since.
        let r = rates.sample(&stats, t0 + Duration::from_secs(90));
        assert!(r[0].abs() < 1e-9, "{r:?}");
    }
}
