//! A headless Chromium driven through the DevTools protocol, for tests of the
//! pages carillon serves: load a page, run JavaScript in it, wait for a
//! condition, take a screenshot, read what it logged (CSP violations
//! included), and measure how much CPU the whole browser spends on it.
//!
//! The API is synchronous so plain `#[test]` functions can use it: each
//! [`Browser`] owns a small tokio runtime whose task reads the protocol's
//! websocket all the time, so console messages are collected even between
//! calls. The browser runs in its own process group with a private profile
//! directory, and dropping the [`Browser`] kills every process it started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::tempdir::TempDir;

/// How long the browser may take to start and open its DevTools port: a cold
/// start on a loaded CI machine takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one protocol command may take before it is reported as unanswered.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a navigation may take to reach its `load` event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// One message the page or the browser logged about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMessage {
    /// `console-api` for the page's own `console.*` calls; otherwise the
    /// browser's `Log` source: `security` (CSP violations), `network`,
    /// `javascript`, `violation`, …
    pub source: String,
    /// `log`, `info`, `warning`, `error`, `debug`, … as the protocol names it.
    pub level: String,
    pub text: String,
}

/// What the websocket reader shares with the calling thread.
#[derive(Default)]
struct Shared {
    /// Commands sent and not yet answered, by id.
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    /// The page's session (flattened); events of other sessions are ignored.
    session: Mutex<Option<String>>,
    console: Mutex<Vec<ConsoleMessage>>,
    exceptions: Mutex<Vec<String>>,
    /// `(loaderId, name)` of every lifecycle event: a navigation is loaded when
    /// its own loader reports `load`, whatever an earlier document did.
    lifecycle: Mutex<Vec<(String, String)>>,
    /// Why the connection ended, once it has.
    closed: Mutex<Option<String>>,
}

/// Locks a mutex even if a panicking thread poisoned it: the data are plain
/// lists, always left whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    // Field order is drop order: the runtime (and its websocket reader) goes
    // first, then the process tree is killed, then its profile is removed.
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    sink: Arc<tokio::sync::Mutex<Sink>>,
    next_id: AtomicU64,
    process: ProcessTree,
}

