//! The websocket client: connects to a feed and keeps connecting, forever.
//!
//! Dropped connections are retried with exponential backoff and jitter (reset once a
//! connection has stayed up long enough to be called healthy). Frames that are not
//! text, or that the source's format cannot read, are counted and skipped. The frame limit is a memory
//! limit: the protocol layer refuses a frame (or message) over it from its header,
//! before reading its payload, so a hostile sender costs carillon nothing; carillon
//! then counts it as oversized, hangs up and reconnects, as it must, since the rest of
//! that frame is still on its way. A message arrives when the kernel received its last
//! bytes (see `stamped`), not when this task got round to reading it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::uri_mode;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::stream::Mode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::reconnect::Reconnect;
use super::stamped::{Stamp, StampedTcp};
use crate::config::SourceConfig;
use crate::ingest::format::Message as Raw;
use crate::ingest::Delivery;
use crate::stats::Stats;

/// Why a connection ended.
enum Ended {
    Closed,
    Error(String),
    Silent,
}

/// Connect to `url` (sending `bearer` as `Authorization: Bearer …` if given) and keep
/// connecting, forever.
pub async fn run(url: &str, bearer: Option<String>, config: &SourceConfig, out: Delivery) {
    let mut reconnect = Reconnect::new(url, config);
    // The longest wait for a connection (TCP, TLS and the websocket handshake) to open,
    // and for a message (or a ping) on an open one: a server that accepts and never
    // answers, or stalls in the middle of a frame, is dropped and tried again.
    let connect_timeout = Duration::from_secs(config.connect_timeout_s);
    let silence_timeout = Duration::from_secs(config.silence_timeout_s);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    loop {
        let request = match request(url, bearer.as_deref()) {
            Ok(request) => request,
            Err(e) => {
                reconnect
                    .down(None, &format!("cannot connect: {e}"), &out)
                    .await;
                continue;
            }
        };
        let attempt = open(request, ws_config);
        let Some((stream, stamp)) = reconnect.connect(connect_timeout, attempt, &out).await else {
            continue;
        };
        let connected_at = reconnect.up(&out);
        let ended = read(stream, &stamp, silence_timeout, &out).await;
        let reason = match ended {
            Ended::Closed => "the server closed the connection".to_owned(),
            Ended::Error(e) => format!("connection lost: {e}"),
            Ended::Silent => format!("no message for {} s", silence_timeout.as_secs()),
        };
        reconnect.down(Some(connected_at), &reason, &out).await;
    }
}

/// Connect over TCP (the connection stamping what it receives, see [`stamped`]), then
/// TLS for `wss://`, then the websocket handshake.
///
/// [`stamped`]: super::stamped
async fn open(
    request: Request,
    ws_config: WebSocketConfig,
) -> Result<(WebSocketStream<MaybeTlsStream<StampedTcp>>, Arc<Stamp>), WsError> {
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or(WsError::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // The scheme's port, by the protocol layer's own reading of the scheme (which
    // refuses any but ws and wss before a connection is tried).
    let port = match uri.port_u16() {
        Some(port) => port,
        None => match uri_mode(uri)? {
            Mode::Plain => 80,
            Mode::Tls => 443,
        },
    };
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    // Each message goes out as soon as it is written (pongs, the closing handshake).
    tcp.set_nodelay(true)?;
    let (tcp, stamp) = StampedTcp::new(tcp);
    let (stream, _response) =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(ws_config), None)
            .await?;
    Ok((stream, stamp))
}

/// The handshake request: the URL, and the bearer token in its header (not in the URL,
/// which the log names).
fn request(url: &str, bearer: Option<&str>) -> Result<Request, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(token) = bearer {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the access token cannot be sent in a header".to_owned())?;
        request.headers_mut().insert("Authorization", value);
    }
    Ok(request)
}

/// Read messages until the connection ends, each arriving when the kernel received
/// the last of its bytes.
async fn read<S>(mut stream: S, stamp: &Stamp, silence_timeout: Duration, out: &Delivery) -> Ended
where
    S: StreamExt<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let next = match tokio::time::timeout(silence_timeout, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Ended::Silent,
        };
        match next {
            None => return Ended::Closed,
            Some(Ok(Message::Text(text))) => {
                let at = stamp.instant().unwrap_or_else(Instant::now);
                out.message_at(&Raw::text(text.as_str()), at);
            }
            Some(Ok(Message::Binary(_))) => out.malformed(),
            Some(Ok(Message::Close(_))) => return Ended::Closed,
            // Pings are answered by the protocol layer as the stream is read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(WsError::Capacity(e))) => {
                Stats::add(&out.stats.oversized, 1);
                return Ended::Error(format!("{e}: hung up rather than read it"));
            }
            Some(Err(WsError::Utf8(e))) => {
                out.malformed();
                return Ended::Error(format!("text frame was not UTF-8: {e}"));
            }
            Some(Err(e)) => return Ended::Error(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request;

    #[test]
    fn a_token_goes_in_the_authorization_header_not_the_url() {
        let with = request(
            "wss://example.org/api/v1/streaming?stream=public",
            Some("t0k"),
        )
        .expect("a request");
        assert_eq!(
            with.headers().get("Authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer t0k"[..])
        );
        assert!(!with.uri().to_string().contains("t0k"));
        let without = request("ws://127.0.0.1:9/", None).expect("a request");
        assert!(without.headers().get("Authorization").is_none());
        assert!(request("ws://127.0.0.1:9/", Some("bad\ntoken")).is_err());
    }
}
