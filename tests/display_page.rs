//! The display page in a real browser: headless Chromium, driven over the DevTools
//! protocol, loads the page from a running carillon that plays a replay through the
//! real device path, and checks what a person in the room would see — bubbles for the
//! notes played, coloured by who made them, the welcome banner, a hostile title shown
//! as text, the controls acting on the recorded sound, and the page finding carillon
//! again after a restart. It takes screenshots (kept with the test's files).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::browser::Browser;
use support::{free_port, play_with_display, rms, DeviceTap, JackServer, TempDir};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A wikimon message with its replay time.
fn message(t: f64, title: &str, size: i64, user: &str, anon: bool, bot: bool) -> String {
    serde_json::json!({
        "_t": t, "action": "edit", "change_size": size, "page_title": title, "user": user,
        "is_anon": anon, "is_bot": bot, "is_minor": false, "is_new": false, "ns": "Main",
        "url": format!("https://en.wikipedia.org/w/index.php?title={}", title.replace(' ', "_")),
        "summary": ""
    })
    .to_string()
}

fn newcomer(t: f64, user: &str) -> String {
    serde_json::json!({
        "_t": t, "action": "create", "change_size": null, "page_title": "Special:Log/newusers",
        "user": user, "ns": "Special", "url": "", "summary": ""
    })
    .to_string()
}

/// carillon playing `replay`, its display on `port`, once the display listens.
fn play(replay: &Path, port: u16, seconds: &str, tap: &DeviceTap) -> support::process::Running {
    let source = format!("replay:{}", replay.display());
    play_with_display(
        &["--source", &source],
        port,
        seconds,
        tap.env(),
        Duration::from_secs(15),
    )
}

fn eval(browser: &Browser, js: &str) -> serde_json::Value {
    browser
        .eval(js)
        .unwrap_or_else(|e| panic!("the page could not evaluate {js}: {e}"))
}

