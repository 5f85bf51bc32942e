//! The local ingest endpoint over real HTTP on 127.0.0.1: forge webhooks signed (or not)
//! as GitHub, Gitea and Forgejo sign them, pushed websocket frames and NDJSON, and the
//! status codes and counters of everything it refuses.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use carillon::ingest::record::Recorder;
use carillon::ingest::transport::endpoint::{self, Hook, HookKind, Limits};
use carillon::ingest::{Arrival, Delivery, Forge, Format};
use carillon::stats::Stats;
use crossbeam_channel::Receiver;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const WIKIMON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/wikimon/wikiticker-en-0600-1h.jsonl"
);
const GITHUB_PUSH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/github/octokit-webhook-examples/push_payload.json"
);
const SECRET: &[u8] = b"It's a Secret to Everybody";

/// Recorded wikimon messages: edits and new accounts, one JSON object each.
fn wikimon_lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(WIKIMON)
        .unwrap_or_else(|e| panic!("the tests read the shared corpus file {WIKIMON}: {e}"));
    let lines: Vec<String> = text.lines().take(n).map(str::to_owned).collect();
    assert_eq!(lines.len(), n, "{WIKIMON} is shorter than {n} lines");
    lines
}

fn title_of(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
    value["page_title"]
        .as_str()
        .expect("corpus line has a page_title")
        .to_owned()
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One hook's end of the endpoint: what it delivered and its counters.
struct Tap {
    rx: Receiver<Arrival>,
    stats: Arc<Stats>,
}

impl Tap {
    /// The next delivered event's title, waiting up to 5 s.
    async fn next_title(&self) -> String {
        for _ in 0..500 {
            if let Ok(arrival) = self.rx.try_recv() {
                return arrival.event.title;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nothing delivered within 5 s ({})", self.stats.summary());
    }

    /// Asserts that nothing more is delivered, even a little later.
    async fn assert_no_more(&self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(arrival) = self.rx.try_recv() {
            panic!("delivered {:?}", arrival.event.title);
        }
    }

    /// Asserts that nothing was ever delivered.
    async fn assert_nothing_delivered(&self) {
        self.assert_no_more().await;
        assert_eq!(
            Stats::get(&self.stats.events),
            0,
            "{}",
            self.stats.summary()
        );
    }

    fn refused(&self) -> u64 {
        Stats::get(&self.stats.refused)
    }
}

struct HookSpec {
    name: &'static str,
    kind: HookKind,
    secret: Option<&'static [u8]>,
    recorder: Option<Arc<Recorder>>,
}

fn hook(name: &'static str, kind: HookKind, secret: Option<&'static [u8]>) -> HookSpec {
    HookSpec {
        name,
        kind,
        secret,
        recorder: None,
    }
}

/// The endpoint serving these hooks on 127.0.0.1; its base URL and each hook's tap.
async fn start(specs: Vec<HookSpec>, limits: Limits) -> (String, Vec<Tap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let mut hooks = Vec::new();
    let mut taps = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let stats = Arc::new(Stats::default());
        let mut delivery = Delivery::new(tx, Arc::clone(&stats), i as u16, Format::Wikimon);
        delivery.recorder = spec.recorder;
        hooks.push((
            spec.name.to_owned(),
            Hook {
                delivery,
                kind: spec.kind,
                secret: spec.secret.map(<[u8]>::to_vec),
            },
        ));
        taps.push(Tap { rx, stats });
    }
    tokio::spawn(async move {
        if let Err(e) = endpoint::serve(listener, hooks, limits).await {
            panic!("the endpoint stopped: {e}");
        }
    });
    (format!("http://{addr}"), taps)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut request = client()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a text body"))
}

/// A recorder writing to a fresh file, and the file.
fn recorder(name: &str) -> (Arc<Recorder>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join("carillon-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("endpoint-{name}-{}.jsonl", std::process::id()));
    let recorder = Arc::new(Recorder::create(&path, &Format::Wikimon, name).expect("recorder"));
    (recorder, path)
}

/// The messages a recorder saved: (event name, data) each.
fn recorded(recorder: &Recorder, path: &std::path::Path) -> Vec<(Option<String>, String)> {
    recorder.finish().expect("flush");
    let text = std::fs::read_to_string(path).expect("the recording");
    let _ = std::fs::remove_file(path);
    text.lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("recorded line is JSON");
            let event = v["_event"].as_str().map(str::to_owned);
            (event, v["_data"].as_str().expect("_data").to_owned())
        })
        .collect()
}

struct Signed {
    hook: usize,
    signature: &'static str,
    event: &'static str,
}

#[tokio::test]
async fn github_gitea_and_forgejo_signatures_are_accepted_and_delivered_with_their_event() {
    let names = ["gh", "tea", "fj"];
    let forges = [Forge::GitHub, Forge::Gitea, Forge::Forgejo];
    let recorders: Vec<_> = names.iter().map(|n| recorder(n)).collect();
    let specs = names
        .iter()
        .zip(forges)
        .zip(&recorders)
        .map(|((name, forge), (recorder, _))| {
            let mut spec = hook(name, HookKind::Webhook(forge), Some(SECRET));
            spec.recorder = Some(Arc::clone(recorder));
            spec
        })
        .collect();
    let (base, taps) = start(specs, Limits::default()).await;
    let cases = [
        Signed {
            hook: 0,
            signature: "x-hub-signature-256",
            event: "x-github-event",
        },
        Signed {
            hook: 1,
            signature: "x-gitea-signature",
            event: "x-gitea-event",
        },
        Signed {
            hook: 2,
            signature: "x-forgejo-signature",
            event: "x-forgejo-event",
        },
        // Forgejo also sends Gitea's headers; either alone is enough.
        Signed {
            hook: 2,
            signature: "x-gitea-signature",
            event: "x-gitea-event",
        },
    ];
    let lines = wikimon_lines(cases.len());
    for (case, body) in cases.iter().zip(&lines) {
        let mut signature = sign(SECRET, body.as_bytes());
        if case.hook == 0 {
            signature.insert_str(0, "sha256=");
        }
        let event = format!("push-{}", case.signature);
        let (status, text) = post(
            &format!("{base}/hooks/{}", names[case.hook]),
            &[(case.signature, &signature), (case.event, &event)],
            "application/json",
            body.to_owned(),
        )
        .await;
        assert_eq!((status, text.as_str()), (200, "ok\n"), "{}", case.signature);
        assert_eq!(taps[case.hook].next_title().await, title_of(body));
    }
    for (i, (recorder, path)) in recorders.iter().enumerate() {
        let want: Vec<_> = cases
            .iter()
            .zip(&lines)
            .filter(|(case, _)| case.hook == i)
            .map(|(case, body)| (Some(format!("push-{}", case.signature)), body.clone()))
            .collect();
        assert_eq!(recorded(recorder, path), want, "{}", names[i]);
        assert_eq!(taps[i].refused(), 0, "{}", taps[i].stats.summary());
    }
}

#[tokio::test]
async fn wrong_missing_or_mangled_signatures_are_refused_and_nothing_is_delivered() {
    let (base, taps) = start(
        vec![
            hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET)),
            hook("tea", HookKind::Webhook(Forge::Gitea), Some(SECRET)),
        ],
        Limits::default(),
    )
    .await;
    let lines = wikimon_lines(2);
    let body = lines[0].as_str();
    let right = sign(SECRET, body.as_bytes());
    let wrong_key = format!("sha256={}", sign(b"not the secret", body.as_bytes()));
    let other_body = format!("sha256={}", sign(SECRET, lines[1].as_bytes()));
    let odd_hex = format!("sha256={}", &right[..63]);
    let half = format!("sha256={}", &right[..32]);
    let unprefixed = right.clone();
    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-hub-signature-256", &wrong_key)],
        vec![],
        vec![("x-hub-signature-256", &other_body)],
        vec![("x-hub-signature-256", &odd_hex)],
        vec![("x-hub-signature-256", &half)],
        vec![("x-hub-signature-256", &unprefixed)],
        vec![("x-hub-signature-256", "sha256=")],
        // Gitea's header on a GitHub hook.
        vec![("x-gitea-signature", &right)],
    ];
    let n = attempts.len() as u64;
    for headers in attempts {
        let mut headers = headers.clone();
        headers.push(("x-github-event", "push"));
        let (status, text) = post(
            &format!("{base}/hooks/gh"),
            &headers,
            "application/json",
            body.to_owned(),
        )
        .await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(text.contains("signature"), "{text:?}");
    }
    assert_eq!(taps[0].refused(), n);
    taps[0].assert_nothing_delivered().await;

    // GitHub's header on a Gitea hook, and a Gitea signature of another body.
    let github_style = format!("sha256={right}");
    let other = sign(SECRET, lines[1].as_bytes());
    for signature in [
        ("x-hub-signature-256", github_style.as_str()),
        ("x-gitea-signature", &other),
    ] {
        let (status, _) = post(
            &format!("{base}/hooks/tea"),
            &[signature],
            "application/json",
            body.to_owned(),
        )
        .await;
        assert_eq!(status, 401, "{signature:?}");
    }
    assert_eq!(taps[1].refused(), 2);
    taps[1].assert_nothing_delivered().await;
}

