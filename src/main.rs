//! The `carillon` command line: play a live stream, render one to a WAV file, list
//! audio devices, or check a configuration file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use carillon::bench;
use carillon::conductor::{self, PlayOptions, RenderOptions};
use carillon::config::{self, Config, Limits, Schedule};
use carillon::ingest::plan::{plan, Planned};
use carillon::instrument::{InstrumentError, Instruments};
use carillon::output::device::{self, DeviceRequest};

/// The system allocator, counting what the audio callback allocates (it must not):
/// `play`'s summary reports it as `audio_allocs`.
#[global_allocator]
static ALLOCATOR: carillon::alloc_watch::CountingAllocator =
    carillon::alloc_watch::CountingAllocator;

#[derive(Parser)]
#[command(
    name = "carillon",
    version,
    about = "Live contribution streams, made audible."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Play a source through the audio device (the default command).
    Play(PlayArgs),
    /// Render a source with recorded times (demo or replay:FILE) into a WAV file.
    Render(RenderArgs),
    /// Save a live source's raw messages with their arrival times, to replay and render
    /// later (`--source replay:FILE`).
    Record(RecordArgs),
    /// List audio output devices and their supported configurations.
    Devices(DevicesArgs),
    /// Measure carillon itself.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check a configuration file, its instruments and that every note its score can
    /// reach is playable at its sample rate, without opening a device.
    CheckConfig(CheckConfigArgs),
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Configuration file, read over the built-in defaults (for its [source] settings
    /// and [sources.NAME] tables).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The source to record: a spec, NAME=SPEC, or a [sources.NAME] table's name.
    #[arg(long, value_name = "SPEC")]
    source: String,
    /// The JSONL file to write.
    #[arg(short, long, value_name = "FILE.jsonl")]
    output: PathBuf,
    /// Stop after this many seconds (default: at Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// The configuration file to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The engine alone, driven by a null output: cost per buffer at given voice counts.
    Render(BenchRenderArgs),
    /// The whole path in real time on the device: websocket frame → first sample heard.
    Latency(BenchLatencyArgs),
    /// What silence costs: buffers long after the last note, with and without
    /// flush-to-zero, against one sounding voice.
    Silence(BenchSilenceArgs),
}

#[derive(clap::Args)]
struct BenchSilenceArgs {
    /// Seconds rendered after the note.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    seconds: f64,
    /// Seconds summed up in each row.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    stretch: f64,
    /// Frames per buffer.
    #[arg(long, value_name = "N", default_value_t = 256)]
    buffer_frames: usize,
    /// Sample rate in Hz.
    #[arg(long, value_name = "HZ", default_value_t = 48_000)]
    sample_rate: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Default)]
struct HostArg {
    /// Audio host: "alsa", or "jack" to play straight into a JACK server (default:
    /// `output.host` in the configuration; empty there, the system's).
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
}

impl HostArg {
    /// The host asked for on the command line, else the configuration's.
    fn or_config(self, config: &Config) -> Option<String> {
        self.host.or_else(|| Some(config.output.host.clone()))
    }
}

#[derive(clap::Args)]
struct DevicesArgs {
    #[command(flatten)]
    host: HostArg,
}

#[derive(clap::Args)]
struct BenchLatencyArgs {
    /// Configuration file whose engine settings (latency, limiter) are measured.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    host: HostArg,
    /// Device buffer sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    buffer_frames: Vec<u32>,
    /// Schedules to measure, comma-separated: fixed, asap (default: the configuration's
    /// `engine.schedule`).
    #[arg(long, value_delimiter = ',', value_parser = parse_schedule)]
    schedule: Vec<Schedule>,
    /// Events sent per buffer size.
    #[arg(long, value_name = "N", default_value_t = 200)]
    events: usize,
    /// Events per second.
    #[arg(long, value_name = "R", default_value_t = 20.0)]
    rate: f64,
    /// Output device name (see `carillon devices`).
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Sample rate in Hz.
    #[arg(long, value_name = "HZ", default_value_t = 48_000)]
    sample_rate: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BenchRenderArgs {
    /// Configuration file whose instruments (`engine.instruments_dir`, samplers
    /// included) are measured; default: the built-in ones.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Voice counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256,1024")]
    voices: Vec<usize>,
    /// Frames per buffer.
    #[arg(long, value_name = "N", default_value_t = 64)]
    buffer_frames: usize,
    /// Sample rate in Hz.
    #[arg(long, value_name = "HZ", default_value_t = 48_000)]
    sample_rate: u32,
    /// Seconds of audio timed per voice count.
    #[arg(long, value_name = "S", default_value_t = 4.0)]
    seconds: f64,
    /// Only this instrument (default: all of them, in turn).
    #[arg(long, value_name = "NAME")]
    instrument: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Default)]