#[test]
fn the_page_shows_what_is_heard_safely_and_its_controls_act_on_the_sound() {
    let dir = TempDir::new("display-page");
    let replay = dir.path().join("room.jsonl");
    let lines = [
        // From 5 s: time for the browser to start and connect.
        message(5.0, "Pont Neuf", 420, "Ada", false, false),
        message(5.5, "Île de la Cité", -120, "192.0.2.7", true, false),
        message(6.0, "Quai des Orfèvres", 60, "TidyBot", false, true),
        message(6.5, HOSTILE, 900, "Mallory", false, false),
        newcomer(7.0, "Camille"),
        message(7.5, "Notre-Dame", 3000, "Ada", false, false),
        // After the test has turned the volume down: the first two again, quieter.
        message(9.5, "Pont Neuf ", 420, "Ada", false, false),
        message(10.0, "Île de la Cité ", -120, "192.0.2.7", true, false),
        // After the test has muted the sound.
        message(12.5, "Sainte-Chapelle", 700, "Ada", false, false),
        message(13.0, "Conciergerie", 700, "Ada", false, false),
    ];
    std::fs::write(&replay, lines.join("\n") + "\n").expect("write the replay");
    let port = free_port();
    let jack = JackServer::start(256);
    let tap = DeviceTap::new(&jack);
    let running = play(&replay, port, "15", &tap);

    let browser = Browser::launch(1280, 720);
    let url = format!("http://127.0.0.1:{port}/");
    browser.navigate(&url).expect("the page loads");
    browser
        .wait_for(
            "window.carillonDisplay && window.carillonDisplay.connected",
            Duration::from_secs(10),
        )
        .expect("the page connects to carillon's feed");
    // The log's frame is hidden while the log is empty (whatever has come in by now is
    // set aside for the check, and put back), and shown once it is not.
    let log_shown = "getComputedStyle(document.getElementById('log-panel')).display !== 'none'";
    assert_eq!(
        eval(
            &browser,
            &format!(
                "(() => {{ const log = document.getElementById('log'); \
                 const kept = [...log.children]; log.replaceChildren(); \
                 const shown = {log_shown}; log.replaceChildren(...kept); return shown; }})()"
            )
        ),
        false,
        "an empty log is framed"
    );
    // A source's name too long for its panel (a URL, a path) wraps, and its rate stays
    // inside the panel's padding. The name is put back after.
    assert_eq!(
        eval(
            &browser,
            "(() => { const li = document.querySelector('#sources li'); \
             const name = li.querySelector('.name'); const was = name.textContent; \
             name.textContent = 'replay:' + 'x'.repeat(90) + '.jsonl'; \
             const panel = document.getElementById('sources-panel'); \
             const inside = panel.getBoundingClientRect().right \
                 - parseFloat(getComputedStyle(panel).paddingRight) - parseFloat(getComputedStyle(panel).borderRightWidth); \
             const fits = li.querySelector('.rate').getBoundingClientRect().right <= inside + 0.5 \
                 && li.getBoundingClientRect().right <= inside + 0.5; \
             name.textContent = was; return fits; })()"
        ),
        true,
        "a long source name pushes its rate out of the panel"
    );
    // Every bubble as it appears, with its colour: the page's own state, sampled.
    eval(
        &browser,
        "window.seen = []; setInterval(() => { const b = carillonDisplay.lastBubble; \
         if (b && !seen.some(s => s.title === b.title)) seen.push(b); }, 10); true",
    );
    browser
        .wait_for(
            "carillonDisplay.banner.includes('Camille')",
            Duration::from_secs(10),
        )
        .expect("the new account is welcomed by name");
    browser
        .wait_for("carillonDisplay.drawn >= 5", Duration::from_secs(10))
        .expect("five bubbles by the new account");
    browser
        .screenshot(&dir.path().join("display-welcome.png"))
        .expect("a screenshot");
    assert_eq!(
        eval(&browser, log_shown),
        true,
        "the log is not shown once it has notes"
    );
    browser
        .wait_for("carillonDisplay.drawn >= 6", Duration::from_secs(5))
        .expect("the sixth bubble");
    // The hostile title is in the log as its characters.
    let in_log = eval(
        &browser,
        &format!(
            "[...document.querySelectorAll('#log li')].some(li => li.textContent.includes({}))",
            serde_json::to_string(HOSTILE).expect("json")
        ),
    );
    assert_eq!(in_log, true, "the log shows the hostile title as text");

    // Turn the volume down from the page, as a person would: its slider.
    eval(
        &browser,
        "const v = document.getElementById('volume'); v.value = '0.2'; \
         v.dispatchEvent(new Event('input')); true",
    );
    browser
        .wait_for("carillonDisplay.drawn >= 8", Duration::from_secs(10))
        .expect("the notes after the volume change");

    // Mute from the page, as a person would: its button.
    let muted_at = Instant::now();
    eval(&browser, "document.getElementById('mute').click(); true");
    browser
        .wait_for(
            "document.getElementById('mute').textContent.toLowerCase().includes('unmute')",
            Duration::from_secs(5),
        )
        .expect("the page shows the sound muted, as carillon reports it");
    browser
        .wait_for("carillonDisplay.drawn >= 10", Duration::from_secs(10))
        .expect("the notes played while muted still appear");
    browser
        .screenshot(&dir.path().join("display-muted.png"))
        .expect("a screenshot");
    // The full-screen button throws nothing, whether or not the browser lets the page
    // go full screen (this one refuses: the click is not a person's gesture).
    eval(
        &browser,
        "document.getElementById('fullscreen').click(); true",
    );
    std::thread::sleep(Duration::from_millis(300));
    let seen = eval(&browser, "seen");
    let exceptions = browser.exceptions();

    // The page follows carillon through a restart, without a reload.
    let out = running.wait(Duration::from_secs(30));
    out.assert_success();
    // What the first carillon played (the second one records over it).
    let wav = tap.read();
    browser
        .wait_for("!carillonDisplay.connected", Duration::from_secs(10))
        .expect("the page sees carillon gone");
    let again = dir.path().join("again.jsonl");
    std::fs::write(
        &again,
        message(1.0, "Pont Marie", 300, "Ada", false, false) + "\n",
    )
    .expect("write the replay");
    let reconnects = eval(&browser, "carillonDisplay.reconnects")
        .as_u64()
        .unwrap_or(0);
    let second = play(&again, port, "4", &tap);
    browser
        .wait_for(
            &format!("carillonDisplay.connected && carillonDisplay.reconnects > {reconnects}"),
            Duration::from_secs(20),
        )
        .expect("the page reconnects to the restarted carillon by itself");
    browser
        .wait_for(
            "carillonDisplay.lastBubble && carillonDisplay.lastBubble.title === 'Pont Marie'",
            Duration::from_secs(10),
        )
        .expect("and shows what it plays");
    browser
        .screenshot(&dir.path().join("display-after-restart.png"))
        .expect("a screenshot");
    second.wait(Duration::from_secs(30)).assert_success();

    // One bubble per note played.
    assert_eq!(out.summary().get("notes"), 10, "{}", out.stderr);
    let seen = seen.as_array().expect("the bubbles seen").clone();
    let titles: Vec<&str> = seen.iter().filter_map(|b| b["title"].as_str()).collect();
    assert_eq!(
        seen.len(),
        10,
        "a bubble for each of the 10 notes: {titles:?}"
    );
    // A new account is shown by the newcomer's name.
    assert!(titles.contains(&"Camille"), "{titles:?}");
    // Colours follow who made the edit: three colours for three kinds of editor, and
    // the same colour for the same kind.
    let colour = |title: &str| {
        seen.iter()
            .find(|b| b["title"] == title)
            .map(|b| b["colour"].to_string())
            .unwrap_or_else(|| panic!("no bubble titled {title}: {titles:?}"))
    };
    let (registered, anonymous, bot) = (
        colour("Pont Neuf"),
        colour("Île de la Cité"),
        colour("Quai des Orfèvres"),
    );
    assert_ne!(registered, anonymous);
    assert_ne!(registered, bot);
    assert_ne!(anonymous, bot);
    assert_eq!(colour("Notre-Dame"), registered);
    // The hostile title is text: shown as its characters, never run or parsed.
    assert!(titles.contains(&HOSTILE), "{titles:?}");
    assert!(exceptions.is_empty(), "the page threw: {exceptions:?}");
    let img = eval(&browser, "document.querySelectorAll('img').length");
    assert_eq!(img, 0, "no element was made of the title");

    // The sound: the same two notes a quarter as loud after the slider (0.8 → 0.2:
    // −12 dB), and silence after the mute (the notes at 12.5 and 13 s were played
    // muted).
    let sr = f64::from(wav.sample_rate);
    let mono = wav.mono();
    let window = |from: f64, to: f64| {
        let (a, b) = ((from * sr) as usize, ((to * sr) as usize).min(mono.len()));
        rms(&mono[a.min(b)..b])
    };
    let before = window(5.0, 8.0);
    // The first note alone, then its twin at the new volume (before the mute that
    // follows the second twin).
    let first_two = window(5.0, 5.5);
    let turned_down = window(9.5, 10.0);
    assert!(
        turned_down < first_two * 0.5 && turned_down > first_two * 0.05,
        "the slider at 0.2 turns the same notes down about 12 dB: rms {turned_down} against {first_two}"
    );
    let after = window(12.5, 14.0);
    assert!(before > 1e-3, "heard before the mute: rms {before}");
    assert!(
        after < before * 0.01,
        "muted from the page at {:.1} s: rms {after} after, {before} before",
        muted_at.elapsed().as_secs_f64()
    );
}