#[tokio::test]
async fn a_real_github_payload_reaches_the_format_with_its_event_name_as_json_or_as_a_form() {
    let payload = std::fs::read_to_string(GITHUB_PUSH)
        .unwrap_or_else(|e| panic!("the test posts the shared corpus file {GITHUB_PUSH}: {e}"));
    let (recorder, path) = recorder("github-payload");
    let mut spec = hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET));
    spec.recorder = Some(Arc::clone(&recorder));
    let (base, taps) = start(vec![spec], Limits::default()).await;
    let url = format!("{base}/hooks/gh");

    let signature = format!("sha256={}", sign(SECRET, payload.as_bytes()));
    let (status, _) = post(
        &url,
        &[
            ("x-hub-signature-256", &signature),
            ("x-github-event", "push"),
        ],
        "application/json",
        payload.clone(),
    )
    .await;
    assert_eq!(status, 200);

    // GitHub's "application/x-www-form-urlencoded" content type: signed as sent.
    let mut form = String::from("payload=");
    for b in payload.bytes() {
        if b.is_ascii_alphanumeric() {
            form.push(b as char);
        } else {
            form.push_str(&format!("%{b:02X}"));
        }
    }
    let signature = format!("sha256={}", sign(SECRET, form.as_bytes()));
    let (status, _) = post(
        &url,
        &[
            ("x-hub-signature-256", &signature),
            ("x-github-event", "push"),
        ],
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(status, 200);

    let push = (Some("push".to_owned()), payload);
    assert_eq!(recorded(&recorder, &path), vec![push.clone(), push]);
    assert_eq!(taps[0].refused(), 0);
}

