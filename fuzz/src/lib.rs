//! What each fuzz target does with one input, in one place: the libFuzzer targets in
//! `fuzz_targets/` call these, and `tests/fuzz_corpus.rs` replays every committed seed
//! through them on the stable toolchain, so a seed that once crashed stays fixed.
//!
//! An input may be rejected with an error; it must never panic. Bytes that are not
//! UTF-8 are read lossily rather than dropped, so that every input reaches the parser.
//! Where the parser's result goes on to the score or the synth in carillon itself, the
//! check takes it one step further, since a value that parses and then panics there is
//! the same crash to a listener.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carillon::config::Config;
use carillon::event::{Event, EventKind};
use carillon::ingest::format::{rules, Format, Message, Parsed};
use carillon::ingest::{format, replay, wikimon};
use carillon::instrument::{Instruments, Recipe};
use carillon::score::{InstrumentId, Note, Outcome, Score};
use fundsp::prelude::{BufferArray, BufferRef, U1};

/// One input through one parser (and what carillon does next with its result).
pub type Check = fn(&[u8]);

/// Every fuzz target, by the name of its file in `fuzz_targets/` and of its seed folder
/// in `corpus/`.
pub const TARGETS: [(&str, Check); 7] = [
    ("wikimon_frame", wikimon_frame),
    ("feed_message", feed_message),
    ("rules_file", rules_file),
    ("replay_lines", replay_lines),
    ("recentchange", recentchange),
    ("config_file", config_file),
    ("instrument_recipe", instrument_recipe),
];

/// The instruments the default score names, in the order of their ids.
const INSTRUMENT_NAMES: [&str; 3] = ["celesta", "clavichord", "violin"];

/// The sample rate voices are built and rendered at.
const SAMPLE_RATE: f64 = 48_000.0;

/// How much of each voice is rendered: enough for every unit to have started and its
/// envelopes to have moved, little enough to keep thousands of inputs a second.
const RENDER_FRAMES: u64 = 4096;

/// The engine's block size: voices are rendered as the engine renders them.
const BLOCK: u64 = 64;

fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A websocket text frame from a wikimon feed, and the note the default score makes of it.
pub fn wikimon_frame(data: &[u8]) {
    if let Ok(event) = wikimon::parse_wikimon(&text(data)) {
        score_default(&event);
    }
}

/// A replay file: every line timed (by `_t`, `timestamp` or `meta.dt`) and parsed.
pub fn replay_lines(data: &[u8]) {
    let text = text(data);
    for (t, _) in replay::timed_lines(&text) {
        // `pace` waits for each time as a `Duration`: finite, not negative, and in range.
        assert!(
            Duration::try_from_secs_f64(t).is_ok(),
            "a replay time must be a duration, got {t}"
        );
    }
    for line in text.lines() {
        let _ = replay::parse_rfc3339(line.trim());
    }
}

/// An EventStreams recentchange line, read as such and as a replay line of either format.
pub fn recentchange(data: &[u8]) {
    let text = text(data);
    if let Ok(event) = format::parse_recentchange(&text) {
        score_default(&event);
    }
    if let Ok(event) = format::parse_any(&text) {
        score_default(&event);
    }
}

/// One message of any feed: its first line is the event name the transport gave (an SSE
/// `event:`, a webhook's event header; empty for none), the rest its data. Read in
/// every format carillon has: the built-in ones and every rules preset.
pub fn feed_message(data: &[u8]) {
    let text = text(data);
    let (event, body) = text.split_once('\n').unwrap_or(("", &text));
    let message = Message {
        event: (!event.is_empty()).then_some(event),
        data: body,
    };
    let mut formats = vec![
        Format::Wikimon,
        Format::EventStreams,
        Format::Auto,
        Format::named("eventstreams:enwiki,frwiki", None).expect("a built-in format"),
    ];
    for (name, _) in rules::PRESETS {
        formats.push(Format::named(name, None).expect("a built-in preset"));
    }
    for format in formats {
        if let Parsed::Event(event) = format.parse(&message) {
            score_default(&event);
        }
    }
}