struct PlayArgs {
    /// Configuration file, read over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Event source, several times for several at once: a spec ("eventstreams:enwiki",
    /// an http(s):// stream, a ws(s):// wikimon feed, "osm", "webhook:github", "push",
    /// "demo", "replay:PATH"…), NAME=SPEC, or the name of a [sources.NAME] table of the
    /// configuration. Default: the configuration's sources.
    #[arg(long, value_name = "SPEC")]
    source: Vec<String>,
    /// Also write the notes played, one CSV line each (start_s, instrument,
    /// frequency_hz, gain, pan, duration_s; start_s in the stream's own clock).
    #[arg(long, value_name = "FILE.csv")]
    notes: Option<PathBuf>,
    /// Serve the display page at http://ADDR/ (default: `[display] listen`, else
    /// 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    display: Option<String>,
    #[command(flatten)]
    host: HostArg,
    /// Output device name (see `carillon devices`); default: the system's default.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Frames per device buffer (0: the device's default).
    #[arg(long, value_name = "N")]
    buffer_frames: Option<u32>,
    /// Sample rate in Hz.
    #[arg(long, value_name = "HZ")]
    sample_rate: Option<u32>,
    /// Master volume, 0..1.
    #[arg(long, value_name = "0..1")]
    volume: Option<f32>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Time scale of replay and demo sources (2 = twice as fast).
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    speed: f64,
    /// Seed of the demo generator and of the voices' randomness.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// If no audio device can be opened at start, wait for one instead of exiting
    /// (for machines whose sound card comes up after the service).
    #[arg(long)]
    wait_for_device: bool,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Configuration file, read over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Event source with recorded times: "demo", "replay:PATH", NAME=SPEC, or the name
    /// of a [sources.NAME] table; several times to mix several on one timeline.
    /// Default: the configuration's sources.
    #[arg(long, value_name = "SPEC")]
    source: Vec<String>,
    /// Seconds of audio to render.
    #[arg(long, value_name = "SECS")]
    duration: f64,
    /// The WAV file to write.
    #[arg(short, long, value_name = "FILE.wav")]
    output: PathBuf,
    /// Seed of the demo generator and of the voices' randomness.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Time scale of the source (2 = twice as fast).
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    speed: f64,
    /// Sample rate in Hz.
    #[arg(long, value_name = "HZ")]
    sample_rate: Option<u32>,
    /// Also write the notes played, one CSV line each (start_s, instrument,
    /// frequency_hz, gain, pan, duration_s).
    #[arg(long, value_name = "FILE.csv")]
    notes: Option<PathBuf>,
}

fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::defaults(),
    })
}

/// The sources to play: the flags, else the configuration's.
fn sources(
    config: &Config,
    config_path: Option<&Path>,
    flags: &[String],
    instruments: &Instruments,
) -> Result<Vec<Planned>> {
    Ok(plan(config, config_path, flags, &instruments.names())?)
}

/// Where the display is served, if it is: `--display ADDR`, else `[display] listen`
/// (with `--display` alone, 127.0.0.1:8080 if that is empty).
fn display_options(
    config: &Config,
    flag: Option<&str>,
) -> Result<Option<carillon::display::DisplayOptions>> {
    let listen = match flag {
        Some(addr) if !addr.is_empty() => addr.to_owned(),
        Some(_) if config.display.listen.is_empty() => "127.0.0.1:8080".to_owned(),
        _ if !config.display.listen.is_empty() => config.display.listen.clone(),
        _ => return Ok(None),
    };
    let listen = listen.parse().with_context(|| {
        format!("--display {listen:?} is not an address such as 127.0.0.1:8080")
    })?;
    Ok(Some(carillon::display::DisplayOptions {
        listen,
        controls: config.display.controls,
    }))
}

/// Where the local ingest endpoint listens, if it is on.
fn listen(config: &Config) -> Option<std::net::SocketAddr> {
    config.ingest.listen.parse().ok()
}

/// A command-line value, refused like a configuration value out of its range.
fn check_flag(name: &str, value: f64, limits: Limits) -> Result<()> {
    limits.check(name, value).map_err(anyhow::Error::msg)
}

fn check_positive(name: &str, value: f64) -> Result<()> {
    check_flag(name, value, Limits::positive())
}