#[tokio::test]
async fn github_ping_is_answered_and_skipped_not_played() {
    let (base, taps) = start(
        vec![hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET))],
        Limits::default(),
    )
    .await;
    let body = r#"{"zen":"Design for failure.","hook_id":1}"#;
    let signature = format!("sha256={}", sign(SECRET, body.as_bytes()));
    let (status, _) = post(
        &format!("{base}/hooks/gh"),
        &[
            ("x-hub-signature-256", &signature),
            ("x-github-event", "ping"),
        ],
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(taps[0].stats.skipped().get("ping"), Some(&1));
    assert_eq!(Stats::get(&taps[0].stats.malformed), 0);
    taps[0].assert_nothing_delivered().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_declared_or_streamed() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let (base, taps) = start(
        vec![hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET))],
        limits,
    )
    .await;
    let url = format!("{base}/hooks/gh");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    let signature = format!("sha256={}", sign(SECRET, big.as_bytes()));
    let headers = [("x-hub-signature-256", signature.as_str())];
    let (status, text) = post(&url, &headers, "application/json", big.clone()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("65536 bytes"), "{text:?}");

    // Chunked, with no length declared: refused as the bytes arrive.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = post(&url, &headers, "application/json", streamed).await;
    assert_eq!(status, 413);

    assert_eq!(taps[0].refused(), 2);
    taps[0].assert_nothing_delivered().await;

    // Just under the limit is fine.
    let fits = wikimon_lines(1).remove(0);
    let signature = format!("sha256={}", sign(SECRET, fits.as_bytes()));
    let (status, _) = post(
        &url,
        &[("x-hub-signature-256", &signature)],
        "application/json",
        fits.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(taps[0].next_title().await, title_of(&fits));
}

