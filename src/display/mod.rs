//! The ambient display: a web page served by carillon itself, showing each note at the
//! instant it is heard, with live controls that act on carillon's own sound.
//!
//! The page and its script are embedded in the binary (`assets/`), so the display
//! works with no network beyond the machine. A websocket at `/feed` sends the page one
//! `hello` (the state of sources and controls), then a `note` frame for every note at
//! the playback instant the audio device reports, and a `status` frame once a second
//! and after every control change. `POST /control` changes the volume, mutes, or turns
//! a source on or off, for every open page at once; it only takes requests from the
//! page's own origin, and can be turned off for a public kiosk. The engine never knows
//! the page exists: the conductor hands this module what it scheduled and when it
//! will be heard, and reads the controls once per turn of its loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::event::{Event, EventKind};
use crate::score::Note;
use crate::stats::{EventRates, Stats};

/// The page's policy: its own script and style only, nothing from elsewhere, no inline
/// script — a title made of markup can never run.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: path, content type, bytes.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// Notes waiting for the instant they are heard; past this many, new ones are not
/// shown (and counted), so a flood cannot grow memory.
const PENDING: usize = 4096;

/// Largest control request body (bytes).
const MAX_CONTROL_BYTES: usize = 4096;

/// What the page's controls set, read by the conductor once per turn of its loop.
pub struct Controls {
    volume: AtomicU32,
    muted: AtomicBool,
    enabled: Vec<AtomicBool>,
    /// Bumped at every change, so that the conductor applies a change once.
    generation: AtomicU64,
    /// Wakes the conductor, which otherwise looks at the controls only a few times a
    /// second when no event comes: a mute must silence the very next note.
    waker: crossbeam_channel::Sender<()>,
}

impl Controls {
    fn new(volume: f32, sources: usize, waker: crossbeam_channel::Sender<()>) -> Self {
        Self {
            volume: AtomicU32::new(volume.to_bits()),
            muted: AtomicBool::new(false),
            enabled: (0..sources).map(|_| AtomicBool::new(true)).collect(),
            generation: AtomicU64::new(0),
            waker,
        }
    }

    pub fn volume(&self) -> f32 {
        f32::from_bits(self.volume.load(Relaxed))
    }

    pub fn muted(&self) -> bool {
        self.muted.load(Relaxed)
    }

    /// Whether the source of this index is on.
    pub fn enabled(&self, source: usize) -> bool {
        self.enabled.get(source).is_none_or(|e| e.load(Relaxed))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Relaxed);
        // Full means a wake-up is already pending, which will see this change too.
        let _ = self.waker.try_send(());
    }
}

/// Where the display listens, and whether its controls act.
#[derive(Debug, Clone)]
pub struct DisplayOptions {
    pub listen: SocketAddr,
    pub controls: bool,
}

struct Hub {
    feed: broadcast::Sender<Arc<str>>,
    controls: Controls,
    controls_on: bool,
    names: Vec<String>,
    /// The last status frame, for a page that connects between two.
    status: Mutex<serde_json::Value>,
    /// Notes not shown because too many were waiting.
    dropped: AtomicU64,
}

/// The running display, held by the conductor.
pub struct Display {
    hub: Arc<Hub>,
    pending: mpsc::Sender<(Instant, Arc<str>)>,
    rates: EventRates,
    pub addr: SocketAddr,
}

/// A note as the page sees it.
#[derive(Serialize)]
struct NoteFrame<'a> {
    #[serde(rename = "type")]
    kind_of_frame: &'static str,
    kind: &'static str,
    size: i64,
    title: &'a str,
    user: &'a str,
    url: &'a str,
    source: &'a str,
    bot: bool,
    anon: bool,
    minor: bool,
    new_page: bool,
    pan: f32,
    velocity: f32,
    instrument: &'a str,
    midi: i32,
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Addition => "addition",
        EventKind::Removal => "removal",
        EventKind::NewMember => "new_member",
        EventKind::Other => "other",
    }
}

