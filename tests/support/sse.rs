//! A scripted Server-Sent Events server standing in for Wikimedia EventStreams, on
//! 127.0.0.1.
//!
//! It serves one list of events, each with its id, as a feed with a history does:
//! a request carrying `Last-Event-ID` resumes after that event. What each connection
//! does is a script of [`Step`]s chosen by the connection's number (answer 503, send
//! the next few events, cut an event in half, send heartbeats, fall silent, write
//! raw bytes…); when its script ends the server closes the connection. HTTP/1.1 is
//! written by hand, the body ending with the connection, so that every byte on the
//! wire is the script's. It runs on the runtime it is started on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One thing the server does on a connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this status and an empty body, and close (must come first).
    Status(u16),
    /// Read the request and never answer (must come first).
    NoAnswer,
    /// The next `n` events (fewer if the list runs out).
    Events(usize),
    /// Every event left.
    Rest,
    /// The first half of the next event's bytes (it will be sent whole again by a
    /// connection that resumes).
    HalfEvent,
    /// A `:` comment line, as EventStreams sends to keep a quiet stream open.
    Heartbeat,
    /// Heartbeats every `every`, for `for_`.
    Heartbeats { every: Duration, for_: Duration },
    /// Nothing for this long.
    Sleep(Duration),
    /// Nothing until the client leaves (or 30 s).
    Silent,
    /// These bytes as they are.
    Raw(Vec<u8>),
}

/// How the events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `event:`/`id:`/`data:` lines ending in LF.
    Sse,
    /// The same, lines ending in CRLF, and each event's JSON cut over two `data:`
    /// lines (which a reader joins with LF: still the same JSON).
    SseCrlfTwoDataLines,
    /// One JSON text per line, no ids.
    Ndjson,
}

type ScriptFn = dyn Fn(usize) -> Vec<Step> + Send + Sync;

/// What one request asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub last_event_id: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
}

pub struct SseServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SseServer {
    /// Serve `events` (id, JSON text) on a fresh port of 127.0.0.1, each connection
    /// playing `script(connection number from 0)`.
    pub async fn start(
        events: Vec<(String, String)>,
        wire: Wire,
        script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> SseServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let events = Arc::new(events);
        let script: Arc<ScriptFn> = Arc::new(script);
        let state = shared.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((socket, _)) = listener.accept().await {
                let (events, script, state) = (events.clone(), script.clone(), state.clone());
                tokio::spawn(serve(socket, n, events, wire, script, state));
                n += 1;
            }
        });
        SseServer { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v2/stream/recentchange", self.addr)
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn serve(
    mut socket: TcpStream,
    n: usize,
    events: Arc<Vec<(String, String)>>,
    wire: Wire,
    script: Arc<ScriptFn>,
    shared: Arc<Shared>,
) {
    let _ = socket.set_nodelay(true);
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    // Resume after the event named, as EventStreams does from a Kafka offset.
    let mut next = match &request.last_event_id {
        Some(id) => events
            .iter()
            .position(|(i, _)| i == id)
            .map_or(0, |p| p + 1),
        None => 0,
    };
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(request);
    }
    let steps = script(n);
    match steps.first() {
        Some(Step::Status(code)) => {
            let head = format!(
                "HTTP/1.1 {code} Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = socket.write_all(head.as_bytes()).await;
            return;
        }
        Some(Step::NoAnswer) => {
            hold(&mut socket, Duration::from_secs(30)).await;
            return;
        }
        _ => {}
    }
    let kind = match wire {
        Wire::Ndjson => "application/x-ndjson",
        _ => "text/event-stream; charset=utf-8",
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for step in steps {
        let ok = match step {
            Step::Status(_) | Step::NoAnswer => true,
            Step::Events(k) => {
                let end = (next + k).min(events.len());
                let mut bytes = Vec::new();
                for (id, data) in &events[next..end] {
                    bytes.extend(encode(id, data, wire));
                }
                next = end;
                socket.write_all(&bytes).await.is_ok()
            }
            Step::Rest => {
                let mut bytes = Vec::new();
                for (id, data) in &events[next..] {
                    bytes.extend(encode(id, data, wire));
                }
                next = events.len();
                socket.write_all(&bytes).await.is_ok()
            }
            Step::HalfEvent => match events.get(next) {
                Some((id, data)) => {
                    let bytes = encode(id, data, wire);
                    socket.write_all(&bytes[..bytes.len() / 2]).await.is_ok()
                }
                None => true,
            },
            Step::Heartbeat => socket.write_all(b":\n").await.is_ok(),
            Step::Heartbeats { every, for_ } => {
                let start = tokio::time::Instant::now();
                let mut ok = true;
                while ok && start.elapsed() < for_ {
                    tokio::time::sleep(every).await;
                    ok = socket.write_all(b":\n").await.is_ok();
                }
                ok
            }
            Step::Sleep(d) => {
                tokio::time::sleep(d).await;
                true
            }
            Step::Silent => {
                hold(&mut socket, Duration::from_secs(30)).await;
                false
            }
            Step::Raw(bytes) => socket.write_all(&bytes).await.is_ok(),
        };
        if !ok {
            return;
        }
    }
    let _ = socket.shutdown().await;
}

/// One event as the wire carries it.
pub fn encode(id: &str, data: &str, wire: Wire) -> Vec<u8> {
    match wire {
        Wire::Sse => format!("event: message\nid: {id}\ndata: {data}\n\n").into_bytes(),
        Wire::SseCrlfTwoDataLines => {
            let cut = data.find(',').map_or(data.len(), |c| c + 1);
            let (a, b) = data.split_at(cut);
            format!("event: message\r\nid: {id}\r\ndata: {a}\r\ndata:{b}\r\n\r\n").into_bytes()
        }
        Wire::Ndjson => format!("{data}\n").into_bytes(),
    }
}

/// Keep the connection open, writing nothing, until the client leaves or `limit`.
async fn hold(socket: &mut TcpStream, limit: Duration) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = socket.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut request = Request::default();
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "last-event-id" => request.last_event_id = value,
            "accept" => request.accept = value,
            "user-agent" => request.user_agent = value,
            "authorization" => request.authorization = value,
            _ => {}
        }
    }
    Some(request)
}
