//! A scripted websocket server standing in for wikimon, on 127.0.0.1.
//!
//! Each accepted connection plays a script of [`Step`]s, then stays open and
//! idle (answering pings and the client's close) until the client leaves or
//! the server is dropped. It runs on its own thread with its own tokio
//! runtime, so plain `#[test]` functions can use it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::server::ServerThread;

/// One thing the server does on a connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// A text frame (normally one JSON message).
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A text frame whose payload is these bytes as they are, valid UTF-8 or
    /// not (a well-behaved server never sends invalid UTF-8 as text).
    RawText(Vec<u8>),
    /// Wait, still answering the client's pings and noticing if it leaves.
    Sleep(Duration),
    /// Start the closing handshake (close frame, code 1000), wait up to 2 s
    /// for the client's reply, then drop the connection.
    Close,
    /// Drop the TCP connection at once, without a close frame.
    Drop,
    /// Text frames at `rate` per second for `seconds`, cycling through `frames`, on
    /// an absolute schedule (a slow write does not lower the average rate).
    Flood {
        frames: Arc<Vec<String>>,
        rate: f64,
        seconds: f64,
    },
    /// These bytes written as they are on the socket (say, half a frame), then
    /// silence until the client leaves.
    Stall(Vec<u8>),
}

impl Step {
    pub fn text(text: impl Into<String>) -> Step {
        Step::Text(text.into())
    }

    pub fn sleep_ms(ms: u64) -> Step {
        Step::Sleep(Duration::from_millis(ms))
    }
}

type ScriptFn = dyn Fn(usize) -> Vec<Step> + Send + Sync;

#[derive(Default)]
struct Shared {
    /// Websocket handshakes completed.
    connections: AtomicUsize,
    /// Connections that have ended, whoever ended them.
    ended: AtomicUsize,
    /// Data frames written and flushed to the socket.
    frames_sent: AtomicUsize,
    /// What happened, in order, for failure messages.
    log: Mutex<Vec<String>>,
}

impl Shared {
    fn note(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }
}

/// The running server; stopped (its connections dropped) when dropped.
pub struct WsServer {
    shared: Arc<Shared>,
    server: ServerThread,
}

impl WsServer {
    /// Every connection plays `script`.
    pub fn start(script: Vec<Step>) -> WsServer {
        WsServer::start_with(move |_| script.clone())
    }

    /// Connection `i` (0 for the first) plays `scripts[i]`; connections beyond
    /// the list play nothing and stay idle.
    pub fn start_per_connection(scripts: Vec<Vec<Step>>) -> WsServer {
        WsServer::start_with(move |i| scripts.get(i).cloned().unwrap_or_default())
    }