/// The sample rate to play at, `--sample-rate` over the configuration's, once checked.
fn sample_rate(flag: Option<u32>, config: &Config) -> Result<u32> {
    if let Some(rate) = flag {
        check_flag("--sample-rate", rate as f64, config::SAMPLE_RATE)?;
    }
    Ok(flag.unwrap_or(config.output.sample_rate))
}

/// Refuse notes the instruments cannot play at `sample_rate`, and convert the samplers'
/// recordings to it (saying what they hold), before anything plays.
fn ready_to_play(config: &Config, instruments: &Instruments, sample_rate: u32) -> Result<()> {
    config::check_playable(config, instruments, sample_rate)?;
    for line in instruments.prepare(sample_rate)? {
        tracing::info!("{line}");
    }
    Ok(())
}

fn play(args: PlayArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    let instruments = conductor::instruments(&config, args.config.as_deref())?;
    let sources = sources(&config, args.config.as_deref(), &args.source, &instruments)?;
    if let Some(d) = args.duration {
        check_positive("--duration", d)?;
    }
    if let Some(v) = args.volume {
        check_flag("--volume", v as f64, Limits::real(0.0, 1.0))?;
    }
    if let Some(frames) = args.buffer_frames.filter(|&f| f != 0) {
        check_flag("--buffer-frames", frames as f64, config::BUFFER_FRAMES)?;
    }
    check_positive("--speed", args.speed)?;
    let sample_rate = sample_rate(args.sample_rate, &config)?;
    ready_to_play(&config, &instruments, sample_rate)?;
    let display = display_options(&config, args.display.as_deref())?;
    let opts = PlayOptions {
        sources,
        display,
        listen: listen(&config),
        notes: args.notes,
        device: DeviceRequest {
            host: args.host.or_config(&config),
            device: args
                .device
                .or_else(|| Some(config.output.device.clone()).filter(|d| !d.is_empty())),
            sample_rate,
            buffer_frames: args.buffer_frames.unwrap_or(config.output.buffer_frames),
            exact_buffer: false,
            realtime_priority: config.output.realtime_priority,
        },
        wait_for_device: args.wait_for_device || config.output.wait_for_device,
        volume: args.volume,
        duration: args.duration,
        speed: args.speed,
        seed: args.seed,
    };
    let summary = conductor::play(&config, instruments, &opts)?;
    for line in summary.source_lines() {
        eprintln!("{line}");
    }
    eprintln!("summary: {}", summary.line());
    Ok(())
}

fn render(args: RenderArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    let instruments = conductor::instruments(&config, args.config.as_deref())?;
    check_positive("--duration", args.duration)?;
    check_positive("--speed", args.speed)?;
    let sample_rate = sample_rate(args.sample_rate, &config)?;
    ready_to_play(&config, &instruments, sample_rate)?;
    let opts = RenderOptions {
        sources: sources(&config, args.config.as_deref(), &args.source, &instruments)?,
        duration: args.duration,
        output: args.output,
        seed: args.seed,
        speed: args.speed,
        sample_rate,
        notes: args.notes,
    };
    let report = conductor::render(&config, instruments, &opts)
        .with_context(|| format!("rendering {}", opts.output.display()))?;
    eprintln!(
        "rendered {:.1} s in {:.2} s ({:.0}× real time) to {}",
        report.seconds_rendered,
        report.wall_seconds,
        report.seconds_rendered / report.wall_seconds.max(1e-9),
        opts.output.display()
    );
    for line in report.summary.source_lines() {
        eprintln!("{line}");
    }
    eprintln!("summary: {}", report.summary.line());
    Ok(())
}

fn record(args: RecordArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    if let Some(d) = args.duration {
        check_positive("--duration", d)?;
    }
    let instruments = conductor::instruments(&config, args.config.as_deref())?;
    let mut planned = sources(
        &config,
        args.config.as_deref(),
        std::slice::from_ref(&args.source),
        &instruments,
    )?;
    let Some(source) = planned.pop() else {
        anyhow::bail!("no source to record");
    };
    let report = conductor::record(
        &config,
        &conductor::RecordOptions {
            source,
            output: args.output.clone(),
            duration: args.duration,
            listen: listen(&config),
        },
    )?;
    eprintln!(
        "recorded {} messages in {:.1} s to {}",
        report.messages,
        report.seconds,
        args.output.display()
    );
    eprintln!("summary: {}", report.summary.line());
    Ok(())
}

