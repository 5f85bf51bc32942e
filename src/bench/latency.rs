//! `carillon bench latency`: the whole path, in real time, on the audio device.
//!
//! A websocket server inside the bench (on 127.0.0.1) sends wikimon edits at a chosen
//! rate; carillon's own client receives them, the score maps them and the engine
//! schedules them as `play` does. Every device callback reports when it ran, which
//! stream frames it wrote and when the device says they will be heard, so each note's
//! latency is measured from the frame's arrival to the callback that writes its first
//! audible sample, and to the playback instant the device reports.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use super::Timing;
use crate::conductor::scheduling_latency;
use crate::config::{Config, Schedule};
use crate::engine::{engine, ASAP};
use crate::ingest::{self, Delivery, Source};
use crate::output::device::{CallbackRecord, DeviceOutput, DeviceRequest};
use crate::output::realtime::{promote_event_path, RealtimeStatus};
use crate::score::{Outcome, Score};
use crate::stats::Stats;

pub struct LatencyBenchOptions {
    /// Settings to measure (scheduling latency, limiter look-ahead…); the throttle and
    /// filters are lifted so that every event sent is measured.
    pub config: Config,
    pub host: Option<String>,
    pub realtime_priority: i32,
    pub buffer_frames: Vec<u32>,
    /// The schedules to measure, each at every buffer size.
    pub schedules: Vec<Schedule>,
    pub events: usize,
    /// Events per second.
    pub rate: f64,
    pub device: Option<String>,
    pub sample_rate: u32,
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub buffer_frames: u32,
    /// `fixed` (each note `scheduling_latency_ms` after its arrival) or `asap` (in the
    /// first block not yet rendered).
    pub schedule: &'static str,
    pub events_sent: usize,
    pub notes_measured: usize,
    /// The fixed delay from arrival to scheduled start, in force for this buffer size
    /// (0 for `asap`, which has none).
    pub scheduling_latency_ms: f64,
    /// The master bus's look-ahead (the limiter), included in the figures below.
    pub bus_lookahead_ms: f64,
    /// Frame arrival → the note in the engine's queue: the network thread's wake-up,
    /// the message's parsing, the hand-over to the conductor and the score.
    pub arrival_to_queue: Timing,
    /// Frame arrival → the callback that writes the note's first audible sample.
    pub arrival_to_write: Timing,
    /// Frame arrival → the instant the device reports that sample will be heard.
    pub arrival_to_playback: Timing,
    /// Standard deviation of arrival → playback.
    pub playback_jitter_us: f64,
    /// Time between callbacks, and what it should be.
    pub callback_interval: Timing,
    pub expected_interval_us: f64,
    pub xruns: u64,
    /// Notes that reached the engine after their block was rendered (they start up to one
    /// block late, so the figures above are exact only when this is 0).
    pub late: u64,
    /// Whether the audio thread ran with real-time priority.
    pub realtime: bool,
    /// Whether the network runtime's worker did too (it is raised when the audio thread
    /// gets it).
    pub event_path_realtime: bool,
}

/// One edit message of the bench's feed.
fn message(k: usize) -> String {
    serde_json::json!({
        "action": "edit",
        "change_size": 5 + (k * 37) % 3000,
        "page_title": format!("Bench note {k}"),
        "ns": "Main",
        "user": "carillon-bench",
        "is_anon": false,
        "is_bot": false,
        "is_minor": false,
        "is_new": false,
        "url": "",
        "summary": "",
    })
    .to_string()
}