impl Display {
    /// Start serving on the runtime; `sources` are the names of the sources playing.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        options: &DisplayOptions,
        sources: Vec<String>,
        volume: f32,
        waker: crossbeam_channel::Sender<()>,
    ) -> anyhow::Result<Display> {
        use anyhow::Context;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(options.listen))
            .with_context(|| format!("the display cannot listen on {}", options.listen))?;
        let addr = listener.local_addr()?;
        let (feed, _) = broadcast::channel(1024);
        let hub = Arc::new(Hub {
            feed,
            controls: Controls::new(volume, sources.len(), waker),
            controls_on: options.controls,
            // Until the first status: every source starting.
            status: Mutex::new(json!({
                "type": "status",
                "volume": volume,
                "muted": false,
                "device": "waiting",
                "sources": sources
                    .iter()
                    .map(|name| json!({"name": name, "state": "starting", "enabled": true, "per_minute": 0.0}))
                    .collect::<Vec<_>>(),
            })),
            names: sources,
            dropped: AtomicU64::new(0),
        });
        let (pending, waiting) = mpsc::channel(PENDING);
        runtime.spawn(release_when_heard(waiting, hub.clone()));
        let router = Router::new()
            .route("/feed", get(feed_socket))
            .route("/control", post(control))
            .fallback(get(asset))
            .with_state(hub.clone());
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("the display stopped: {e}");
            }
        });
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the display listens on {addr}, beyond this machine{}",
                if options.controls {
                    "; its controls act on the sound: `[display] controls = false` turns them off for a public kiosk"
                } else {
                    ""
                }
            );
        }
        tracing::info!("display: http://{addr}/");
        Ok(Display {
            hub,
            pending,
            rates: EventRates::new(),
            addr,
        })
    }

    pub fn controls(&self) -> &Controls {
        &self.hub.controls
    }

    /// Notes not shown because too many were waiting to be heard.
    pub fn dropped(&self) -> u64 {
        self.hub.dropped.load(Relaxed)
    }

    /// A note scheduled to be heard at `heard`: the page gets it then.
    pub fn note(
        &self,
        heard: Instant,
        event: &Event,
        note: &Note,
        source: usize,
        instrument: &str,
    ) {
        let frame = NoteFrame {
            kind_of_frame: "note",
            kind: kind_name(event.kind),
            size: event.size,
            title: &event.title,
            user: &event.user,
            url: &event.url,
            source: self.hub.names.get(source).map_or("", String::as_str),
            bot: event.is_bot,
            anon: event.is_anon,
            minor: event.is_minor,
            new_page: event.is_new_page,
            pan: note.pan,
            velocity: note.velocity,
            instrument,
            midi: note.midi,
        };
        let Ok(text) = serde_json::to_string(&frame) else {
            return;
        };
        if self.pending.try_send((heard, text.into())).is_err() {
            self.hub.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The state of sources, controls and device, about once a second (and at once
    /// after a control change): to every page, and kept for pages that connect.
    pub fn status(&mut self, stats: &[Arc<Stats>], feeds: &[bool], device: &str) {
        let now = Instant::now();
        let rates = self.rates.sample(stats, now);
        let per_minute = |i: usize| rates.get(i).copied().unwrap_or(0.0);
        let c = &self.hub.controls;
        let sources: Vec<serde_json::Value> = self
            .hub
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let state = match (feeds.get(i), stats.get(i)) {
                    (Some(false), _) => "local",
                    (_, Some(s)) if s.connected.load(Relaxed) => "connected",
                    _ => "reconnecting",
                };
                json!({
                    "name": name,
                    "state": state,
                    "enabled": c.enabled(i),
                    "per_minute": (per_minute(i) * 10.0).round() / 10.0,
                })
            })
            .collect();
        let status = json!({
            "type": "status",
            "volume": c.volume(),
            "muted": c.muted(),
            "device": device,
            "sources": sources,
        });
        let _ = self.hub.feed.send(status.to_string().into());
        if let Ok(mut last) = self.hub.status.lock() {
            *last = status;
        }
    }
}

/// Hand each note to the pages at the instant it is heard (notes come in the order
/// they were scheduled, which is the order they sound in, to a block).
async fn release_when_heard(mut waiting: mpsc::Receiver<(Instant, Arc<str>)>, hub: Arc<Hub>) {
    while let Some((heard, text)) = waiting.recv().await {
        tokio::time::sleep_until(heard.into()).await;
        // No page open: nothing to do with it.
        let _ = hub.feed.send(text);
    }
}

async fn asset(uri: Uri) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == uri.path()) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

async fn feed_socket(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    ws.on_upgrade(move |socket| follow(socket, hub))
}

/// One page's feed: hello, then every frame, until the page leaves. A page too slow
/// to keep up skips what it missed rather than hold carillon's memory.
async fn follow(mut socket: WebSocket, hub: Arc<Hub>) {
    let mut frames = hub.feed.subscribe();
    let hello = {
        let status = hub.status.lock().map(|s| s.clone()).unwrap_or_default();
        let mut hello = status;
        hello["type"] = json!("hello");
        hello["version"] = json!(env!("CARGO_PKG_VERSION"));
        hello["controls"] = json!(hub.controls_on);
        hello.to_string()
    };
    if socket.send(WsMessage::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(text) => {
                    if socket.send(WsMessage::Text(text.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // The page says nothing on the feed; a close or an error ends it.
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A control request: from the page's own origin only, when controls are on.
async fn control(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refuse = |status: StatusCode, why: &'static str| (status, why).into_response();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) if origin == format!("http://{host}") => {}
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                "controls take requests from the display's own page only",
            )
        }
    }
    if !hub.controls_on {
        return refuse(StatusCode::FORBIDDEN, "the controls are turned off");
    }
    if body.len() > MAX_CONTROL_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a control request is a few bytes",
        );
    }
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not JSON");
    };
    let c = &hub.controls;
    if let Some(volume) = request.get("volume") {
        match volume.as_f64() {
            Some(v) if (0.0..=1.0).contains(&v) => c.volume.store((v as f32).to_bits(), Relaxed),
            _ => return refuse(StatusCode::BAD_REQUEST, "volume is a number in 0..=1"),
        }
    } else if let Some(muted) = request.get("muted") {
        match muted.as_bool() {
            Some(m) => c.muted.store(m, Relaxed),
            None => return refuse(StatusCode::BAD_REQUEST, "muted is true or false"),
        }
    } else if let Some(source) = request.get("source") {
        let index = source
            .as_str()
            .and_then(|name| hub.names.iter().position(|n| n == name));
        match (index, request.get("enabled").and_then(|e| e.as_bool())) {
            (Some(i), Some(on)) => c.enabled[i].store(on, Relaxed),
            (None, _) => return refuse(StatusCode::BAD_REQUEST, "no source of that name"),
            (_, None) => return refuse(StatusCode::BAD_REQUEST, "enabled is true or false"),
        }
    } else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected {\"volume\": 0..1}, {\"muted\": bool} or {\"source\": NAME, \"enabled\": bool}",
        );
    }
    c.changed();
    StatusCode::NO_CONTENT.into_response()
}