impl Browser {
    /// Starts a headless Chromium showing `about:blank` in a `width`×`height`
    /// viewport, and attaches to its page. Panics, saying what is
    /// missing, if Chromium is not installed or does not start.
    pub fn launch(width: u32, height: u32) -> Browser {
        let binary = find_chromium().unwrap_or_else(|| {
            panic!(
                "Chromium is not installed (neither `chromium` nor `chromium-browser` is on \
                 PATH); it comes with the Debian package `chromium`: \
                 apt-get install -y --no-install-recommends chromium"
            )
        });
        let profile = TempDir::new("chromium");
        let log_path = profile.path().join("chromium.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate {}: {e}", log_path.display()));
        use std::os::unix::process::CommandExt;
        let child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                // Keep a test browser off the network: no update or
                // safe-browsing fetches behind the page's back.
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so that drop can kill every process it
            // forks (renderers, GPU and utility processes, zygotes) at once.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut process = ProcessTree {
            child,
            profile,
            log: log_path,
        };
        let ws_url = process.wait_for_devtools();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
        let shared = Arc::new(Shared::default());
        let (ws, _) = runtime
            .block_on(tokio_tungstenite::connect_async_with_config(
                ws_url.as_str(),
                // A screenshot comes back as one base64 frame: a busy 4K one
                // passes the default 16 MiB frame limit. The peer is a local
                // browser the test started, so take whatever it sends.
                Some(
                    WebSocketConfig::default()
                        .max_frame_size(None)
                        .max_message_size(None),
                ),
                true,
            ))
            .unwrap_or_else(|e| panic!("cannot connect to Chromium's DevTools at {ws_url}: {e}"));
        let (sink, stream) = ws.split();
        runtime.spawn(read_messages(stream, Arc::clone(&shared)));
        let browser = Browser {
            runtime,
            shared,
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            next_id: AtomicU64::new(1),
            process,
        };
        browser
            .attach()
            .unwrap_or_else(|e| panic!("cannot attach to Chromium's page: {e}"));
        // Headless Chromium keeps room for a browser frame it does not draw:
        // a 640×360 window gives the page 640×217. Fix the page's own viewport
        // at the size asked for, as the screenshots and the page must see it.
        browser
            .set_viewport(width, height)
            .unwrap_or_else(|e| panic!("cannot set the page's viewport to {width}×{height}: {e}"));
        browser
    }

    /// Attaches to the page target (creating one if the browser has none)
    /// with a flattened session, and turns on the events the harness collects.
    fn attach(&self) -> Result<(), String> {
        let targets = self.browser_call("Target.getTargets", json!({}))?;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .map(str::to_owned);
        let target_id = match page {
            Some(id) => id,
            None => self.browser_call("Target.createTarget", json!({ "url": "about:blank" }))?
                ["targetId"]
                .as_str()
                .ok_or("Target.createTarget returned no targetId")?
                .to_owned(),
        };
        let attached = self.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| format!("Target.attachToTarget returned no sessionId: {attached}"))?;
        *lock(&self.shared.session) = Some(session.to_owned());
        self.call("Page.enable", json!({}))?;
        self.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))?;
        self.call("Runtime.enable", json!({}))?;
        self.call("Log.enable", json!({}))?;
        Ok(())
    }

    /// The browser process's id (the root of the tree [`Browser::cpu_seconds`] measures).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// The browser's private profile directory, which every process it starts
    /// is told about.
    pub fn user_data_dir(&self) -> &Path {
        self.process.profile.path()
    }

    /// Loads `url` in the page and waits for its `load` event. An error page
    /// (refused connection, unknown host) is an `Err` naming the error.
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        let nav = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("navigating to {url}: {error}"));
        }
        // A same-document navigation (only the fragment changes) has no new
        // loader and no load event: it is done once the command returns.
        let Some(loader) = nav["loaderId"].as_str() else {
            return Ok(());
        };
        let deadline = Instant::now() + LOAD_TIMEOUT;
        loop {
            let loaded = lock(&self.shared.lifecycle)
                .iter()
                .any(|(l, name)| l == loader && name == "load");
            if loaded {
                return Ok(());
            }
            if let Some(why) = lock(&self.shared.closed).clone() {
                return Err(format!("navigating to {url}: {why}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{url} did not finish loading within {LOAD_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Evaluates `js` in the page (awaiting it if it is a promise) and returns
    /// its value as JSON (`undefined` is `Null`). A thrown exception is an
    /// `Err` with its message.
    pub fn eval(&self, js: &str) -> Result<Value, String> {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(details) = reply.get("exceptionDetails") {
            return Err(exception_text(details));
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls the JavaScript expression `condition` until it is truthy, or
    /// fails after `timeout` saying what it last evaluated to.
    pub fn wait_for(&self, condition: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let expression = format!("!!({condition})");
        loop {
            let last = match self.eval(&expression) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(other) => other.to_string(),
                Err(e) => format!("exception: {e}"),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "`{condition}` still not true after {timeout:?} (last: {last})"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Writes a PNG of the page's viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = shot["data"]
            .as_str()
            .ok_or("Page.captureScreenshot returned no data")?;
        let png = decode_base64(data)?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Resizes the page's viewport to `width`×`height` CSS pixels at a device
    /// scale of 1 (a resize event reaches the page).
    pub fn set_viewport(&self, width: u32, height: u32) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .map(drop)
    }

    /// Every console message and browser log entry about the page so far,
    /// in arrival order: `console.*` calls, CSP violations, failed loads, …
    pub fn console_messages(&self) -> Vec<ConsoleMessage> {
        lock(&self.shared.console).clone()
    }

    /// Every uncaught exception the page threw so far, with its message.
    pub fn exceptions(&self) -> Vec<String> {
        lock(&self.shared.exceptions).clone()
    }

    /// CPU time (user + system) used so far by the browser and all its
    /// descendants, in seconds: the cost of everything the page makes it do.
    pub fn cpu_seconds(&self) -> f64 {
        tree_cpu_seconds(self.pid())
    }

    /// Sends `method` to the page's session and waits for its result.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let session = lock(&self.shared.session).clone();
        self.send(method, params, session)
    }

    /// Sends `method` to the browser itself (no session).
    fn browser_call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, None)
    }

    fn send(&self, method: &str, params: Value, session: Option<String>) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::String(session);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        if let Some(why) = lock(&self.shared.closed).clone() {
            lock(&self.shared.pending).remove(&id);
            return Err(format!("{method}: {why}"));
        }
        let sink = Arc::clone(&self.sink);
        let text = message.to_string();
        self.runtime.block_on(async move {
            sink.lock()
                .await
                .send(Message::text(text))
                .await
                .map_err(|e| format!("{method}: cannot send: {e}"))?;
            match tokio::time::timeout(CALL_TIMEOUT, rx).await {
                Ok(Ok(reply)) => reply.map_err(|e| format!("{method}: {e}")),
                Ok(Err(_)) => Err(format!("{method}: the DevTools connection closed")),
                Err(_) => Err(format!("{method}: no answer within {CALL_TIMEOUT:?}")),
            }
        })
    }
}

/// Reads the DevTools websocket until it closes: answers go to their callers,
/// the page's events into [`Shared`].
async fn read_messages(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    shared: Arc<Shared>,
) {
    let why = loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break "the DevTools connection closed".into(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break format!("the DevTools connection failed: {e}"),
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(id) = message["id"].as_u64() {
            if let Some(tx) = lock(&shared.pending).remove(&id) {
                let reply = match message.get("error") {
                    Some(error) => Err(error["message"]
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_owned)),
                    None => Ok(message["result"].clone()),
                };
                // The caller may have given up waiting; nothing to do then.
                let _ = tx.send(reply);
            }
            continue;
        }
        let ours = message["sessionId"].as_str().is_some_and(|s| {
            lock(&shared.session)
                .as_deref()
                .is_some_and(|ours| ours == s)
        });
        if ours {
            record_event(&shared, &message["method"], &message["params"]);
        }
    };
    *lock(&shared.closed) = Some(why);
    // Dropping the senders wakes every caller still waiting.
    lock(&shared.pending).clear();
}

fn record_event(shared: &Shared, method: &Value, params: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match method.as_str().unwrap_or_default() {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = params["args"]
                .as_array()
                .map(|args| args.iter().map(remote_object_text).collect())
                .unwrap_or_default();
            lock(&shared.console).push(ConsoleMessage {
                source: "console-api".into(),
                level: text(&params["type"]),
                text: args.join(" "),
            });
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            lock(&shared.console).push(ConsoleMessage {
                source: text(&entry["source"]),
                level: text(&entry["level"]),
                text: text(&entry["text"]),
            });
        }
        "Runtime.exceptionThrown" => {
            lock(&shared.exceptions).push(exception_text(&params["exceptionDetails"]));
        }
        "Page.lifecycleEvent" => {
            lock(&shared.lifecycle).push((text(&params["loaderId"]), text(&params["name"])));
        }
        _ => {}
    }
}

