//! Recording a live source: every raw message as it arrived, with its arrival time, so
//! that any stream can be replayed later (`replay:FILE`) and rendered to the same notes.
//!
//! The file is JSONL: a header `{"_record": {"format": NAME, "source": SPEC}}`, then a
//! line `{"_t": SECONDS, "_event": NAME, "_data": TEXT}` per message, `_t` counted from
//! the start of the recording and `_event` present when the transport gave one. The raw
//! text is kept as it came, so a replay reads it exactly as the live source did.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use super::format::{Format, Message};

pub struct Recorder {
    out: Mutex<BufWriter<File>>,
    path: PathBuf,
    start: Instant,
    /// Messages written.
    pub messages: AtomicU64,
    /// Writes that failed (a full disk): counted, and said once.
    pub failures: AtomicU64,
}

impl Recorder {
    /// Create the file and write its header.
    pub fn create(path: &Path, format: &Format, spec: &str) -> std::io::Result<Recorder> {
        let mut out = BufWriter::new(File::create(path)?);
        let header = json!({"_record": {"format": format.name(), "source": spec}});
        writeln!(out, "{header}")?;
        Ok(Recorder {
            out: Mutex::new(out),
            path: path.to_owned(),
            start: Instant::now(),
            messages: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Save one message with its arrival time.
    pub fn write(&self, message: &Message) {
        let t = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6;
        let line = match message.event {
            Some(event) => json!({"_t": t, "_event": event, "_data": message.data}),
            None => json!({"_t": t, "_data": message.data}),
        };
        // Only the source tasks write, one message at a time: the lock is never
        // contended for long, and never on the audio thread.
        let result = match self.out.lock() {
            Ok(mut out) => writeln!(out, "{line}"),
            Err(_) => return,
        };
        match result {
            Ok(()) => {
                self.messages.fetch_add(1, Relaxed);
            }
            Err(e) => {
                if self.failures.fetch_add(1, Relaxed) == 0 {
                    tracing::error!("cannot write {}: {e}", self.path.display());
                }
            }
        }
    }

    /// Flush what is buffered to the file.
    pub fn finish(&self) -> std::io::Result<()> {
        match self.out.lock() {
            Ok(mut out) => out.flush(),
            Err(_) => Err(std::io::Error::other("the recording's writer panicked")),
        }
    }
}