#[tokio::test]
async fn wrong_paths_methods_content_types_and_bodies_get_a_4xx_with_a_reason() {
    let (base, taps) = start(
        vec![
            hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET)),
            hook("tool", HookKind::Push, None),
        ],
        Limits::default(),
    )
    .await;
    let http = client();
    let check = |status: u16, text: String, want: u16, says: &str| {
        assert_eq!(status, want, "{text:?}");
        assert!(text.contains(says), "{want}: {text:?} should say {says:?}");
    };

    let r = http
        .post(format!("{base}/hooks/nobody"))
        .body("{}")
        .send()
        .await
        .expect("answer");
    check(
        r.status().as_u16(),
        r.text().await.expect("text"),
        404,
        "no hook named \"nobody\"",
    );
    let r = http
        .get(format!("{base}/elsewhere"))
        .send()
        .await
        .expect("answer");
    check(
        r.status().as_u16(),
        r.text().await.expect("text"),
        404,
        "/hooks/NAME",
    );
    assert_eq!(taps[0].refused(), 0, "unknown hooks are nobody's to count");

    let r = http
        .get(format!("{base}/hooks/gh"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        r.headers().get("allow").map(|v| v.as_bytes()),
        Some(&b"POST"[..])
    );
    check(
        r.status().as_u16(),
        r.text().await.expect("text"),
        405,
        "POST",
    );

    let body = r#"{"a":1}"#;
    let signature = format!("sha256={}", sign(SECRET, body.as_bytes()));
    let sig = [("x-hub-signature-256", signature.as_str())];
    let (status, text) = post(&format!("{base}/hooks/gh"), &sig, "text/plain", body).await;
    check(status, text, 415, "application/json");
    // A webhook posted to a push hook.
    let (status, text) = post(
        &format!("{base}/hooks/tool"),
        &sig,
        "application/json",
        body,
    )
    .await;
    check(status, text, 404, "/push/tool");
    assert_eq!(taps[0].refused(), 2);
    assert_eq!(taps[1].refused(), 1);

    // Signed, but not JSON, or not UTF-8: malformed, not refused.
    for bad in [&b"{not json"[..], &b"{\"a\":\"\xff\"}"[..]] {
        let signature = format!("sha256={}", sign(SECRET, bad));
        let (status, text) = post(
            &format!("{base}/hooks/gh"),
            &[("x-hub-signature-256", &signature)],
            "application/json",
            bad.to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{text:?}");
        assert!(text.contains("JSON") || text.contains("UTF-8"), "{text:?}");
    }
    assert_eq!(Stats::get(&taps[0].stats.malformed), 2);
    assert_eq!(taps[0].refused(), 2);
    taps[0].assert_nothing_delivered().await;

    // A plain GET where a websocket is expected.
    let r = http
        .get(format!("{base}/push/tool"))
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    assert!(r.text().await.expect("text").contains("websocket"));
    assert_eq!(taps[1].refused(), 2);
}

async fn push_socket(
    base: &str,
    name: &str,
    token: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("{}/push/{name}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("header value");
        request.headers_mut().insert("authorization", value);
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn pushed_websocket_frames_are_delivered_in_order_and_junk_is_counted() {
    let (base, taps) = start(vec![hook("tool", HookKind::Push, None)], Limits::default()).await;
    let tap = &taps[0];
    let lines = wikimon_lines(60);
    let mut ws = push_socket(&base, "tool", None).await.expect("websocket");
    for (i, line) in lines.iter().enumerate() {
        if i == 30 {
            ws.send(Message::Binary(vec![0xff, 0, 1].into()))
                .await
                .expect("send");
        }
        ws.send(Message::text(line.clone())).await.expect("send");
    }
    for line in &lines {
        assert_eq!(tap.next_title().await, title_of(line));
    }
    assert_eq!(Stats::get(&tap.stats.malformed), 1, "the binary frame");
    assert_eq!(Stats::get(&tap.stats.connects), 1);
    assert!(tap.stats.connected.load(Relaxed));
    ws.close(None).await.expect("close");
    for _ in 0..100 {
        if Stats::get(&tap.stats.disconnects) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(Stats::get(&tap.stats.disconnects), 1);
    assert!(!tap.stats.connected.load(Relaxed));
}

#[tokio::test]
async fn a_pushed_message_over_the_limit_is_refused_with_close_1009() {
    let limits = Limits {
        max_message_bytes: 4096,
        ..Limits::default()
    };
    let (base, taps) = start(vec![hook("tool", HookKind::Push, None)], limits).await;
    let tap = &taps[0];
    let mut ws = push_socket(&base, "tool", None).await.expect("websocket");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    ws.send(Message::text(big)).await.expect("send");
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
        panic!("the connection ended without a close frame");
    })
    .await
    .expect("a close frame within 5 s");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Size));
    assert_eq!(Stats::get(&tap.stats.oversized), 1);
    assert_eq!(Stats::get(&tap.stats.malformed), 0);
    tap.assert_nothing_delivered().await;
}

