//! The conductor: wires sources, score, engine and output together, for `play` (live,
//! through the audio device) and `render` (offline, into a WAV file, as fast as the CPU
//! allows).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::RecvTimeoutError;

use crate::config::{relative_to, Config, Schedule};
use crate::engine::{engine, ControlHalf, Played, ASAP, BLOCK};
use crate::ingest::plan::Planned;
use crate::ingest::record::Recorder;
use crate::ingest::{self, Arrival, Delivery, Parsed, Source};
use crate::instrument::Instruments;
use crate::logs::Repeated;
use crate::output::device::{DeviceError, DeviceRequest};
use crate::output::realtime::{describe, promote_event_path, RealtimeStatus};
use crate::output::supervisor::{DeviceCounters, DeviceState, Supervisor};
use crate::output::wav::WavSink;
use crate::output::FrameSink;
use crate::score::{Note, Outcome, Score};
use crate::stats::{EventRates, Stats};

/// Frames rendered between scheduling passes offline.
const RENDER_CHUNK: usize = 256;

/// The instruments named by the config: its folder, or the built-in recipes.
pub fn instruments(config: &Config, config_path: Option<&Path>) -> Result<Instruments> {
    if config.engine.instruments_dir.is_empty() {
        Ok(Instruments::built_in()?)
    } else {
        let dir = relative_to(config_path, &config.engine.instruments_dir);
        Ok(Instruments::load_dir(&dir)?)
    }
}

/// How long the conductor waits for an event before it looks after the device and the
/// status anyway. A change on the display's page wakes it at once (a mute must silence
/// the very next note), and so does every event; this only bounds how late a lost
/// device is noticed, so it can be long enough not to cost a silent carillon anything.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// Frames from an event's arrival to its note's start: the configured latency, but never
/// less than the floor below which a note could miss its block.
///
/// The engine renders a 64-frame block in the first device callback that needs any of
/// its frames, so a note must reach the engine before that callback. Arriving just
/// before a callback, it has at most `buffer + 64 - gcd(buffer, 64)` frames to go
/// (exactly one buffer when buffers are whole blocks, as at 64, 128 or 256 frames), plus
/// `margin_ms` for the event to cross from the network thread and for the callback's
/// own timing jitter. A note that still misses it starts at the next block and is
/// counted as late.
pub fn scheduling_latency(
    latency_ms: f64,
    margin_ms: f64,
    sample_rate: f64,
    buffer_frames: u32,
) -> u64 {
    let buffer = u64::from(buffer_frames.max(1));
    let block = BLOCK as u64;
    let floor = buffer + block - gcd(buffer, block) + frames_in(margin_ms, sample_rate);
    frames_in(latency_ms, sample_rate).max(floor)
}

