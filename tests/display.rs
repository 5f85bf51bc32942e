//! The display's server, through the real binary playing on the real device path: the
//! page's feed gets each note when it is heard (checked against the recorded audio),
//! and the controls act on carillon's sound, from the page's own origin only.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::{
    free_port, onsets, play_with_display, rms, spawn_carillon, wait_for_port, wikimon_edit,
    DeviceTap, JackServer, TempDir,
};

/// A replay of additions at the given times, titles "Note N", small and large in
/// turn: each note at another pitch than the one before, still ringing, so that its
/// onset stands out of it.
fn replay_file(path: &Path, times: &[f64]) {
    let lines: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let size = if i % 2 == 0 { 25 } else { 4000 };
            let mut v: serde_json::Value =
                serde_json::from_str(&wikimon_edit(&format!("Note {i}"), size, "Main"))
                    .expect("json");
            v["_t"] = serde_json::json!(t);
            v.to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write a replay file");
}

/// POST a control request with this Origin header; the status code.
fn control(port: u16, origin: &str, body: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/control"))
        .header("Origin", origin)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .expect("the display answers")
        .status()
        .as_u16()
}

#[test]
fn notes_reach_the_page_when_heard_and_the_controls_act_on_the_sound() {
    let dir = TempDir::new("display-feed");
    let replay = dir.path().join("notes.jsonl");
    // Nine notes 600 ms apart: the first three heard, the next three muted from the
    // page, the last three heard again.
    let times: Vec<f64> = (0..9).map(|i| 1.0 + 0.6 * i as f64).collect();
    replay_file(&replay, &times);
    let port = free_port();
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let source = format!("replay:{}", replay.display());
    let running = play_with_display(
        &["--source", &source],
        port,
        "8",
        tap.env(),
        Duration::from_secs(10),
    );
    let origin = format!("http://127.0.0.1:{port}");

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (hello, notes) = runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/feed"))
            .await
            .expect("the display's feed accepts a websocket");
        let mut hello = None;
        let mut notes: Vec<(Instant, serde_json::Value)> = Vec::new();
        let mut requests = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
        while notes.len() < 9 {
            let frame = tokio::time::timeout_at(deadline, ws.next()).await;
            let Ok(Some(Ok(frame))) = frame else { break };
            let Ok(text) = frame.into_text() else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(&text).expect("frames are JSON");
            match value["type"].as_str() {
                Some("hello") => hello = Some(value),
                Some("note") => {
                    notes.push((Instant::now(), value));
                    // Mute after the third note is heard; unmute 300 ms after the sixth,
                    // so that the sixth is struck muted.
                    let body = match notes.len() {
                        3 => Some(r#"{"muted": true}"#),
                        6 => Some(r#"{"muted": false}"#),
                        _ => None,
                    };
                    if let Some(body) = body {
                        let origin = origin.clone();
                        let wait = if notes.len() == 6 { 300 } else { 0 };
                        // Not awaited here: the next frames are read meanwhile.
                        requests.push(tokio::task::spawn_blocking(move || {
                            std::thread::sleep(Duration::from_millis(wait));
                            (body, control(port, &origin, body))
                        }));
                    }
                }
                _ => {}
            }
        }
        for request in requests {
            let (body, code) = request.await.expect("the request ran");
            assert_eq!(code, 204, "{body} from the page's origin");
        }
        (hello, notes)
    });
    // Refused: another origin, no origin, a bad value.
    assert_eq!(
        control(port, "http://evil.example", r#"{"muted": true}"#),
        403
    );
    assert_eq!(control(port, "", r#"{"muted": true}"#), 403);
    assert_eq!(control(port, &origin, r#"{"volume": 2}"#), 400);
    let out = running.wait(Duration::from_secs(30));
    out.assert_success();

    let hello = hello.expect("a hello frame first");
    assert_eq!(hello["controls"], true);
    assert_eq!(hello["sources"][0]["name"], source.as_str());
    assert_eq!(
        notes.len(),
        9,
        "one note frame per note played: {}",
        out.stderr
    );
    assert_eq!(out.summary().get("notes"), 9);
    for (i, (_, note)) in notes.iter().enumerate() {
        assert_eq!(note["title"], format!("Note {i}"));
        assert_eq!(note["kind"], "addition");
        assert_eq!(note["instrument"], "celesta");
    }

    // Sound and picture: each frame came when its note was heard. Align the recording
    // on the first note's onset; every other heard note's onset is where its frame
    // came, to a few milliseconds.
    let wav = tap.read();
    let sr = f64::from(wav.sample_rate);
    let found: Vec<f64> = onsets(&wav.mono(), wav.sample_rate)
        .into_iter()
        .map(|i| i as f64 / sr)
        .collect();
    // Align the recording on the first onset, the first note's. Every note heard has
    // an onset where its frame came, to a few milliseconds; the muted ones have none.
    let first = *found.first().expect("the first note is heard");
    let t0 = notes[0].0;
    for (i, (at, _)) in notes.iter().enumerate() {
        let frame_at = at.duration_since(t0).as_secs_f64();
        let nearest = found
            .iter()
            .map(|t| t - first - frame_at)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(f64::INFINITY);
        if (3..6).contains(&i) {
            assert!(
                nearest.abs() > 0.1,
                "note {i} was muted, yet heard {nearest:+.3} s from its frame: onsets {found:?}"
            );
        } else {
            assert!(
                nearest.abs() < 0.03,
                "note {i}: heard {nearest:+.3} s from its frame: onsets {found:?}"
            );
        }
    }
    // While muted, the output is silent (the glide aside).
    let quiet = |from: f64, to: f64| rms(&wav.mono()[(from * sr) as usize..(to * sr) as usize]);
    let muted_from = first + notes[3].0.duration_since(t0).as_secs_f64();
    let before = quiet(first, first + 0.5);
    let during = quiet(muted_from + 0.1, muted_from + 1.2);
    assert!(
        during < before * 0.01,
        "muted: rms {during} against {before} before"
    );
}

#[test]
fn a_note_reaches_the_page_when_it_is_heard_not_when_its_edit_arrives() {
    use support::{Step, WsServer};
    // Notes sound 400 ms after their edits arrive: the page must wait for the sound.
    let dir = TempDir::new("display-latency");
    let config = dir.path().join("late.toml");
    std::fs::write(&config, "[engine]\nlatency_ms = 400\n").expect("write the config");
    let server = WsServer::start(vec![
        Step::sleep_ms(2000),
        Step::text(wikimon_edit("Late bell", 300, "Main")),
        Step::sleep_ms(60_000),
    ]);
    let port = free_port();
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let url = server.url();
    let running = play_with_display(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--source",
            &url,
        ],
        port,
        "5",
        tap.env(),
        Duration::from_secs(10),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (connected, heard) = runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/feed"))
            .await
            .expect("the display's feed accepts a websocket");
        // The feed's server sends the edit 2 s after carillon connects to it.
        let connected = tokio::task::spawn_blocking(move || {
            let ok = server.wait_for_connections(1, Duration::from_secs(10));
            // The server goes back: dropped, it would hang up.
            (ok, Instant::now(), server)
        })
        .await
        .expect("waited");
        assert!(connected.0, "carillon connected to the feed");
        let _server = connected.2;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next()).await;
            let Ok(Some(Ok(frame))) = frame else {
                panic!("no note frame came")
            };
            let Ok(text) = frame.into_text() else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(&text).expect("frames are JSON");
            if value["type"] == "note" {
                return (connected.1, Instant::now());
            }
        }
    });
    running.wait(Duration::from_secs(30)).assert_success();
    // Sent 2 s after the connection (which the test saw up to ~10 ms late), heard 400 ms
    // later plus the device's own delay.
    let after_send = heard.duration_since(connected).as_secs_f64() - 2.0;
    assert!(
        (0.35..0.6).contains(&after_send),
        "the note frame came {after_send:.3} s after its edit was sent; it sounds 0.4 s after"
    );
}

/// Frames of the display's feed until `until` says stop or `timeout` passes; `act`
/// runs on each frame (to send controls as a page would).
async fn follow(
    port: u16,
    timeout: Duration,
    mut act: impl FnMut(&serde_json::Value),
    until: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/feed"))
        .await
        .expect("the display's feed accepts a websocket");
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !until(&frames) {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        let Ok(text) = frame.into_text() else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("frames are JSON");
        act(&value);
        frames.push(value);
    }
    frames
}

#[test]
fn a_source_turned_off_on_the_page_is_not_heard_and_every_page_sees_it() {
    let dir = TempDir::new("display-sources");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let times: Vec<f64> = (0..10).map(|i| 1.0 + 0.5 * i as f64).collect();
    replay_file(&a, &times);
    replay_file(&b, &times.iter().map(|t| t + 0.25).collect::<Vec<_>>());
    let port = free_port();
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let (sa, sb) = (
        format!("a=replay:{}", a.display()),
        format!("b=replay:{}", b.display()),
    );
    let running = play_with_display(
        &["--source", &sa, "--source", &sb],
        port,
        "7",
        tap.env(),
        Duration::from_secs(10),
    );
    let origin = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // One page turns b off after b's third note; another page, only watching, sees it.
    let watcher = runtime.spawn(follow(
        port,
        Duration::from_secs(10),
        |_| {},
        |frames| {
            frames
                .iter()
                .any(|f| f["type"] == "status" && f["sources"][1]["enabled"] == false)
        },
    ));
    let mut sent = false;
    let frames = runtime.block_on(follow(
        port,
        Duration::from_secs(10),
        |frame| {
            if !sent
                && frame["type"] == "note"
                && frame["title"] == "Note 2"
                && frame["source"] == "b"
            {
                sent = true;
                let origin = origin.clone();
                std::thread::spawn(move || {
                    assert_eq!(
                        control(port, &origin, r#"{"source": "b", "enabled": false}"#),
                        204
                    );
                });
            }
        },
        |frames| {
            frames
                .iter()
                .filter(|f| f["type"] == "note" && f["source"] == "a")
                .count()
                >= 10
        },
    ));
    let watched = runtime.block_on(watcher).expect("the watching page ran");
    let out = running.wait(Duration::from_secs(30));
    out.assert_success();
    assert!(
        watched
            .iter()
            .any(|f| f["type"] == "status" && f["sources"][1]["enabled"] == false),
        "the other page sees b turned off"
    );
    let notes = |source: &str| {
        frames
            .iter()
            .filter(|f| f["type"] == "note" && f["source"] == source)
            .count()
    };
    assert_eq!(notes("a"), 10, "a plays on");
    // b's notes up to the switch (3, perhaps 4 if one was already scheduled), none after.
    assert!(
        (3..=4).contains(&notes("b")),
        "b is heard {} times",
        notes("b")
    );
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("source b: "))
        .unwrap_or_else(|| panic!("no line for source b:\n{}", out.stderr));
    let b = support::Summary::parse(&format!("summary: {line}")).expect("key=value pairs");
    assert_eq!(b.get("events"), 10, "b is still read and scored");
    assert_eq!(b.get("notes") + b.get("silenced"), 10, "{:?}", b.fields);
    assert_eq!(b.get("notes") as usize, notes("b"));
}

#[test]
fn a_kiosk_without_controls_refuses_them_and_says_so() {
    let dir = TempDir::new("display-kiosk");
    let replay = dir.path().join("one.jsonl");
    replay_file(&replay, &[1.0]);
    let config = dir.path().join("kiosk.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!("[display]\nlisten = \"127.0.0.1:{port}\"\ncontrols = false\n"),
    )
    .expect("write the config");
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let source = format!("replay:{}", replay.display());
    let running = spawn_carillon(
        &[
            "play",
            "--config",
            config.to_str().expect("utf-8"),
            "--source",
            &source,
            "--duration",
            "3",
        ],
        tap.env(),
    );
    wait_for_port(port, Duration::from_secs(10), "the display");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let frames = runtime.block_on(follow(
        port,
        Duration::from_secs(5),
        |_| {},
        |f| !f.is_empty(),
    ));
    assert_eq!(
        frames.first().map(|f| f["controls"].clone()),
        Some(serde_json::json!(false))
    );
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(control(port, &origin, r#"{"muted": true}"#), 403);
    let out = running.wait(Duration::from_secs(30));
    out.assert_success();
    assert_eq!(out.summary().get("notes"), 1, "the sound was not muted");
}
