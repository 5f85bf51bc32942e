//! carillon turns live streams of contributions to commons (Wikipedia edits, new
//! accounts, …) into music, as they happen.
//!
//! Data flows one way: [`ingest`] sources produce normalized [`event::Event`]s, the
//! [`score`] maps each one to a [`score::Note`], the [`engine`] plays notes on a
//! lock-free synth graph, and an [`output`] (audio device, WAV file or nothing) drives
//! the engine. [`conductor`] wires these together for `play` and `render`.

pub mod alloc_watch;
pub mod backoff;
pub mod bell;
pub mod bench;
mod block_node;
pub mod conductor;
pub mod config;
pub mod display;
pub mod engine;
pub mod event;
pub mod ingest;
pub mod instrument;
pub mod logs;
pub mod output;
pub mod pitch;
pub mod rng;
pub mod sampler;
pub mod score;
pub mod simd;
pub mod stats;
pub mod strings;
