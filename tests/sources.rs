//! Several sources at once, and recording: the real binary mixing two recorded sources
//! into their own channels, and `record` → `render` giving the notes a live `play` of
//! the same feed played through the real device path.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{
    free_port, rms, run_carillon, wikimon_edit, wikimon_newuser, DeviceTap, JackServer, Step,
    TempDir, Wav, WsServer,
};

/// A replay file of wikimon additions at the given times (s).
fn replay_file(path: &Path, edits: &[(f64, &str, i64)]) {
    let lines: Vec<String> = edits
        .iter()
        .map(|(t, title, size)| {
            let mut v: serde_json::Value =
                serde_json::from_str(&wikimon_edit(title, *size, "Main")).expect("json");
            v["_t"] = serde_json::json!(t);
            v.to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write a replay file");
}

fn read_wav(path: &Path) -> Wav {
    support::read_wav_lenient(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn two_sources_panned_hard_left_and_right_are_heard_in_their_own_channels() {
    let dir = TempDir::new("sources-pan");
    let left = dir.path().join("left.jsonl");
    let right = dir.path().join("right.jsonl");
    // Each source's notes in its own second: the left one's at 0.5 and 2.5 s, the
    // right one's at 1.5 and 3.5 s.
    replay_file(&left, &[(0.5, "Left bell", 120), (2.5, "Left again", 40)]);
    replay_file(
        &right,
        &[(1.5, "Right bell", 300), (3.5, "Right again", 25)],
    );
    let config = dir.path().join("two.toml");
    std::fs::write(
        &config,
        format!(
            // No reverb: it would (rightly) spread each note over both channels. No
            // density control: it softens each note by the rate of every source's notes
            // together, so that in the mix a source's notes are (rightly) softer than alone.
            "[engine.reverb]\nwet = 0.0\n[engine.density]\nenabled = false\n\n[sources.left]\nspec = \"replay:{}\"\npan = -1.0\n\n[sources.right]\nspec = \"replay:{}\"\npan = 1.0\n",
            left.display(),
            right.display()
        ),
    )
    .expect("write the config");
    let render = |name: &str, only: Option<&str>| {
        let wav = dir.path().join(name);
        let mut args = vec![
            "render",
            "--config",
            config.to_str().expect("utf-8"),
            "--duration",
            "4.5",
            "-o",
            wav.to_str().expect("utf-8"),
        ];
        if let Some(only) = only {
            args.extend(["--source", only]);
        }
        let out = run_carillon(&args, &[], Duration::from_secs(60));
        out.assert_success();
        (out, read_wav(&wav))
    };
    let (both, mix) = render("both.wav", None);
    assert_eq!(both.summary().get("notes"), 4, "{}", both.stderr);
    for name in ["left", "right"] {
        assert!(
            both.stderr
                .lines()
                .any(|l| l.starts_with(&format!("source {name}: events=2 notes=2"))),
            "a summary line for source {name}:\n{}",
            both.stderr
        );
    }
    let (_, left_alone) = render("left.wav", Some("left"));
    let (_, right_alone) = render("right.wav", Some("right"));
    // Alone, each source sounds in its own channel only (the pan law's other side is
    // exactly zero)…
    let peak = |x: &[f32]| x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        rms(left_alone.channel(0)) > 1e-3,
        "the left source is heard"
    );
    assert!(
        rms(right_alone.channel(1)) > 1e-3,
        "the right source is heard"
    );
    assert_eq!(
        peak(left_alone.channel(1)),
        0.0,
        "nothing of the left source on the right"
    );
    assert_eq!(
        peak(right_alone.channel(0)),
        0.0,
        "nothing of the right source on the left"
    );
    // …and in the mix each channel is that source alone.
    for (channel, alone) in [(0, &left_alone), (1, &right_alone)] {
        let diff: Vec<f32> = mix
            .channel(channel)
            .iter()
            .zip(alone.channel(channel))
            .map(|(a, b)| a - b)
            .collect();
        let (d, a) = (rms(&diff), rms(alone.channel(channel)));
        assert!(
            d < a * 0.01,
            "channel {channel} of the mix is its source alone: difference {d}, signal {a}"
        );
    }
}

/// The notes of a `--notes` CSV: (instrument, frequency, gain, pan) and start times.
fn notes(path: &Path) -> Vec<(String, String, String, String, f64)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 6, "{line}");
            (
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
                f[4].to_owned(),
                f[0].parse().expect("start_s"),
            )
        })
        .collect()
}