/// Every problem of a configuration file, one a line; none if it is ready to play.
fn config_problems(file: &Path) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
    let lines = |e: &config::ConfigError| e.each().iter().map(|e| e.to_string()).collect();
    let config = Config::load(file).map_err(|e| lines(&e))?;
    let instruments = conductor::instruments(&config, Some(file)).map_err(|e| match e
        .downcast_ref::<InstrumentError>(
    ) {
        Some(InstrumentError::Recipe(e)) => lines(e),
        _ => vec![format!("{e:#}")],
    })?;
    config::check_playable(&config, &instruments, config.output.sample_rate)
        .map_err(|e| lines(&e))?;
    let samplers = instruments
        .prepare(config.output.sample_rate)
        .map_err(|e| match e {
            InstrumentError::Recipe(e) => lines(&e),
            other => vec![other.to_string()],
        })?;
    // Its sources' formats, rules files, instruments and secrets.
    plan(&config, Some(file), &[], &instruments.names()).map_err(|e| vec![e.to_string()])?;
    Ok((instruments.names(), samplers))
}

fn check_config(args: CheckConfigArgs) -> Result<()> {
    let file = args.file.display();
    match config_problems(&args.file) {
        Ok((names, samplers)) => {
            println!(
                "{file}: ok ({} instruments: {})",
                names.len(),
                names.join(", ")
            );
            for line in samplers {
                println!("  {line}");
            }
            Ok(())
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            anyhow::bail!("{file}: {} problem(s)", problems.len())
        }
    }
}

fn bench_render(args: BenchRenderArgs) -> Result<()> {
    check_positive("--seconds", args.seconds)?;
    let config = load_config(&args.config)?;
    let instruments = conductor::instruments(&config, args.config.as_deref())?;
    for line in instruments.prepare(args.sample_rate)? {
        eprintln!("{line}");
    }
    let report = bench::render::run(
        &bench::render::RenderBenchOptions {
            voices: args.voices,
            buffer_frames: args.buffer_frames,
            sample_rate: args.sample_rate,
            seconds: args.seconds,
            instrument: args.instrument,
        },
        &instruments,
    )?;
    print_report(&report, args.json, bench::render::table)
}

fn bench_silence(args: BenchSilenceArgs) -> Result<()> {
    check_positive("--seconds", args.seconds)?;
    check_positive("--stretch", args.stretch)?;
    let report = bench::silence::run(&bench::silence::SilenceBenchOptions {
        seconds: args.seconds,
        stretch: args.stretch,
        buffer_frames: args.buffer_frames,
        sample_rate: args.sample_rate,
    })?;
    print_report(&report, args.json, bench::silence::table)
}

fn parse_schedule(name: &str) -> Result<Schedule, String> {
    Schedule::parse(name).ok_or_else(|| format!("expected {}", Schedule::NAMES))
}

fn bench_latency(args: BenchLatencyArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    let schedules = if args.schedule.is_empty() {
        vec![config.engine.schedule()]
    } else {
        args.schedule
    };
    let rows = bench::latency::run(&bench::latency::LatencyBenchOptions {
        schedules,
        host: args.host.or_config(&config),
        realtime_priority: config.output.realtime_priority,
        config,
        buffer_frames: args.buffer_frames,
        events: args.events,
        rate: args.rate,
        device: args.device,
        sample_rate: args.sample_rate,
    })?;
    print_report(&rows, args.json, |rows: &Vec<_>| {
        bench::latency::table(rows)
    })
}

/// Print a bench report as JSON, or as its table for people.
fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    table: impl Fn(&T) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARILLON_LOG")
                // The decoders (symphonia, under rodio) narrate every Ogg stream they
                // open: kept for CARILLON_LOG=debug.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,jack_sys=warn,symphonia=warn")
                }),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // libasound and libjack print their own diagnostics straight to stderr; carillon
    // says what went wrong itself, and keeps theirs for CARILLON_LOG=debug.
    device::quiet_audio_libraries();
    // One TLS crypto provider for wss:// feeds; an error means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Play(PlayArgs::default())) {
        Command::Play(args) => play(args),
        Command::Render(args) => render(args),
        Command::Record(args) => record(args),
        Command::Devices(args) => device::list(args.host.host.as_deref())
            .map(|s| print!("{s}"))
            .map_err(Into::into),
        Command::Bench(BenchCommand::Render(args)) => bench_render(args),
        Command::Bench(BenchCommand::Latency(args)) => bench_latency(args),
        Command::Bench(BenchCommand::Silence(args)) => bench_silence(args),
        Command::CheckConfig(args) => check_config(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carillon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