#[tokio::test]
async fn an_ndjson_post_is_one_message_a_line() {
    let limits = Limits {
        max_message_bytes: 4096,
        ..Limits::default()
    };
    let (base, taps) = start(vec![hook("tool", HookKind::Push, None)], limits).await;
    let tap = &taps[0];
    let lines = wikimon_lines(10);
    let mut body = lines[..5].join("\n");
    body.push_str(&format!("\r\n\n{{\"pad\":\"{}\"}}\n", "x".repeat(5000)));
    body.push_str(&lines[5..].join("\r\n"));
    let (status, text) = post(
        &format!("{base}/push/tool"),
        &[],
        "application/x-ndjson",
        body,
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "10 messages\n"));
    for line in &lines {
        assert_eq!(tap.next_title().await, title_of(line));
    }
    assert_eq!(Stats::get(&tap.stats.oversized), 1);
    tap.assert_no_more().await;
}

#[tokio::test]
async fn a_push_hook_with_a_token_refuses_clients_without_it() {
    let (base, taps) = start(
        vec![hook("tool", HookKind::Push, Some(b"push-token"))],
        Limits::default(),
    )
    .await;
    let tap = &taps[0];
    assert!(push_socket(&base, "tool", None).await.is_err());
    assert!(push_socket(&base, "tool", Some("push-tokeN"))
        .await
        .is_err());
    let line = wikimon_lines(1).remove(0);
    let (status, _) = post(
        &format!("{base}/push/tool"),
        &[],
        "application/x-ndjson",
        line.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(tap.refused(), 3);
    tap.assert_nothing_delivered().await;

    let mut ws = push_socket(&base, "tool", Some("push-token"))
        .await
        .expect("websocket");
    ws.send(Message::text(line.clone())).await.expect("send");
    assert_eq!(tap.next_title().await, title_of(&line));
    assert_eq!(tap.refused(), 3);
}

#[tokio::test]
async fn a_hook_without_a_secret_is_served_only_on_loopback() {
    let hook_without_secret = |kind| {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let delivery = Delivery::new(tx, Arc::new(Stats::default()), 0, Format::Wikimon);
        vec![(
            "open".to_owned(),
            Hook {
                delivery,
                kind,
                secret: None,
            },
        )]
    };
    for kind in [HookKind::Webhook(Forge::Gitea), HookKind::Push] {
        let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
        let served = tokio::time::timeout(
            Duration::from_secs(2),
            endpoint::serve(listener, hook_without_secret(kind), Limits::default()),
        )
        .await
        .expect("refused at once, not served");
        let e = served.expect_err("a hook without a secret on 0.0.0.0");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("no secret"), "{e}");
    }
    // The same on loopback serves (and keeps serving).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let served = tokio::time::timeout(
        Duration::from_millis(300),
        endpoint::serve(
            listener,
            hook_without_secret(HookKind::Push),
            Limits::default(),
        ),
    )
    .await;
    assert!(served.is_err(), "still serving: {served:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (base, taps) = start(vec![hook("tool", HookKind::Push, None)], Limits::default()).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..endpoint::MAX_CONNECTIONS {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let line = wikimon_lines(1).remove(0);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let waited = quick
        .post(format!("{base}/push/tool"))
        .body(line.clone())
        .send()
        .await;
    assert!(waited.is_err(), "served beyond the cap: {waited:?}");
    drop(idle.pop());
    let (status, _) = post(
        &format!("{base}/push/tool"),
        &[],
        "application/x-ndjson",
        line.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(taps[0].next_title().await, title_of(&line));
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (base, taps) = start(
        vec![hook("gh", HookKind::Webhook(Forge::GitHub), Some(SECRET))],
        Limits::default(),
    )
    .await;
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /hooks/gh HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        10 << 20
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // Not a byte of the body follows: the answer can only come from the length.
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer))
        .await
        .expect("answered within 2 s, without waiting for the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(taps[0].refused(), 1);
}
