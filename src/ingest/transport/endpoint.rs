//! The local ingest endpoint: an HTTP server that forges and local tools push events to,
//! rather than carillon fetching them. `POST /hooks/NAME` takes a forge's webhooks
//! (GitHub, Gitea, Forgejo, or carillon's own JSON), signed with HMAC-SHA256 over the
//! raw body when the hook has a secret; `GET /push/NAME` takes a websocket whose text
//! frames are one message each, and `POST /push/NAME` an NDJSON body, one message a line.
//!
//! Every request is answered, and bounded: connections are capped and dropped when idle,
//! bodies and frames have a size limit, and whatever is refused is counted in the hook's
//! `refused` counter (never delivered), with a short plain-text reason for the sender.
//! A hook without a secret is only served on a loopback address: anyone who can reach
//! a listener on the network could otherwise play anything through it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{
    close_code, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade,
};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::ingest::format::Message;
use crate::ingest::{Delivery, Forge};
use crate::stats::Stats;

/// Connections served at once; more wait in the kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection that sends nothing for this long is closed, so that idle or stalled
/// clients cannot hold every slot. Push websockets are pinged more often than this,
/// and a live client's pongs keep them open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const PING_EVERY: Duration = Duration::from_secs(30);
/// The longest a request's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a hook takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// A forge's webhooks, at `POST /hooks/NAME`.
    Webhook(Forge),
    /// Messages pushed over a websocket (`GET /push/NAME`) or as NDJSON
    /// (`POST /push/NAME`).
    Push,
}

/// One source served by the endpoint.
pub struct Hook {
    pub delivery: Delivery,
    pub kind: HookKind,
    /// A webhook's HMAC-SHA256 key; for a push hook, the token its clients send as
    /// `Authorization: Bearer …`.
    pub secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body (a webhook's payload, an NDJSON batch).
    pub max_body_bytes: usize,
    /// The largest pushed message (a websocket message, an NDJSON line).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
        }
    }
}

/// A hook and the push clients connected to it.
struct Served {
    hook: Hook,
    clients: AtomicUsize,
}

struct Endpoint {
    hooks: HashMap<String, Served>,
    limits: Limits,
}

/// Serve the hooks on `listener` until the runtime stops. Fails at once, before
/// serving anything, if a hook name is unusable or a hook without a secret would be
/// reachable from the network.
pub async fn serve(
    listener: TcpListener,
    hooks: Vec<(String, Hook)>,
    limits: Limits,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let endpoint = Arc::new(Endpoint {
        hooks: check(hooks, local)?,
        limits,
    });
    for (name, served) in &endpoint.hooks {
        let path = match served.hook.kind {
            HookKind::Webhook(forge) => format!("/hooks/{name} ({} webhooks)", forge.name()),
            HookKind::Push => format!("/push/{name} (websocket or NDJSON)"),
        };
        tracing::info!("ingest endpoint: http://{local}{path}");
    }
    let router = Router::new()
        .route("/hooks/{name}", any(webhook))
        .route("/push/{name}", any(push))
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "no such path: hooks are at /hooks/NAME and /push/NAME",
            )
        })
        .with_state(endpoint);
    axum::serve(Bounded::new(listener, MAX_CONNECTIONS), router).await
}

fn check(hooks: Vec<(String, Hook)>, local: SocketAddr) -> io::Result<HashMap<String, Served>> {
    let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    let mut served = HashMap::new();
    for (name, hook) in hooks {
        if name.is_empty() || name.contains('/') {
            return invalid(format!(
                "{name:?} cannot name a hook: it is part of a URL path"
            ));
        }
        match &hook.secret {
            Some(secret) if secret.is_empty() => {
                return invalid(format!("hook {name:?} has an empty secret"));
            }
            Some(_) => {}
            None if !local.ip().is_loopback() => {
                return invalid(format!(
                    "hook {name:?} has no secret, and the endpoint listens on {local}, beyond this machine: \
                     anyone who reaches it could play through it; give the hook a secret or listen on 127.0.0.1"
                ));
            }
            None => {
                if let HookKind::Webhook(forge) = hook.kind {
                    tracing::warn!(
                        "webhook {name:?} ({}) has no secret: any program on this machine can post to it",
                        forge.name()
                    );
                }
            }
        }
        let duplicate = served
            .insert(
                name.clone(),
                Served {
                    hook,
                    clients: AtomicUsize::new(0),
                },
            )
            .is_some();
        if duplicate {
            return invalid(format!("two hooks are named {name:?}"));
        }
    }
    Ok(served)
}