#[test]
fn record_then_render_gives_the_notes_of_the_live_play() {
    // The same feed for every connection: ten edits and a new account, 300 ms apart.
    let script = || {
        let mut steps = vec![Step::sleep_ms(500)];
        for i in 0..10 {
            steps.push(Step::text(wikimon_edit(
                &format!("Page {i}"),
                [5, -40, 300, 2, -7, 1200, 64, -500, 9, 20_000][i],
                "Main",
            )));
            steps.push(Step::sleep_ms(300));
        }
        steps.push(Step::text(wikimon_newuser("Newcomer")));
        steps.push(Step::sleep_ms(60_000));
        steps
    };
    let server = WsServer::start_with(move |_| script());
    let url = server.url();
    let dir = TempDir::new("sources-record");
    let recording = dir.path().join("feed.jsonl");
    let out = run_carillon(
        &[
            "record",
            "--source",
            &url,
            "-o",
            recording.to_str().expect("utf-8"),
            "--duration",
            "5",
        ],
        &[],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(out.summary().get("events"), 11, "{}", out.stderr);

    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let live_csv = dir.path().join("live.csv");
    let live = run_carillon(
        &[
            "play",
            "--source",
            &url,
            "--duration",
            "5",
            "--buffer-frames",
            "256",
            "--notes",
            live_csv.to_str().expect("utf-8"),
        ],
        tap.env(),
        Duration::from_secs(30),
    );
    live.assert_success();
    assert_eq!(live.summary().get("notes"), 11, "{}", live.stderr);

    let wav = dir.path().join("rendered.wav");
    let rendered_csv = dir.path().join("rendered.csv");
    let source = format!("replay:{}", recording.display());
    let rendered = run_carillon(
        &[
            "render",
            "--source",
            &source,
            "--duration",
            "8",
            "-o",
            wav.to_str().expect("utf-8"),
            "--notes",
            rendered_csv.to_str().expect("utf-8"),
        ],
        &[],
        Duration::from_secs(60),
    );
    rendered.assert_success();

    let live = notes(&live_csv);
    let rendered = notes(&rendered_csv);
    let sound = |n: &[(String, String, String, String, f64)]| {
        n.iter()
            .map(|(i, f, _, p, _)| (i.clone(), f.clone(), p.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(sound(&live), sound(&rendered), "the same notes, in order");
    assert_eq!(live.len(), 11);
    // The same gains, to the density control's reading of the rate: it counts notes
    // on the stream clock, where live notes land within network jitter (the 50 ms
    // allowed below) of the recorded times. A 50 ms shift moves its 5 s estimate by
    // 1 % at most, and a gain by 0.55 of that; 2 % leaves room for shifts that add up.
    for (a, b) in live.iter().zip(&rendered) {
        let (a, b): (f64, f64) = (a.2.parse().expect("a gain"), b.2.parse().expect("a gain"));
        assert!(
            (a - b).abs() <= 0.02 * a.max(b),
            "gain {a} live, {b} rendered"
        );
    }
    // And the same rhythm: the gaps between notes agree to network jitter.
    for k in 1..live.len() {
        let a = live[k].4 - live[k - 1].4;
        let b = rendered[k].4 - rendered[k - 1].4;
        assert!(
            (a - b).abs() < 0.05,
            "gap {k}: {a:.3} s live, {b:.3} s rendered"
        );
    }
}

/// The hundred enwiki edits of 2023-07-29 (EventStreams), with ids from their offsets.
fn enwiki_recentchanges() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/wikimedia/polars-guide_enwiki_recentchange_2023-07-29.ndjson"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the shared corpus file {path}: {e}"));
    text.lines()
        .enumerate()
        .map(|(i, line)| (format!("[{{\"offset\":{i}}}]"), line.to_owned()))
        .collect()
}

#[test]
fn an_eventstreams_feed_and_a_wikimon_feed_play_at_once_each_counted() {
    use support::sse::{SseServer, Step as SseStep, Wire};
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime for the SSE server");
    // The EventStreams feed: ten edits every 300 ms, then quiet heartbeats.
    let sse = runtime.block_on(SseServer::start(enwiki_recentchanges(), Wire::Sse, |_| {
        let mut steps = vec![SseStep::Sleep(Duration::from_millis(500))];
        for _ in 0..10 {
            steps.push(SseStep::Events(10));
            steps.push(SseStep::Sleep(Duration::from_millis(300)));
        }
        steps.push(SseStep::Heartbeats {
            every: Duration::from_secs(1),
            for_: Duration::from_secs(30),
        });
        steps
    }));
    // The wikimon feed: six edits and a new account.
    let ws = WsServer::start_with(|_| {
        let mut steps = vec![Step::sleep_ms(700)];
        for i in 0..6 {
            steps.push(Step::text(wikimon_edit(
                &format!("Seite {i}"),
                50 * (i + 1),
                "Main",
            )));
            steps.push(Step::sleep_ms(250));
        }
        steps.push(Step::text(wikimon_newuser("Neuling")));
        steps.push(Step::sleep_ms(60_000));
        steps
    });
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let en = format!("en={}", sse.url());
    let de = format!("de={}", ws.url());
    let out = run_carillon(
        &[
            "play",
            "--source",
            &en,
            "--source",
            &de,
            "--duration",
            "5",
            "--buffer-frames",
            "256",
        ],
        tap.env(),
        Duration::from_secs(40),
    );
    out.assert_success();
    let line = |name: &str| {
        let prefix = format!("source {name}: ");
        let line = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no line for source {name}:\n{}", out.stderr));
        support::Summary::parse(&format!("summary: {line}")).expect("key=value pairs")
    };
    let (en, de) = (line("en"), line("de"));
    assert_eq!(
        en.get("events"),
        100,
        "every EventStreams edit: {:?}",
        en.fields
    );
    assert_eq!(
        de.get("events"),
        7,
        "every wikimon message: {:?}",
        de.fields
    );
    assert_eq!(
        de.get("notes"),
        7,
        "the quiet feed is not crowded out: {:?}",
        de.fields
    );
    assert!(en.get("notes") > 0, "{:?}", en.fields);
    let total = out.summary();
    assert_eq!(total.get("events"), 107);
    assert_eq!(total.get("notes"), en.get("notes") + de.get("notes"));
    assert_eq!(total.get("connects"), 2);
    total.assert_every_event_accounted_for();
    assert_eq!(
        sse.requests().len(),
        1,
        "one connection to the EventStreams feed"
    );
}

/// A port of 127.0.0.1 free a moment ago.
fn github_sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_webhook_with_a_wrong_signature_is_refused_and_nothing_plays() {
    let payload_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/github/octokit-webhook-examples/push_payload.json"
    );
    let push = std::fs::read(payload_path)
        .unwrap_or_else(|e| panic!("cannot read the shared corpus file {payload_path}: {e}"));
    let port = free_port();
    let dir = TempDir::new("sources-webhook");
    let config = dir.path().join("forge.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nlisten = \"127.0.0.1:{port}\"\n\n[sources.forge]\nspec = \"webhook:github\"\nsecret_env = \"CARILLON_TEST_FORGE_SECRET\"\n"
        ),
    )
    .expect("write the config");
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let mut env = tap.env().to_vec();
    env.push(("CARILLON_TEST_FORGE_SECRET".into(), "s3cret".into()));
    let running = support::spawn_carillon(
        &[
            "play",
            "--config",
            config.to_str().expect("utf-8"),
            "--duration",
            "4",
        ],
        &env,
    );
    let url = format!("http://127.0.0.1:{port}/hooks/forge");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let post = |signature: &str| {
        client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .body(push.clone())
            .send()
    };
    // The endpoint comes up with the player.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let wrong = loop {
        match post(&github_sign(b"not the secret", &push)) {
            Ok(response) => break response,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("the ingest endpoint never answered on {url}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(wrong.status().as_u16(), 401);
    let right = post(&github_sign(b"s3cret", &push)).expect("the endpoint answers");
    assert_eq!(right.status().as_u16(), 200);
    let out = running.wait(Duration::from_secs(30));
    out.assert_success();
    let summary = out.summary();
    assert_eq!(summary.get("refused"), 1, "{}", out.stderr);
    assert_eq!(
        summary.get("events"),
        1,
        "only the signed push: {}",
        out.stderr
    );
    assert_eq!(summary.get("notes"), 1, "{}", out.stderr);
    summary.assert_every_event_accounted_for();
}