fn frames_in(ms: f64, sample_rate: f64) -> u64 {
    (ms.max(0.0) / 1000.0 * sample_rate).ceil() as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Hand one scored note to the engine, to start at stream frame `frame` (or [`ASAP`]),
/// counting what happened to it. Returns the note if it was scheduled.
///
/// With no device playing (`audible` false), the score still runs — its throttle and
/// counters stay true to the stream — but its notes are only counted, as `silenced`.
#[allow(clippy::too_many_arguments)]
fn conduct(
    score: &mut Score,
    control: &mut ControlHalf,
    stats: &Stats,
    source: usize,
    event: &crate::event::Event,
    frame: u64,
    seed: u64,
    audible: bool,
) -> Option<(Note, Played)> {
    let seconds = control.start_frame(frame) as f64 / control.sample_rate();
    match score.map_from(source, event, seconds) {
        Outcome::Play(_) if !audible => Stats::add(&stats.silenced, 1),
        Outcome::Play(mut note) => {
            note.seed ^= seed;
            match control.play(&note, frame) {
                Ok(played) => {
                    Stats::add(&stats.notes, 1);
                    return Some((note, played));
                }
                Err(_) => Stats::add(&stats.engine_full, 1),
            }
        }
        Outcome::Filtered => Stats::add(&stats.filtered, 1),
        Outcome::Throttled => Stats::add(&stats.throttled, 1),
    }
    None
}

/// The notes of a render as CSV, one line per scheduled note: what the score played,
/// for other tools (a spreadsheet, another synthesizer) to read.
struct NoteListing {
    out: BufWriter<File>,
    path: PathBuf,
    names: Vec<String>,
    sample_rate: f64,
}

impl NoteListing {
    fn create(path: &Path, names: Vec<String>, sample_rate: f64) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "start_s,instrument,frequency_hz,gain,pan,duration_s")
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(NoteListing {
            out,
            path: path.to_owned(),
            names,
            sample_rate,
        })
    }

    fn note(&mut self, start: u64, note: &Note, played: &Played) -> Result<()> {
        let name = self
            .names
            .get(note.instrument.0 as usize)
            .map_or("?", String::as_str);
        let sr = self.sample_rate;
        writeln!(
            self.out,
            "{:.6},{name},{:.4},{:.6},{:.4},{:.6}",
            start as f64 / sr,
            note.frequency,
            played.gain,
            note.pan,
            played.frames as f64 / sr
        )
        .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn finish(mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

pub struct RenderOptions {
    /// Sources with recorded times, mixed on one timeline.
    pub sources: Vec<Planned>,
    pub duration: f64,
    pub output: PathBuf,
    pub seed: u64,
    pub speed: f64,
    pub sample_rate: u32,
    /// Also list the scheduled notes in this CSV file.
    pub notes: Option<PathBuf>,
}

/// What a render did.
pub struct RenderReport {
    pub seconds_rendered: f64,
    pub wall_seconds: f64,
    pub summary: Summary,
}

/// Everything counted in a run, for its `summary:` line: the sources' and score's
/// counters, the engine's, and the device's (in `play`).
pub struct Summary {
    /// Every source's counters added up.
    pub stats: Arc<Stats>,
    /// Each source's own, by name.
    pub sources: Vec<(String, Arc<Stats>)>,
    pub engine: EngineCounters,
    pub device: Option<DeviceCounters>,
}

/// The engine's counters at the end of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineCounters {
    pub stolen: u64,
    /// Voices retired early, once under their instrument's audibility floor.
    pub inaudible: u64,
    pub late: u64,
    pub overflow: u64,
    pub clamped: u64,
    pub nonfinite: u64,
    pub bus_resets: u64,
}

impl EngineCounters {
    pub fn of(control: &ControlHalf) -> EngineCounters {
        let s = control.shared();
        EngineCounters {
            stolen: s.stolen.load(Relaxed),
            inaudible: s.inaudible.load(Relaxed),
            late: s.late.load(Relaxed),
            overflow: s.overflow.load(Relaxed),
            clamped: s.clamped.load(Relaxed),
            nonfinite: s.nonfinite.load(Relaxed),
            bus_resets: s.bus_resets.load(Relaxed),
        }
    }
}

impl Summary {
    /// One line of `key=value` pairs, for logs and tests.
    pub fn line(&self) -> String {
        let e = &self.engine;
        let mut line = format!(
            "{} stolen={} inaudible={} late={} overflow={} clamped={} nonfinite={} bus_resets={}",
            self.stats.summary(),
            e.stolen,
            e.inaudible,
            e.late,
            e.overflow,
            e.clamped,
            e.nonfinite,
            e.bus_resets
        );
        if let Some(d) = &self.device {
            line.push_str(&format!(
                " xruns={} device_errors={} device_losses={} device_reopens={} engine_failures={} audio_allocs={} device_suspends={} device_resumes={}",
                d.xruns,
                d.errors,
                d.losses,
                d.reopens,
                d.engine_failures,
                d.audio_allocs,
                d.suspends,
                d.resumes
            ));
        }
        line
    }

    /// One line per source, when there are several: its name and its counters.
    pub fn source_lines(&self) -> Vec<String> {
        if self.sources.len() < 2 {
            return Vec::new();
        }
        self.sources
            .iter()
            .map(|(name, stats)| format!("source {name}: {}", stats.summary()))
            .collect()
    }
}

/// A source's events with their times in seconds and its index.
type Merged = (f64, usize, Parsed);

/// The timed events of offline sources, merged in time order (a tie goes to the source
/// given first).
pub fn offline_events(sources: &[Planned], seed: u64) -> Result<impl Iterator<Item = Merged>> {
    let mut streams = Vec::with_capacity(sources.len());
    for (i, planned) in sources.iter().enumerate() {
        match Source::open(&planned.spec, seed ^ i as u64, &planned.format)? {
            Source::Timed(events) => streams.push(events.map(move |(t, p)| (t, i, p)).peekable()),
            live => bail!(
                "render needs sources with recorded times (demo or replay:FILE), not the live feed {} ({}); use `carillon play` to hear a live feed, or `carillon record` to record it",
                live.describe(),
                planned.name
            ),
        }
    }
    Ok(std::iter::from_fn(move || {
        let next = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(k, s)| s.peek().map(|(t, _, _)| (k, *t)))
            .fold(None, |best: Option<(usize, f64)>, (k, t)| match best {
                Some((_, bt)) if bt <= t => best,
                _ => Some((k, t)),
            })?;
        streams[next.0].next()
    }))
}