/// Serve one connection: `events` edits at `rate` per second, then stay open.
async fn serve(listener: tokio::net::TcpListener, events: usize, rate: f64) {
    let Ok((tcp, _)) = listener.accept().await else {
        return;
    };
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    // Read (and so answer pings) while sending.
    tokio::spawn(async move { while rx.next().await.is_some() {} });
    let start = tokio::time::Instant::now() + Duration::from_millis(300);
    let interval = Duration::from_secs_f64(1.0 / rate);
    for k in 0..events {
        tokio::time::sleep_until(start + interval * k as u32).await;
        if tx.send(Message::text(message(k))).await.is_err() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

fn std_dev_us(samples: &[Duration]) -> f64 {
    let n = samples.len().max(1) as f64;
    let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let mean = us.iter().sum::<f64>() / n;
    (us.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Where a measured note was scheduled: at a frame, or as soon as possible once it was
/// in the engine's queue at this instant.
#[derive(Clone, Copy)]
enum Start {
    At(u64),
    Asap(Instant),
}

fn run_one(
    o: &LatencyBenchOptions,
    buffer_frames: u32,
    schedule: Schedule,
    runtime: &tokio::runtime::Runtime,
) -> Result<LatencyRow> {
    let sr = o.sample_rate as f64;
    let mut config = o.config.clone();
    // The bench sends what it sends: nothing is throttled or filtered.
    config.score.throttle.max_notes = usize::MAX / 2;
    config.score.filter.namespaces.clear();
    config.score.filter.bots = true;
    config.engine.polyphony = config.engine.polyphony.max(256);
    let instruments = crate::instrument::Instruments::built_in()?;
    let mut score = Score::new(&config.score, &instruments.names())?;
    let (mut control, audio) = engine(&config.engine, instruments, sr);
    let (records_tx, mut records_rx) = rtrb::RingBuffer::<CallbackRecord>::new(1 << 16);
    let request = DeviceRequest {
        host: o.host.clone(),
        device: o.device.clone(),
        sample_rate: o.sample_rate,
        buffer_frames,
        // A row is measured at the buffer size it names, or not at all.
        exact_buffer: true,
        realtime_priority: o.realtime_priority,
    };
    let device = DeviceOutput::start_measured(&request, audio, Some(records_tx))?;
    let latency = match schedule {
        Schedule::Fixed => scheduling_latency(
            config.engine.latency_ms,
            config.engine.margin_ms,
            sr,
            buffer_frames,
        ),
        Schedule::Asap => 0,
    };
    let lookahead =
        crate::engine::limiter::lookahead_frames(f64::from(config.engine.limiter.attack_ms), sr)
            as u64;

    // The feed stands for a server on another machine: it runs on its own thread, so
    // that its sending is not charged to carillon's path, and carillon's network
    // thread is woken by the packet as it would be by a real one.
    let feed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the bench feed's runtime")?;
    let listener = feed
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("cannot open the bench's websocket server on 127.0.0.1")?;
    let url = format!("ws://{}/", listener.local_addr()?);
    let server = feed.spawn(serve(listener, o.events, o.rate));
    let (tx, rx) = crossbeam_channel::bounded(4096);
    let stats = Arc::new(Stats::default());
    let client = runtime.spawn(ingest::run(
        Source::WebSocket { url, bearer: None },
        config.source.clone(),
        1.0,
        Delivery::new(tx, stats.clone(), 0, crate::ingest::Format::Wikimon),
    ));

    // As in `play`: once the audio thread has real-time priority, so do the threads
    // that bring it its notes (this one, and the runtime's worker).
    let started = Instant::now();
    while device.health.callbacks.load(Relaxed) == 0 && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let event_path = Arc::new(RealtimeStatus::default());
    if let Some(priority) = device.health.realtime.event_path_priority() {
        promote_event_path(runtime.handle(), priority, event_path.clone());
    }
    let mut scheduled: Vec<(Instant, Start)> = Vec::with_capacity(o.events);
    let mut to_queue = Vec::with_capacity(o.events);
    let mut records: Vec<CallbackRecord> = Vec::with_capacity(1 << 16);
    let deadline = Instant::now() + Duration::from_secs_f64(o.events as f64 / o.rate + 10.0);
    while scheduled.len() < o.events && Instant::now() < deadline {
        if let Ok(arrival) = rx.recv_timeout(Duration::from_millis(5)) {
            let (frame, start) = match schedule {
                Schedule::Fixed => {
                    let frame = control.frame_at(arrival.at) + latency;
                    (frame, Start::At(frame))
                }
                Schedule::Asap => (ASAP, Start::Asap(arrival.at)),
            };
            let at = control.start_frame(frame);
            if let Outcome::Play(note) = score.map(&arrival.event, at as f64 / sr) {
                if control.play(&note, frame).is_ok() {
                    let queued = Instant::now();
                    // An ASAP note starts in the first callback that begins once it is
                    // in the queue.
                    let start = match start {
                        Start::Asap(_) => Start::Asap(queued),
                        at => at,
                    };
                    scheduled.push((arrival.at, start));
                    to_queue.push(queued.saturating_duration_since(arrival.at));
                }
            }
        }
        while let Ok(r) = records_rx.pop() {
            records.push(r);
        }
        control.collect();
    }
    // Let the last notes reach the device.
    std::thread::sleep(Duration::from_secs_f64(
        (latency + lookahead + 4 * buffer_frames as u64) as f64 / sr + 0.05,
    ));
    let xruns = device.health.xruns.load(Relaxed);
    let late = control.shared().late.load(Relaxed);
    let realtime = device.health.realtime.is_realtime();
    let event_path_realtime = event_path.is_realtime();
    drop(device);
    while let Ok(r) = records_rx.pop() {
        records.push(r);
    }
    client.abort();
    server.abort();

    let mut to_write = Vec::with_capacity(scheduled.len());
    let mut to_playback = Vec::with_capacity(scheduled.len());
    for &(arrival, start) in &scheduled {
        let frame = match start {
            Start::At(frame) => frame,
            // A note queued during the few microseconds between a callback's start and
            // its first block is taken by that callback but counted here in the next
            // one: one period too many, never too few.
            Start::Asap(queued) => match records.iter().find(|r| r.at >= queued) {
                Some(r) => r.first_frame,
                None => continue,
            },
        };
        let target = frame + lookahead;
        let i = records.partition_point(|r| r.first_frame + r.frames as u64 <= target);
        let Some(r) = records.get(i).filter(|r| r.first_frame <= target) else {
            continue;
        };
        let write = r.at.saturating_duration_since(arrival);
        let within = Duration::from_secs_f64((target - r.first_frame) as f64 / sr);
        to_write.push(write);
        to_playback.push(write + r.playback_delay + within);
    }
    let intervals: Vec<Duration> = records
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect();
    let expected_interval_us = records
        .first()
        .map_or(buffer_frames as f64, |r| r.frames as f64)
        / sr
        * 1e6;
    Ok(LatencyRow {
        buffer_frames,
        schedule: schedule.name(),
        events_sent: o.events,
        notes_measured: to_playback.len(),
        scheduling_latency_ms: latency as f64 / sr * 1e3,
        bus_lookahead_ms: lookahead as f64 / sr * 1e3,
        playback_jitter_us: std_dev_us(&to_playback),
        arrival_to_queue: Timing::of(to_queue),
        arrival_to_write: Timing::of(to_write),
        arrival_to_playback: Timing::of(to_playback),
        callback_interval: Timing::of(intervals),
        expected_interval_us,
        xruns,
        late,
        realtime,
        event_path_realtime,
    })
}

pub fn run(o: &LatencyBenchOptions) -> Result<Vec<LatencyRow>> {
    anyhow::ensure!(o.events > 0, "--events must be at least 1");
    anyhow::ensure!(
        o.rate > 0.0 && o.rate.is_finite(),
        "--rate must be a positive number of events per second"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;
    let mut rows = Vec::new();
    for &schedule in &o.schedules {
        for &b in &o.buffer_frames {
            rows.push(run_one(o, b, schedule, &runtime)?);
        }
    }
    Ok(rows)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The rows as a table for people.
pub fn table(rows: &[LatencyRow]) -> String {
    let mut s = String::from(
        "carillon bench latency: frame arrival → first audible sample (ms)\n\n\
         buffer  notes  scheduled  → queued: median   p99  → written: median   p99    max  → playback: median   p99    max  jitter  callback µs median/p99/max (expected)  xruns  late  rt (audio/path)\n",
    );
    let ms = |us: f64| us / 1000.0;
    for r in rows {
        let scheduled = match r.schedule {
            "asap" => "asap".to_owned(),
            _ => format!("{:.2}", r.scheduling_latency_ms),
        };
        s.push_str(&format!(
            "{:>6} {:>3}/{:<3} {:>9} {:>14.3} {:>6.3} {:>15.2} {:>6.2} {:>6.2} {:>18.2} {:>6.2} {:>6.2} {:>7.3}   {:.0}/{:.0}/{:.0} ({:.0}) {:>6} {:>5}  {}/{}\n",
            r.buffer_frames,
            r.notes_measured,
            r.events_sent,
            scheduled,
            ms(r.arrival_to_queue.median_us),
            ms(r.arrival_to_queue.p99_us),
            ms(r.arrival_to_write.median_us),
            ms(r.arrival_to_write.p99_us),
            ms(r.arrival_to_write.max_us),
            ms(r.arrival_to_playback.median_us),
            ms(r.arrival_to_playback.p99_us),
            ms(r.arrival_to_playback.max_us),
            ms(r.playback_jitter_us),
            r.callback_interval.median_us,
            r.callback_interval.p99_us,
            r.callback_interval.max_us,
            r.expected_interval_us,
            r.xruns,
            r.late,
            yes_no(r.realtime),
            yes_no(r.event_path_realtime),
        ));
    }
    if let Some(r) = rows.first() {
        s.push_str(&format!(
            "\n(every figure includes the fixed scheduling latency and the limiter's {:.1} ms look-ahead; \
             `asap` notes start in the first block not yet rendered, and their jitter is the price)\n",
            r.bus_lookahead_ms
        ));
    }
    s
}