/// A console argument as the DevTools console would print it.
fn remote_object_text(arg: &Value) -> String {
    match arg.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => arg["description"]
            .as_str()
            .or(arg["type"].as_str())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// `Uncaught: Error: message\n    at …` from the protocol's exception details.
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("exception");
    match details["exception"]["description"].as_str() {
        Some(description) => format!("{text}: {description}"),
        None => match details["exception"].get("value") {
            Some(value) => format!("{text}: {value}"),
            None => text.to_owned(),
        },
    }
}

/// `chromium`, else `chromium-browser` (Ubuntu's name), on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The browser's processes and profile: killed, then removed, on drop.
struct ProcessTree {
    child: Child,
    profile: TempDir,
    /// Chromium's stdout and stderr, shown when it fails to start.
    log: PathBuf,
}

impl ProcessTree {
    /// Waits for Chromium to write `DevToolsActivePort` (its port, then the
    /// browser target's path) and returns the browser's websocket URL.
    fn wait_for_devtools(&mut self) -> String {
        let port_file = self.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The file may be seen half written: use it once both lines are there.
            if let Ok(contents) = std::fs::read_to_string(&port_file) {
                let mut lines = contents.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if port.parse::<u16>().is_ok() && path.starts_with('/') {
                        return format!("ws://127.0.0.1:{port}{path}");
                    }
                }
            }
            let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Chromium exited ({status}) before opening its DevTools port:\n{}",
                    log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "Chromium did not write {} within {START_TIMEOUT:?}:\n{}",
                    port_file.display(),
                    log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        let root = self.child.id();
        // Note the whole tree before killing anything: a process whose parent
        // dies is re-parented and could no longer be found from the root.
        let tree = descendants(root);
        // SAFETY: kill only sends a signal; the group is the one spawn created,
        // led by the browser, and the pids were its descendants a moment ago.
        unsafe {
            libc::kill(-(root as libc::pid_t), libc::SIGKILL);
            for &pid in &tree {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        // The grandchildren are reaped by whoever inherits them: wait (briefly)
        // until none runs any more, so the profile can be removed and the next
        // measurement does not see them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tree.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One line of `/proc/PID/stat`, the fields after the command name.
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
    state: char,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: the fields proper start after the last ") ".
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: u32::try_from(number(1)?).ok()?,
        // Fields 14–17 of the line: utime, stime, and the times of children
        // already reaped (so the sum does not drop when a renderer exits).
        ticks: number(11)? + number(12)? + number(13)? + number(14)?,
    })
}

/// Every process now running, with its stat.
fn all_processes() -> Vec<(u32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .collect()
}

/// `root` and all its descendants now running.
fn descendants(root: u32) -> Vec<u32> {
    tree_of(root, &all_processes())
}

fn tree_of(root: u32, processes: &[(u32, Stat)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&parent) = tree.get(i) {
        tree.extend(
            processes
                .iter()
                .filter(|(_, s)| s.ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    tree
}

/// CPU seconds used by `root` and its descendants (see [`Browser::cpu_seconds`]).
fn tree_cpu_seconds(root: u32) -> f64 {
    let processes = all_processes();
    let tree = tree_of(root, &processes);
    let ticks: u64 = processes
        .iter()
        .filter(|(pid, _)| tree.contains(pid))
        .map(|(_, s)| s.ticks)
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// The process exists and is not a zombie waiting to be reaped.
fn is_running(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Standard base64 (with padding), as the protocol sends binary data.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or_else(|| format!("not base64: byte {c:#04x}"))?;
            n |= v << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        // 2 characters carry 1 byte, 3 carry 2, 4 carry 3.
        match chunk.len() {
            4 => out.extend([a, b, c]),
            3 => out.extend([a, b]),
            2 => out.push(a),
            _ => return Err("base64 ends mid-byte".into()),
        }
    }
    Ok(out)
}