/// Per-source counters for `sources`, and the score that places each in the mix.
fn score_for(
    config: &Config,
    instruments: &Instruments,
    sources: &[Planned],
) -> Result<(Score, Vec<Arc<Stats>>)> {
    let mixes = sources.iter().map(|p| p.mix.clone()).collect();
    let score = Score::with_mixes(&config.score, &instruments.names(), mixes)?;
    let stats = sources.iter().map(|_| Arc::new(Stats::default())).collect();
    Ok((score, stats))
}

fn named(sources: &[Planned], stats: &[Arc<Stats>]) -> Vec<(String, Arc<Stats>)> {
    sources
        .iter()
        .zip(stats)
        .map(|(p, s)| (p.name.clone(), s.clone()))
        .collect()
}

fn added_up(stats: &[Arc<Stats>]) -> Arc<Stats> {
    Arc::new(Stats::total(stats.iter().map(|s| s.as_ref())))
}

/// Render a source into a WAV file.
pub fn render(
    config: &Config,
    instruments: Instruments,
    opts: &RenderOptions,
) -> Result<RenderReport> {
    let events = offline_events(&opts.sources, opts.seed)?;
    let mut sink = WavSink::create(&opts.output, opts.sample_rate)
        .with_context(|| format!("cannot create {}", opts.output.display()))?;
    let report = render_into(config, instruments, events, opts, &mut sink)?;
    sink.finish()
        .with_context(|| format!("cannot finish {}", opts.output.display()))?;
    Ok(report)
}

/// Render timed events into any sink: deterministic for the same events, config and seed.
pub fn render_into(
    config: &Config,
    instruments: Instruments,
    events: impl Iterator<Item = Merged>,
    opts: &RenderOptions,
    sink: &mut dyn FrameSink,
) -> Result<RenderReport> {
    let started = Instant::now();
    let sr = opts.sample_rate as f64;
    let (mut score, stats) = score_for(config, &instruments, &opts.sources)?;
    let mut listing = match &opts.notes {
        Some(path) => Some(NoteListing::create(path, instruments.names(), sr)?),
        None => None,
    };
    let (mut control, mut audio) = engine(&config.engine, instruments, sr);
    let total = (opts.duration * sr).round() as u64;
    let speed = if opts.speed > 0.0 { opts.speed } else { 1.0 };
    let mut events = events
        .map(|(t, source, e)| ((t / speed * sr).round() as u64, source, e))
        .take_while(|(frame, _, _)| *frame < total)
        .peekable();
    let mut buffer = vec![0.0f32; RENDER_CHUNK * 2];
    while audio.clock() < total {
        let clock = audio.clock();
        let end = (clock + RENDER_CHUNK as u64).min(total);
        while let Some((frame, source, event)) = events.next_if(|(frame, _, _)| *frame < end) {
            let stats = &stats[source];
            match event {
                Parsed::Event(event) => {
                    Stats::add(&stats.events, 1);
                    let played = conduct(
                        &mut score,
                        &mut control,
                        stats,
                        source,
                        &event,
                        frame,
                        opts.seed,
                        true,
                    );
                    if let (Some(listing), Some((note, played))) = (listing.as_mut(), played) {
                        listing.note(frame, &note, &played)?;
                    }
                }
                Parsed::Skipped(kind) => stats.skip(kind),
                Parsed::Malformed(_) => Stats::add(&stats.malformed, 1),
            }
        }
        let frames = (end - clock) as usize;
        audio.render(&mut buffer[..frames * 2], 2);
        sink.write(&buffer[..frames * 2])
            .context("cannot write the rendered audio")?;
        control.collect();
    }
    if let Some(listing) = listing {
        listing.finish()?;
    }
    Ok(RenderReport {
        seconds_rendered: total as f64 / sr,
        wall_seconds: started.elapsed().as_secs_f64(),
        summary: Summary {
            stats: added_up(&stats),
            sources: named(&opts.sources, &stats),
            engine: EngineCounters::of(&control),
            device: None,
        },
    })
}

