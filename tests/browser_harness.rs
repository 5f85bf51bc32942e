//! Tests of the browser harness itself (`support::browser`), against a small
//! static site served from 127.0.0.1 with the strict Content-Security-Policy
//! carillon's display uses: that it reads what a page did, sees what the CSP
//! blocked, screenshots at the requested size, measures the browser's CPU and
//! leaves no process behind. Needs Chromium (`apt-get install chromium`).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::routing::get;
use axum::Router;
use support::browser::Browser;
use support::TempDir;

const CSP: &str = "default-src 'self'; script-src 'self'";

/// The script file sets the title and logs; the inline script would set a
/// global, but the CSP forbids inline scripts; `throws.js` throws uncaught.
const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>untouched</title>
<script src="/title.js"></script>
<script src="/throws.js"></script>
<script>window.inlineRan = true; document.title = "set inline";</script>
</head><body><p>harness page</p></body></html>
"#;
const TITLE_JS: &str = r#"document.title = "set by title.js";
console.log("title.js ran", 42);
"#;
const THROWS_JS: &str = r#"setTimeout(() => { throw new Error("thrown by throws.js"); }, 0);
"#;

/// The static site on an ephemeral port, stopped when dropped.
struct Site {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Site {
    fn start() -> Site {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the static site");
        let page = |mime: &'static str, body: &'static str| {
            get(
                move || async move { ([(CONTENT_TYPE, mime), (CONTENT_SECURITY_POLICY, CSP)], body) },
            )
        };
        let app = Router::new()
            .route("/", page("text/html; charset=utf-8", INDEX))
            .route("/title.js", page("text/javascript", TITLE_JS))
            .route("/throws.js", page("text/javascript", THROWS_JS));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free port on 127.0.0.1 for the static site");
        let addr = listener.local_addr().expect("the static site's address");
        runtime.spawn(async move { axum::serve(listener, app).await });
        Site {
            addr,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

#[test]
fn the_csp_lets_the_script_file_run_and_blocks_the_inline_script_reporting_it() {
    let site = Site::start();
    let browser = Browser::launch(800, 600);
    browser.navigate(&site.url("/")).expect("the page loads");

    let title = browser.eval("document.title").expect("the title");
    assert_eq!(
        title, "set by title.js",
        "the allowed script file did not run"
    );
    let inline = browser.eval("typeof window.inlineRan").expect("a typeof");
    assert_eq!(inline, "undefined", "the inline script ran despite the CSP");

    // The browser reports the violation on its own schedule: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let csp_report = loop {
        let messages = browser.console_messages();
        let found = messages
            .iter()
            .find(|m| m.text.contains("Content Security Policy") && m.text.contains("inline"))
            .cloned();
        if found.is_some() || Instant::now() > deadline {
            break found.ok_or(messages);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report = csp_report.unwrap_or_else(|messages| {
        panic!("no CSP violation among the collected messages: {messages:#?}")
    });
    assert_eq!(
        (report.source.as_str(), report.level.as_str()),
        ("security", "error"),
        "a CSP violation is a security error: {report:?}"
    );

    let logged = browser.console_messages();
    assert!(
        logged
            .iter()
            .any(|m| m.source == "console-api" && m.level == "log" && m.text == "title.js ran 42"),
        "title.js's console.log was not collected: {logged:#?}"
    );
}

#[test]
fn exceptions_timeouts_and_failed_loads_are_reported() {
    let site = Site::start();
    let browser = Browser::launch(800, 600);
    browser.navigate(&site.url("/")).expect("the page loads");

    // An uncaught exception thrown by the page is collected.
    browser
        .wait_for("true", Duration::from_secs(1))
        .expect("a true condition holds at once");
    let deadline = Instant::now() + Duration::from_secs(5);
    while browser.exceptions().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exceptions = browser.exceptions();
    assert!(
        exceptions.iter().any(|e| e.contains("thrown by throws.js")),
        "the page's uncaught exception was not collected: {exceptions:?}"
    );

    // An exception in eval (also inside an awaited promise) is an Err with its message.
    let thrown = browser.eval("(() => { throw new TypeError('eval threw this'); })()");
    let err = thrown.expect_err("a throwing expression is an error");
    assert!(err.contains("TypeError: eval threw this"), "{err}");
    let rejected = browser.eval("Promise.reject(new Error('rejected this'))");
    let err = rejected.expect_err("a rejected promise is an error");
    assert!(err.contains("rejected this"), "{err}");
    assert_eq!(
        browser.eval("new Promise(r => setTimeout(() => r(6 * 7), 50))"),
        Ok(serde_json::json!(42)),
        "eval awaits a promise's value"
    );

    // wait_for polls until a condition set later holds, and times out otherwise.
    browser
        .eval("setTimeout(() => { window.later = 1; }, 300); 0")
        .expect("a timer is set");
    let start = Instant::now();
    browser
        .wait_for("window.later === 1", Duration::from_secs(5))
        .expect("the condition becomes true after 300 ms");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "wait_for returned before the condition could hold: {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err = browser
        .wait_for("window.never === 1", Duration::from_millis(400))
        .expect_err("a condition that never holds times out");
    assert!(start.elapsed() >= Duration::from_millis(400), "{err}");
    assert!(err.contains("window.never === 1"), "{err}");

    // A page that cannot load is an Err, not a silent error page.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address")
        // Dropped here: nothing listens on that port any more.
    };
    let err = browser
        .navigate(&format!("http://{closed}/"))
        .expect_err("a refused connection fails the navigation");
    assert!(err.contains("ERR_CONNECTION_REFUSED"), "{err}");
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let png = std::fs::read(path).expect("the screenshot file");
    assert!(png.len() > 33, "{} is too short for a PNG", path.display());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "the first chunk is not IHDR");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

#[test]
fn screenshots_are_pngs_of_the_requested_size_and_of_a_new_viewport() {
    let dir = TempDir::new("browser-screenshot");
    let site = Site::start();
    let browser = Browser::launch(640, 360);
    browser.navigate(&site.url("/")).expect("the page loads");

    let launched = dir.path().join("launched.png");
    browser.screenshot(&launched).expect("a screenshot");
    assert_eq!(png_size(&launched), (640, 360), "the requested size");

    browser.set_viewport(320, 200).expect("a new viewport");
    assert_eq!(
        browser.eval("[innerWidth, innerHeight]"),
        Ok(serde_json::json!([320, 200])),
        "the page sees the new viewport"
    );
    let viewport = dir.path().join("viewport.png");
    browser.screenshot(&viewport).expect("a second screenshot");
    assert_eq!(png_size(&viewport), (320, 200), "the new viewport's size");
}

#[test]
fn cpu_seconds_include_the_renderer_busy_looping() {
    let site = Site::start();
    let browser = Browser::launch(800, 600);
    browser.navigate(&site.url("/")).expect("the page loads");
    let before = browser.cpu_seconds();
    assert!(before > 0.0, "starting a browser took no CPU: {before}");

    // The renderers' own CPU time, read here independently of the harness.
    // The tree is read first and last, so its growth includes theirs whatever
    // the machine's load (which only changes how much CPU the loop gets).
    let dir = browser.user_data_dir().to_path_buf();
    let renderers = || -> f64 {
        processes_naming(&dir)
            .iter()
            .filter(|(_, cmdline)| cmdline.contains("--type=renderer"))
            .map(|&(pid, _)| support::procfs::cpu_time(pid).as_secs_f64())
            .sum()
    };
    let renderers_before = renderers();
    // One second of wall time spinning on the page's main thread, in a
    // renderer: a grandchild of the browser process.
    browser
        .eval("(() => { const end = performance.now() + 1000; while (performance.now() < end) {} })()")
        .expect("the busy loop runs");
    let renderers_grown = renderers() - renderers_before;
    let grown = browser.cpu_seconds() - before;
    eprintln!(
        "browser CPU: {before:.2} s to start and load; over the busy second, +{grown:.2} s \
         (renderers +{renderers_grown:.2} s)"
    );
    assert!(
        renderers_grown >= 0.2,
        "the busy loop barely ran in a renderer: +{renderers_grown:.3} s"
    );
    assert!(
        grown >= renderers_grown,
        "the browser's CPU time grew by {grown:.3} s, less than its renderers' alone \
         ({renderers_grown:.3} s)"
    );
}

/// Processes whose command line names `dir` (every process of a browser
/// started with it as `--user-data-dir`, and only those).
fn processes_naming(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline.contains(&needle).then_some((pid, cmdline))
        })
        .collect()
}

#[test]
fn dropping_the_browser_leaves_no_process_behind() {
    let site = Site::start();
    let browser = Browser::launch(800, 600);
    browser.navigate(&site.url("/")).expect("the page loads");
    let dir = browser.user_data_dir().to_path_buf();
    let running = processes_naming(&dir);
    // The browser and at least one child (renderer, GPU, utility): a check that
    // sees them all, so that an empty list after drop means something.
    assert!(
        running.len() >= 2,
        "expected the browser and its children to name {}: {running:#?}",
        dir.display()
    );

    drop(browser);
    let left = processes_naming(&dir);
    assert!(left.is_empty(), "processes left after drop: {left:#?}");
}