/// A user's rules file, and what it makes of a few messages.
pub fn rules_file(data: &[u8]) {
    let Ok(rules) = rules::Rules::from_toml("fuzz", &text(data), Path::new("fuzz.toml")) else {
        return;
    };
    for (event, body) in [
        (
            None,
            r#"{"kind":"addition","size":12,"title":"A","payload":"{\"a\":[1,2]}"}"#,
        ),
        (
            Some("push"),
            r#"{"commits":[{},{}],"ref":"refs/heads/main","a":{"b":null}}"#,
        ),
        (None, "not json"),
    ] {
        if let Parsed::Event(event) = rules.apply(&Message { event, data: body }) {
            score_default(&event);
        }
    }
}

/// A user's config file, and the score built from it mapping edits of every size.
pub fn config_file(data: &[u8]) {
    let Ok(config) = Config::from_toml(&text(data), Path::new("fuzz.toml")) else {
        return;
    };
    let names = INSTRUMENT_NAMES.map(String::from);
    let Ok(mut score) = Score::new(&config.score, &names) else {
        return;
    };
    for (i, event) in sample_events().iter().enumerate() {
        score.map(event, i as f64 * 0.01);
    }
}

/// An instrument recipe, and the voices built from it, rendered for a moment, at a low,
/// a middle and a high note.
pub fn instrument_recipe(data: &[u8]) {
    let text = text(data);
    if Recipe::parse(&text, Path::new("fuzz.toml")).is_err() {
        return;
    }
    // `Instruments` is only made from files: the recipe goes through a scratch folder.
    let Some(instruments) = instruments_from(&text) else {
        return;
    };
    for (i, frequency) in [32.7f32, 440.0, 4186.0].into_iter().enumerate() {
        let note = Note {
            instrument: InstrumentId(0),
            frequency,
            midi: 0,
            velocity: 1.0,
            pan: 0.0,
            seed: i as u64,
            kind: EventKind::Addition,
        };
        let mut voice = instruments.build(&note, SAMPLE_RATE);
        let mut out = BufferArray::<U1>::new();
        let mut left = voice.frames.min(RENDER_FRAMES);
        while left > 0 {
            let n = left.min(BLOCK);
            voice
                .unit
                .process(n as usize, &BufferRef::empty(), &mut out.buffer_mut());
            left -= n;
        }
    }
}

/// What the default score makes of an event, as `play` would do with it.
fn score_default(event: &Event) {
    let names = INSTRUMENT_NAMES.map(String::from);
    if let Ok(mut score) = Score::new(&Config::defaults().score, &names) {
        if let Outcome::Play(note) = score.map(event, 0.0) {
            assert!(
                note.frequency.is_finite(),
                "note without a frequency: {note:?}"
            );
        }
    }
}

/// Edits of the extreme and ordinary sizes, and an account creation.
fn sample_events() -> Vec<Event> {
    let mut events: Vec<Event> = [i64::MIN, -40_000, -1, 0, 1, 100, 40_000, i64::MAX]
        .into_iter()
        .map(|size| Event::new(Event::kind_for_size(size), size, "Page"))
        .collect();
    let mut member = Event::new(EventKind::NewMember, 0, "Special:Log/newusers");
    member.user = "Newcomer".into();
    member.namespace = "Main".into();
    events.push(member);
    for event in &mut events {
        event.namespace = "Main".into();
    }
    events
}

/// Load one recipe's text as the only instrument of a scratch folder.
fn instruments_from(text: &str) -> Option<Instruments> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "carillon-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let loaded = std::fs::write(dir.join("recipe.toml"), text)
        .ok()
        .and_then(|()| Instruments::load_dir(&dir).ok());
    // Best effort: a leftover scratch file in the temp folder harms nothing.
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}