pub struct PlayOptions {
    pub sources: Vec<Planned>,
    /// Serve the display page here.
    pub display: Option<crate::display::DisplayOptions>,
    /// Where the local ingest endpoint listens, for webhook and push sources.
    pub listen: Option<std::net::SocketAddr>,
    /// Also list the scheduled notes in this CSV file.
    pub notes: Option<PathBuf>,
    pub device: DeviceRequest,
    /// A device missing at start is waited for rather than an error.
    pub wait_for_device: bool,
    pub volume: Option<f32>,
    pub duration: Option<f64>,
    pub speed: f64,
    pub seed: u64,
}

/// What to try when no device could be opened at start.
const NO_DEVICE_HINT: &str = "To go on: `carillon devices` lists the outputs this machine has \
(choose one with --device NAME); --host jack plays into a running JACK server; \
--wait-for-device waits for a sound card that comes up later (as at boot); \
`carillon render` writes a WAV file with no device at all";

/// Play a source live through the audio device until Ctrl-C or SIGTERM, the duration,
/// or (for a replay) the end of the file and of its last notes. The device may come
/// and go meanwhile: the supervisor reopens it, and the sources play on.
pub fn play(config: &Config, instruments: Instruments, opts: &PlayOptions) -> Result<Summary> {
    let sr = opts.device.sample_rate as f64;
    let (mut score, stats) = score_for(config, &instruments, &opts.sources)?;
    let mut listing = match &opts.notes {
        Some(path) => Some(NoteListing::create(path, instruments.names(), sr)?),
        None => None,
    };
    let mut engine_config = config.engine.clone();
    if let Some(v) = opts.volume {
        engine_config.volume = v;
    }
    let volume = engine_config.volume;
    let instrument_names = instruments.names();
    let feeds: Vec<bool> = opts.sources.iter().map(|p| p.spec.is_feed()).collect();
    let mut sources = Vec::with_capacity(opts.sources.len());
    for (i, planned) in opts.sources.iter().enumerate() {
        sources.push(Source::open(
            &planned.spec,
            opts.seed ^ i as u64,
            &planned.format,
        )?);
    }
    let (mut control, audio) = engine(&engine_config, instruments, sr);
    let mut device = Supervisor::start(opts.device.clone(), opts.wait_for_device, audio)
        .map_err(|e: DeviceError| anyhow::anyhow!("{e}\n{NO_DEVICE_HINT}"))?;
    if let Some(stream) = device.stream() {
        tracing::info!(
            "playing on {:?} ({}): {} Hz, {} channels, {} frames per buffer",
            stream.name,
            stream.host,
            stream.sample_rate,
            stream.channels,
            if stream.buffer_frames == 0 {
                "default".to_owned()
            } else {
                stream.buffer_frames.to_string()
            }
        );
    }
    let schedule = config.engine.schedule();
    // The floor follows the largest buffer the device has actually asked for.
    let latency_frames = |control: &ControlHalf, device: &Supervisor| {
        let opened = device.stream().map_or(0, |s| s.buffer_frames);
        scheduling_latency(
            config.engine.latency_ms,
            config.engine.margin_ms,
            sr,
            opened.max(control.device_buffer()),
        )
    };

    let suspend_after = (config.output.suspend_after_s > 0.0)
        .then(|| Duration::from_secs_f64(config.output.suspend_after_s));
    let mut suspend_lines = Repeated::new(Duration::from_secs(3600));
    // When the last note was conducted, and when the device was last opened again after
    // a silence: events that arrived before that could not be scheduled on its clock.
    let mut last_note = Instant::now();
    let mut resumed_at: Option<Instant> = None;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded::<Arrival>(4096);
    let (waker, woken) = crossbeam_channel::bounded::<()>(1);
    let runtime = network_runtime()?;
    start_sources(
        &runtime,
        config,
        &opts.sources,
        sources,
        &stats,
        tx,
        opts.speed,
        opts.listen,
        None,
    )?;
    runtime.spawn(stop_on_signals(stop.clone()));
    let mut display = match &opts.display {
        Some(options) => Some(crate::display::Display::start(
            &runtime,
            options,
            opts.sources.iter().map(|p| p.name.clone()).collect(),
            volume,
            waker,
        )?),
        None => None,
    };
    let mut controls_seen = 0;
    let mut display_status_at = Instant::now();

    let started = Instant::now();
    let mut status = Status::new(std::io::stderr().is_terminal(), &opts.sources);
    let mut source_done_at: Option<Instant> = None;
    let mut xrun_lines = Repeated::new(Duration::from_secs(10));
    let mut reported_xruns = 0;
    let mut realtime_reported_for = 0;
    let mut event_path_promoted = false;
    loop {
        if stop.load(Relaxed) {
            tracing::info!("stopping");
            break;
        }
        if opts
            .duration
            .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
        {
            break;
        }
        // An event or a change on the page wakes this loop at once; the timeout paces
        // the housekeeping below.
        let received = crossbeam_channel::select! {
            recv(rx) -> message => message.map_err(|_| RecvTimeoutError::Disconnected),
            recv(woken) -> _ => Err(RecvTimeoutError::Timeout),
            default(HOUSEKEEPING) => Err(RecvTimeoutError::Timeout),
        };
        match received {
            Ok(arrival) => {
                let source = usize::from(arrival.source);
                // A source turned off on the display plays on unheard, counted silenced.
                let on = display
                    .as_ref()
                    .is_none_or(|d| d.controls().enabled(source));
                if on && device.state() == DeviceState::Suspended && device.resume(&mut control) {
                    resumed_at = Some(Instant::now());
                }
                let audible = device.state() == DeviceState::Playing;
                let frame = match schedule {
                    // An event that came while the device was let go has no place on
                    // its new clock: its note starts as soon as the device runs.
                    Schedule::Fixed if resumed_at.is_some_and(|r| arrival.at < r) => ASAP,
                    Schedule::Fixed => {
                        control.frame_at(arrival.at) + latency_frames(&control, &device)
                    }
                    Schedule::Asap => ASAP,
                };
                last_note = Instant::now();
                let played = conduct(
                    &mut score,
                    &mut control,
                    &stats[source],
                    source,
                    &arrival.event,
                    frame,
                    opts.seed,
                    audible && on,
                );
                let start = control.start_frame(frame);
                if let (Some(listing), Some((note, played))) = (listing.as_mut(), &played) {
                    listing.note(start, note, played)?;
                }
                if let (Some(display), Some((note, _))) = (display.as_ref(), &played) {
                    let delay = device
                        .stream()
                        .map_or(0, |s| s.health.playback_delay_ns.load(Relaxed));
                    let heard = control.instant_at(start) + Duration::from_nanos(delay);
                    let instrument = instrument_names
                        .get(note.instrument.0 as usize)
                        .map_or("", String::as_str);
                    display.note(heard, &arrival.event, note, source, instrument);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // A replay has ended: let its last notes ring out (if there is a device
                // to ring them), then stop.
                let done = *source_done_at.get_or_insert_with(Instant::now);
                let audible = device.state() == DeviceState::Playing;
                if opts.duration.is_none()
                    && (control.voices() == 0 || !audible)
                    && done.elapsed() > Duration::from_millis(500)
                {
                    tracing::info!("the source has ended");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        control.collect();
        device.poll(&mut control);
        if let Some(after) = suspend_after {
            let silent = control.silent_for().is_some_and(|s| s >= after);
            if device.state() == DeviceState::Playing && silent && last_note.elapsed() >= after {
                device.suspend();
                match suspend_lines.count(1, Instant::now()) {
                    Some(n) => tracing::info!(
                        "nothing has sounded for {:.0} s: the audio output is let go until the next note ([output] suspend_after_s){}",
                        after.as_secs_f64(),
                        if n > 1 { format!(" ({n} times in the last hour)") } else { String::new() }
                    ),
                    None => tracing::debug!("silence: the audio output is let go"),
                }
            }
        }
        let counters = device.counters();
        if let Some(n) = xrun_lines.count(counters.xruns - reported_xruns, Instant::now()) {
            tracing::warn!("the audio device reported {n} buffer under/overruns");
        }
        reported_xruns = counters.xruns;
        let reopens = counters.reopens + 1;
        if realtime_reported_for != reopens {
            if let Some(stream) = device.stream() {
                let realtime = &stream.health.realtime;
                if let Some(line) = describe(realtime) {
                    if realtime.is_realtime() {
                        tracing::info!("{line}");
                    } else {
                        tracing::warn!("{line}");
                    }
                    match realtime.event_path_priority() {
                        Some(priority) if !event_path_promoted => {
                            // The audio thread no longer waits on a busy machine; the
                            // threads that bring it its notes must not either.
                            event_path_promoted = true;
                            let worker = Arc::new(RealtimeStatus::default());
                            if promote_event_path(runtime.handle(), priority, worker) {
                                tracing::info!(
                                    "the network and conductor threads run with real-time priority (SCHED_FIFO {priority})"
                                );
                            }
                        }
                        _ => {}
                    }
                    realtime_reported_for = reopens;
                }
            }
        }
        status.tick(&stats, &control, device.state());
        if let Some(display) = display.as_mut() {
            let changed = display.controls().generation() != controls_seen;
            if changed {
                controls_seen = display.controls().generation();
                let c = display.controls();
                control.set_volume(if c.muted() { 0.0 } else { c.volume() });
            }
            if changed || display_status_at.elapsed() >= Duration::from_secs(1) {
                display_status_at = Instant::now();
                display.status(&stats, &feeds, device.state().name());
            }
        }
    }
    // Fade out (the engine glides the volume) before the stream stops: no click.
    if device.state() == DeviceState::Playing {
        control.set_volume(0.0);
        std::thread::sleep(Duration::from_millis(150));
    }
    status.clear();
    let device_counters = device.counters();
    drop(device);
    runtime.shutdown_timeout(Duration::from_millis(200));
    // Events that arrived as it stopped are scored, unheard, so that the counters
    // still add up to every event received.
    while let Ok(arrival) = rx.try_recv() {
        let frame = control.frame_at(arrival.at);
        let source = usize::from(arrival.source);
        conduct(
            &mut score,
            &mut control,
            &stats[source],
            source,
            &arrival.event,
            frame,
            opts.seed,
            false,
        );
    }
    control.collect();
    if let Some(listing) = listing {
        listing.finish()?;
    }
    Ok(Summary {
        stats: added_up(&stats),
        sources: named(&opts.sources, &stats),
        engine: EngineCounters::of(&control),
        device: Some(device_counters),
    })
}

pub struct RecordOptions {
    pub source: Planned,
    pub output: PathBuf,
    pub duration: Option<f64>,
    pub listen: Option<std::net::SocketAddr>,
}

/// What a recording saved.
pub struct RecordReport {
    pub messages: u64,
    pub seconds: f64,
    pub summary: Summary,
}

/// Save a live source's raw messages with their arrival times until Ctrl-C, SIGTERM or
/// the duration, reading them as `play` would so that the summary says what they hold.
pub fn record(config: &Config, opts: &RecordOptions) -> Result<RecordReport> {
    let planned = std::slice::from_ref(&opts.source);
    match &opts.source.spec {
        spec if spec.is_offline() => bail!(
            "{} already has recorded times: there is nothing to record",
            opts.source.spec_text
        ),
        ingest::SourceSpec::Osm(_) => bail!(
            "OpenStreetMap's diffs are files already kept by their server: replay them by serving its replication folder (osm:URL) rather than recording"
        ),
        _ => {}
    }
    let recorder = Arc::new(
        Recorder::create(&opts.output, &opts.source.format, &opts.source.spec_text)
            .with_context(|| format!("cannot create {}", opts.output.display()))?,
    );
    let stats = vec![Arc::new(Stats::default())];
    let source = Source::open(&opts.source.spec, 0, &opts.source.format)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded::<Arrival>(4096);
    let runtime = network_runtime()?;
    start_sources(
        &runtime,
        config,
        planned,
        vec![source],
        &stats,
        tx,
        1.0,
        opts.listen,
        Some(recorder.clone()),
    )?;
    runtime.spawn(stop_on_signals(stop.clone()));
    let started = Instant::now();
    while !stop.load(Relaxed)
        && opts
            .duration
            .is_none_or(|d| started.elapsed().as_secs_f64() < d)
    {
        // The events are only counted (by their delivery): a recording plays nothing.
        let _ = rx.recv_timeout(Duration::from_millis(50));
        while rx.try_recv().is_ok() {}
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
    recorder
        .finish()
        .with_context(|| format!("cannot write {}", opts.output.display()))?;
    let failures = recorder.failures.load(Relaxed);
    if failures > 0 {
        bail!(
            "{failures} messages could not be written to {}",
            opts.output.display()
        );
    }
    Ok(RecordReport {
        messages: recorder.messages.load(Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        summary: Summary {
            stats: added_up(&stats),
            sources: named(planned, &stats),
            engine: EngineCounters::default(),
            device: None,
        },
    })
}

/// The tokio runtime the sources (and the ingest endpoint) run on.
fn network_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("carillon-ingest")
        .build()
        .context("cannot start the network runtime")
}

/// Start every source on `runtime`, each delivering to `tx` with its own counters, and
/// the local ingest endpoint if any source is received there.
#[allow(clippy::too_many_arguments)]
fn start_sources(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    planned: &[Planned],
    sources: Vec<Source>,
    stats: &[Arc<Stats>],
    tx: crossbeam_channel::Sender<Arrival>,
    speed: f64,
    listen: Option<std::net::SocketAddr>,
    recorder: Option<Arc<Recorder>>,
) -> Result<()> {
    let mut hooks = Vec::new();
    for (i, (source, plan)) in sources.into_iter().zip(planned).enumerate() {
        let id = u16::try_from(i).context("too many sources")?;
        let mut delivery = Delivery::new(tx.clone(), stats[i].clone(), id, plan.format.clone());
        delivery.recorder = recorder.clone();
        let source = match source {
            Source::Http { url, lines, .. } => Source::Http {
                url,
                lines,
                bearer: plan.bearer.clone(),
            },
            Source::WebSocket { url, .. } => Source::WebSocket {
                url,
                bearer: plan.bearer.clone(),
            },
            Source::Endpoint => {
                hooks.push((
                    plan.name.clone(),
                    plan.spec.clone(),
                    plan.secret.clone(),
                    delivery,
                ));
                continue;
            }
            other => other,
        };
        runtime.spawn(ingest::run(source, config.source.clone(), speed, delivery));
    }
    if !hooks.is_empty() {
        let Some(addr) = listen else {
            bail!(
                "the sources {} are received by the local ingest endpoint, which is off: set ingest.listen in the configuration (e.g. \"127.0.0.1:8090\")",
                hooks.iter().map(|h| h.0.as_str()).collect::<Vec<_>>().join(", ")
            );
        };
        ingest::serve_endpoint(runtime, addr, hooks, config.ingest.max_body_bytes)?;
    }
    Ok(())
}

/// Set `stop` on Ctrl-C (SIGINT) or SIGTERM (what systemd and `kill` send): both end
/// the play with a fade.
async fn stop_on_signals(stop: Arc<AtomicBool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops with a fade");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(e) = result {
                tracing::warn!("cannot listen for Ctrl-C ({e})");
                return;
            }
        }
        () = terminate => {}
    }
    stop.store(true, Relaxed);
}

/// The one-line status on a terminal, refreshed about once a second: events a minute
/// and feed state per source, voices playing, notes dropped, the device's state.
struct Status {
    enabled: bool,
    sources: Vec<(String, bool)>,
    last: Instant,
    rates: EventRates,
    shown: bool,
}

impl Status {
    fn new(enabled: bool, sources: &[Planned]) -> Self {
        Self {
            enabled,
            sources: sources
                .iter()
                .map(|p| (p.name.clone(), p.spec.is_feed()))
                .collect(),
            last: Instant::now(),
            rates: EventRates::new(),
            shown: false,
        }
    }

    fn tick(&mut self, stats: &[Arc<Stats>], control: &ControlHalf, device: DeviceState) {
        if !self.enabled || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        let now = Instant::now();
        self.last = now;
        let rates = self.rates.sample(stats, now);
        let per_minute = |i: usize| rates.get(i).copied().unwrap_or(0.0);
        let dropped: u64 = stats
            .iter()
            .map(|s| Stats::get(&s.throttled) + Stats::get(&s.engine_full) + Stats::get(&s.backlog))
            .sum();
        let feed = |i: usize| {
            if !self.sources[i].1 {
                "local"
            } else if stats[i].connected.load(Relaxed) {
                "connected"
            } else {
                "reconnecting"
            }
        };
        let line = if self.sources.len() == 1 {
            format!("{:.0} events/min · feed {}", per_minute(0), feed(0))
        } else {
            (0..self.sources.len())
                .map(|i| format!("{} {:.0}/min {}", self.sources[i].0, per_minute(i), feed(i)))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        eprint!(
            "\r\x1b[K{line} · {} playing · {dropped} dropped · device {}",
            control.voices(),
            device.name()
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scheduling_latency;

    #[test]
    fn the_floor_is_one_buffer_when_buffers_are_whole_blocks() {
        // 1 ms of margin is 48 frames at 48 kHz.
        assert_eq!(scheduling_latency(0.0, 1.0, 48_000.0, 64), 64 + 48);
        assert_eq!(scheduling_latency(0.0, 1.0, 48_000.0, 128), 128 + 48);
        assert_eq!(scheduling_latency(0.0, 1.0, 48_000.0, 256), 256 + 48);
        assert_eq!(scheduling_latency(0.0, 0.0, 48_000.0, 64), 64);
    }

    #[test]
    fn buffers_that_are_not_whole_blocks_wait_for_the_block_too() {
        // Small buffers that divide a block wait for the block: 64 frames.
        assert_eq!(scheduling_latency(0.0, 0.0, 48_000.0, 32), 64);
        assert_eq!(scheduling_latency(0.0, 0.0, 48_000.0, 1), 64);
        // 100 frames: the next block may begin 4 frames into the next buffer.
        assert_eq!(scheduling_latency(0.0, 0.0, 48_000.0, 100), 100 + 60);
        assert_eq!(scheduling_latency(0.0, 0.0, 48_000.0, 37), 37 + 63);
    }

    #[test]
    fn a_configured_latency_above_the_floor_is_kept() {
        assert_eq!(scheduling_latency(20.0, 1.0, 48_000.0, 256), 960);
        assert_eq!(scheduling_latency(20.0, 1.0, 44_100.0, 64), 882);
    }
}