    /// Connection `i` (0 for the first) plays `script_for(i)`.
    pub fn start_with(script_for: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> WsServer {
        WsServer::start_at(0, script_for)
    }

    /// Like [`WsServer::start_with`], on a given port of 127.0.0.1 (0: any free one).
    pub fn start_at(
        port: u16,
        script_for: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> WsServer {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let script_for: Arc<ScriptFn> = Arc::new(script_for);
        let server = ServerThread::start(port, "ws-server", move |listener, stop| async move {
            tokio::select! {
                _ = stop => {}
                _ = accept_loop(listener, thread_shared, script_for) => {}
            }
            // The runtime, dropped when this returns, cancels every connection task.
        });
        WsServer { shared, server }
    }

    /// `ws://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("ws://{}/", self.server.addr())
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// How many websocket connections were accepted (handshake completed).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many accepted connections have ended, by either side.
    pub fn ended_connections(&self) -> usize {
        self.shared.ended.load(Ordering::SeqCst)
    }

    /// How many text and binary frames were written to clients.
    pub fn frames_sent(&self) -> usize {
        self.shared.frames_sent.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` connections were accepted; false on timeout.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.connections() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// What the server did and saw, one line per event, for failure messages.
    pub fn log(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, script_for: Arc<ScriptFn>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                shared.note(format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(serve(
            tcp,
            peer,
            Arc::clone(&shared),
            Arc::clone(&script_for),
        ));
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, script_for: Arc<ScriptFn>) {
    let mut ws = match tokio_tungstenite::accept_async(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            shared.note(format!("handshake with {peer} failed: {e}"));
            return;
        }
    };
    let index = shared.connections.fetch_add(1, Ordering::SeqCst);
    shared.note(format!("connection {index} from {peer}"));
    let outcome = play(&mut ws, &script_for(index), &shared).await;
    let outcome = match outcome {
        Ended::ScriptDone => idle(&mut ws, None).await,
        other => other,
    };
    shared.note(format!("connection {index} ended: {outcome:?}"));
    shared.ended.fetch_add(1, Ordering::SeqCst);
}

#[derive(Debug)]
enum Ended {
    ScriptDone,
    SleepDone,
    ServerClosed,
    ServerDropped,
    ClientLeft,
    Error(String),
}

async fn play(ws: &mut WebSocketStream<TcpStream>, script: &[Step], shared: &Shared) -> Ended {
    for step in script {
        let message = match step {
            Step::Text(text) => Message::text(text.as_str()),
            Step::Binary(bytes) => Message::binary(bytes.clone()),
            Step::RawText(bytes) => Message::Frame(Frame::message(
                bytes.clone(),
                OpCode::Data(Data::Text),
                true,
            )),
            Step::Sleep(duration) => match idle(ws, Some(*duration)).await {
                Ended::SleepDone => continue,
                other => return other,
            },
            Step::Close => {
                if let Err(e) = ws.close(None).await {
                    return Ended::Error(format!("sending close: {e}"));
                }
                // Read the client's close reply so the handshake completes.
                let _ = idle(ws, Some(Duration::from_secs(2))).await;
                return Ended::ServerClosed;
            }
            Step::Drop => return Ended::ServerDropped,
            Step::Flood {
                frames,
                rate,
                seconds,
            } => match flood(ws, frames, *rate, *seconds, shared).await {
                Ended::SleepDone => continue,
                other => return other,
            },
            Step::Stall(bytes) => {
                use tokio::io::AsyncWriteExt;
                if let Err(e) = ws.get_mut().write_all(bytes).await {
                    return Ended::Error(format!("writing raw bytes: {e}"));
                }
                return idle(ws, None).await;
            }
        };
        if let Err(e) = ws.send(message).await {
            return Ended::Error(format!("sending {}: {e}", describe(step)));
        }
        shared.frames_sent.fetch_add(1, Ordering::SeqCst);
    }
    Ended::ScriptDone
}

/// Sends `frames` round and round at `rate` per second for `seconds`: every 5 ms,
/// every frame now due, flushed together.
async fn flood(
    ws: &mut WebSocketStream<TcpStream>,
    frames: &[String],
    rate: f64,
    seconds: f64,
    shared: &Shared,
) -> Ended {
    let start = tokio::time::Instant::now();
    let total = (rate * seconds) as usize;
    let mut sent = 0usize;
    let mut counted = 0usize;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due {
            let text = &frames[sent % frames.len()];
            if let Err(e) = ws.feed(Message::text(text.as_str())).await {
                return Ended::Error(format!("flooding: {e}"));
            }
            sent += 1;
        }
        if let Err(e) = ws.flush().await {
            return Ended::Error(format!("flooding: {e}"));
        }
        shared
            .frames_sent
            .fetch_add(sent - counted, Ordering::SeqCst);
        counted = sent;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ended::SleepDone
}

/// Reads (and discards) what the client sends, which also answers its pings
/// and close, for `duration` or, with `None`, until the client leaves.
async fn idle(ws: &mut WebSocketStream<TcpStream>, duration: Option<Duration>) -> Ended {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let incoming = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(incoming) => incoming,
                Err(_) => return Ended::SleepDone,
            },
            None => ws.next().await,
        };
        match incoming {
            // After the client's close frame, the next read sends the reply
            // and reports the end of the stream.
            Some(Ok(_)) => {}
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return Ended::ClientLeft
            }
            Some(Err(e)) => return Ended::Error(format!("reading: {e}")),
        }
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Text(t) => format!("text frame of {} bytes", t.len()),
        Step::Binary(b) => format!("binary frame of {} bytes", b.len()),
        Step::RawText(b) => format!("raw text frame of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}