fn plain(status: StatusCode, why: impl Into<String>) -> Response {
    let mut text = why.into();
    text.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A request the hook will not take: counted, and answered with why.
fn refuse(hook: &Hook, name: &str, status: StatusCode, why: impl Into<String>) -> Response {
    let why = why.into();
    Stats::add(&hook.delivery.stats.refused, 1);
    tracing::debug!("hook {name:?}: refused a request ({status}): {why}");
    plain(status, why)
}

/// A request whose content cannot be read: counted as malformed, nothing delivered.
fn malformed(hook: &Hook, name: &str, why: impl Into<String>) -> Response {
    let why = why.into();
    hook.delivery.malformed();
    tracing::debug!("hook {name:?}: malformed request: {why}");
    plain(StatusCode::BAD_REQUEST, why)
}

fn method_not_allowed(hook: &Hook, name: &str, allow: &'static str) -> Response {
    let mut response = refuse(
        hook,
        name,
        StatusCode::METHOD_NOT_ALLOWED,
        format!("use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

async fn webhook(
    State(endpoint): State<Arc<Endpoint>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let Some(served) = endpoint.hooks.get(&name) else {
        return plain(StatusCode::NOT_FOUND, format!("no hook named {name:?}"));
    };
    let hook = &served.hook;
    let HookKind::Webhook(forge) = hook.kind else {
        return refuse(
            hook,
            &name,
            StatusCode::NOT_FOUND,
            format!("{name:?} takes pushed messages at /push/{name}, not webhooks"),
        );
    };
    if request.method() != Method::POST {
        return method_not_allowed(hook, &name, "POST");
    }
    let (parts, body) = request.into_parts();
    let Some(encoding) = encoding(&parts.headers) else {
        return refuse(
            hook,
            &name,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the payload as application/json (or as a form with a payload field)",
        );
    };
    let body = match read_body(&parts.headers, body, endpoint.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(refusal) => return refusal.answer(hook, &name, endpoint.limits.max_body_bytes),
    };
    if let Some(secret) = &hook.secret {
        if !signed(forge, &parts.headers, secret, &body) {
            return refuse(
                hook,
                &name,
                StatusCode::UNAUTHORIZED,
                format!("wrong or missing signature ({})", signature_header(forge)),
            );
        }
    }
    let data = match encoding {
        Encoding::Json => match std::str::from_utf8(&body) {
            Ok(text) => text.to_owned(),
            Err(_) => return malformed(hook, &name, "the body is not UTF-8"),
        },
        Encoding::Form => match form_payload(&body) {
            Some(text) => text,
            None => return malformed(hook, &name, "a form without a UTF-8 payload field"),
        },
    };
    if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_err() {
        return malformed(hook, &name, "the payload is not JSON");
    }
    let event = event_name(forge, &parts.headers);
    if event == Some("ping") {
        hook.delivery.skipped("ping".into());
        return plain(StatusCode::OK, "pong");
    }
    hook.delivery.message(&Message { event, data: &data });
    plain(StatusCode::OK, "ok")
}

enum Encoding {
    Json,
    /// `application/x-www-form-urlencoded`, the JSON in a `payload` field (GitHub's and
    /// Gitea's "form" content type).
    Form,
}

fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Some(Encoding::Json)
    } else if media == "application/x-www-form-urlencoded" {
        Some(Encoding::Form)
    } else {
        None
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// Where a forge puts its signature (Forgejo sends Gitea's header too).
fn signature_header(forge: Forge) -> &'static str {
    match forge {
        Forge::GitHub | Forge::Generic => "X-Hub-Signature-256: sha256=HEX",
        Forge::Gitea => "X-Gitea-Signature: HEX",
        Forge::Forgejo => "X-Forgejo-Signature: HEX",
    }
}

/// Whether the body carries a valid HMAC-SHA256 signature by `secret`.
fn signed(forge: Forge, headers: &HeaderMap, secret: &[u8], body: &[u8]) -> bool {
    let hex = match forge {
        Forge::GitHub | Forge::Generic => {
            header_str(headers, "x-hub-signature-256").and_then(|v| v.strip_prefix("sha256="))
        }
        Forge::Gitea => header_str(headers, "x-gitea-signature"),
        Forge::Forgejo => header_str(headers, "x-forgejo-signature")
            .or_else(|| header_str(headers, "x-gitea-signature")),
    };
    let Some(Ok(tag)) = hex.map(|h| hex::decode(h.trim())) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // Constant-time, and only a tag of the full length can match.
    mac.verify_slice(&tag).is_ok()
}

fn event_name(forge: Forge, headers: &HeaderMap) -> Option<&str> {
    match forge {
        Forge::GitHub => header_str(headers, "x-github-event"),
        Forge::Gitea => header_str(headers, "x-gitea-event"),
        Forge::Forgejo => {
            header_str(headers, "x-forgejo-event").or_else(|| header_str(headers, "x-gitea-event"))
        }
        Forge::Generic => None,
    }
}

/// The `payload` field of a form body, decoded.
fn form_payload(body: &[u8]) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if percent_decode(key) != b"payload" {
            return None;
        }
        String::from_utf8(percent_decode(value)).ok()
    })
}

fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                text.get(i + 1).and_then(|&b| hex(b)),
                text.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                // A stray '%' stands for itself, as browsers read it.
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

enum BodyRefusal {
    TooBig,
    Slow,
    Broken(String),
}

impl BodyRefusal {
    fn answer(self, hook: &Hook, name: &str, max: usize) -> Response {
        match self {
            BodyRefusal::TooBig => refuse(
                hook,
                name,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {max} bytes"),
            ),
            BodyRefusal::Slow => refuse(
                hook,
                name,
                StatusCode::REQUEST_TIMEOUT,
                format!("the body took over {} s to arrive", BODY_TIMEOUT.as_secs()),
            ),
            BodyRefusal::Broken(e) => refuse(
                hook,
                name,
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            ),
        }
    }
}

/// The whole body, refused as soon as it is known to be over `max` (from its declared
/// length, or as it arrives), so that no more than `max` bytes are ever held.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, BodyRefusal> {
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyRefusal::TooBig);
    }
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyRefusal::Broken(e.to_string()))?;
            if buf.len() + chunk.len() > max {
                return Err(BodyRefusal::TooBig);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyRefusal::Slow))
}

/// Whether a push request carries the hook's token (always, for a hook without one).
fn authorized(hook: &Hook, headers: &HeaderMap) -> bool {
    let Some(secret) = &hook.secret else {
        return true;
    };
    let Some(token) = header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compared through their HMACs, in constant time: how much of a guess matched
    // never shows in the time it takes to refuse it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(token.trim().as_bytes());
    let Ok(mut expected) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    expected.update(secret);
    expected.verify_slice(&mac.finalize().into_bytes()).is_ok()
}

async fn push(
    State(endpoint): State<Arc<Endpoint>>,
    Path(name): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    let Some(served) = endpoint.hooks.get(&name) else {
        return plain(StatusCode::NOT_FOUND, format!("no hook named {name:?}"));
    };
    let hook = &served.hook;
    if hook.kind != HookKind::Push {
        return refuse(
            hook,
            &name,
            StatusCode::NOT_FOUND,
            format!("{name:?} takes webhooks at /hooks/{name}, not pushed messages"),
        );
    }
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        return method_not_allowed(hook, &name, "GET, POST");
    }
    if !authorized(hook, request.headers()) {
        return refuse(
            hook,
            &name,
            StatusCode::UNAUTHORIZED,
            "wrong or missing token (Authorization: Bearer TOKEN)",
        );
    }
    let max = endpoint.limits.max_message_bytes;
    if method == Method::POST {
        let (parts, body) = request.into_parts();
        let body = match read_body(&parts.headers, body, endpoint.limits.max_body_bytes).await {
            Ok(body) => body,
            Err(refusal) => return refusal.answer(hook, &name, endpoint.limits.max_body_bytes),
        };
        let delivered = push_lines(&hook.delivery, &body, max);
        return plain(StatusCode::OK, format!("{delivered} messages"));
    }
    match upgrade {
        Ok(upgrade) => {
            let endpoint = Arc::clone(&endpoint);
            upgrade
                .max_message_size(max)
                .max_frame_size(max)
                .on_upgrade(move |socket| async move {
                    if let Some(served) = endpoint.hooks.get(&name) {
                        receive(socket, served, &name, max).await;
                    }
                })
        }
        Err(rejection) => refuse(
            hook,
            &name,
            rejection.status(),
            format!("GET /push/{name} is a websocket: {}", rejection.body_text()),
        ),
    }
}

/// An NDJSON body's lines, each one message; returns how many were handed on.
fn push_lines(delivery: &Delivery, body: &[u8], max: usize) -> usize {
    let mut delivered = 0;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > max {
            Stats::add(&delivery.stats.oversized, 1);
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(text) => {
                delivery.message(&Message::text(text));
                delivered += 1;
            }
            Err(_) => delivery.malformed(),
        }
    }
    delivered
}

/// One push client's messages, until it goes.
async fn receive(mut socket: WebSocket, served: &Served, name: &str, max: usize) {
    let out = &served.hook.delivery;
    Stats::add(&out.stats.connects, 1);
    served.clients.fetch_add(1, Relaxed);
    out.stats.connected.store(true, Relaxed);
    tracing::info!("hook {name:?}: a push client connected");
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let reason = loop {
        let next = tokio::select! {
            next = socket.recv() => next,
            _ = ping.tick() => {
                if socket.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    break "the connection was lost".to_owned();
                }
                continue;
            }
        };
        match next {
            None | Some(Ok(WsMessage::Close(_))) => {
                break "the client closed the connection".to_owned()
            }
            Some(Ok(WsMessage::Text(text))) => out.message(&Message::text(text.as_str())),
            Some(Ok(WsMessage::Binary(_))) => out.malformed(),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Err(e)) => {
                let e = e.to_string();
                // axum wraps its own tungstenite's errors, whose types carillon cannot
                // name: they are told apart by their messages, which the tests pin.
                let (code, why) = if e.contains("Space limit exceeded") {
                    Stats::add(&out.stats.oversized, 1);
                    (close_code::SIZE, format!("message over {max} bytes"))
                } else if e.contains("UTF-8") {
                    out.malformed();
                    (close_code::INVALID, "text frame not UTF-8".to_owned())
                } else {
                    break format!("connection lost: {e}");
                };
                let close = CloseFrame {
                    code,
                    reason: why.as_str().into(),
                };
                // The client may be gone already; there is nothing else to tell it.
                let _ = socket.send(WsMessage::Close(Some(close))).await;
                break format!("closed it: {why}");
            }
        }
    };
    Stats::add(&out.stats.disconnects, 1);
    if served.clients.fetch_sub(1, Relaxed) == 1 {
        out.stats.connected.store(false, Relaxed);
    }
    tracing::info!("hook {name:?}: a push client left ({reason})");
}

/// A listener that serves at most `slots` connections at once.
struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Bounded {
    fn new(listener: TcpListener, slots: usize) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(slots)),
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        // A slot first: until one is free, new connections wait in the backlog.
        let slot = match Arc::clone(&self.slots).acquire_owned().await {
            Ok(slot) => slot,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (
            Held {
                stream,
                _slot: slot,
                idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A served connection: it holds its slot until dropped, and fails its read once
/// nothing has come in for `IDLE_TIMEOUT`.
struct Held {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Pin<Box<Sleep>>,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                Poll::Ready(result)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nothing received for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_payload_is_percent_decoded() {
        let body = b"other=1&payload=%7B%22a%22%3A+%22b%25c%22%7D";
        assert_eq!(form_payload(body).as_deref(), Some("{\"a\": \"b%c\"}"));
        assert_eq!(form_payload(b"payload=50%"), Some("50%".to_owned()));
        assert_eq!(form_payload(b"nothing=here"), None);
        assert_eq!(form_payload(b"payload=%FF"), None, "not UTF-8");
    }
}
