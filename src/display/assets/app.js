// carillon display: draws each note the moment it is heard.
//
// The server sends a `hello`, then a `note` frame at the instant each note
// plays and a `status` frame every second (see the display protocol). This
// script only renders what the server says: volume, mute and source states
// always come from the latest status, never from a copy kept here.
//
// Everything from the feeds (titles, users, source names) is untrusted and is
// only ever drawn with fillText or set as text (textContent, or a text node's value).
"use strict";

(() => {
  const LIFE_MS = 9000; // a bubble fades out over this long, then is removed
  const FADE_IN_MS = 250;
  const TITLE_MS = 5000; // titles leave before their bubble, keeping the sky readable
  const MAX_TITLES = 24; // fillText is the costliest call here (about a fifth of the CPU with 300 bubbles): cap it per frame
  const MAX_BUBBLES = 800; // a burst can never grow memory without bound
  const RING_MS = 3000; // new-member ring expansion
  const WELCOME_MS = 5000;
  const LOG_LEN = 8;
  const ALPHA_STEPS = 16; // bubbles are batched by (colour, alpha step, style)
  const FADE_WAIT = 6; // frames a fade step may wait for the next repaint (100 ms at 60 Hz)

  const $ = (id) => document.getElementById(id);
  const canvas = $("sky");
  // Not `alpha: false`: every repaint fills the sky with its background anyway, and
  // an opaque canvas measured costlier to composite in software (about 2 % of a core
  // at 780x437).
  const ctx = canvas.getContext("2d");

  // ---- settings: from the URL, changeable on screen, written back to the URL
  const params = new URLSearchParams(location.search);
  const settings = {
    titles: params.get("titles") !== "off",
    log: params.get("log") !== "off",
    legend: params.get("legend") !== "off",
    audioOnly: params.get("audio") === "only",
    theme: params.get("theme") === "light" ? "light" : "dark",
    // Only notes from these sources are drawn (all when absent).
    sources: params.get("sources") ? new Set(params.get("sources").split(",").map((s) => s.trim()).filter(Boolean)) : null,
  };

  // ---- state exposed read-only for tests
  const stats = { notes: 0, drawn: 0, connected: false, reconnects: 0, banner: "", frames: 0, paints: 0, lastBubble: null };
  let palette = { registered: "", anonymous: "", bot: "", bg: "", fg: "" };

  const bubbles = []; // {x, y, r, who, kind, born, title, url, tw, drawn}
  const rings = []; // new-member rings: {x, y, r, who, born, layer}
  let width = 0;
  let height = 0;
  let scale = 1; // radius scale: bubbles keep their proportion to the window
  let running = false; // an animation frame is scheduled

  function readPalette() {
    const css = getComputedStyle(document.body);
    const get = (name) => css.getPropertyValue(name).trim();
    palette = { registered: get("--registered"), anonymous: get("--anonymous"), bot: get("--bot"), bg: get("--bg"), fg: get("--fg") };
  }

  function resize() {
    // Device pixels capped at 2: past that, fill cost grows with no visible gain.
    dpr = Math.min(window.devicePixelRatio || 1, 2);
    width = window.innerWidth;
    height = window.innerHeight;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    scale = Math.max(0.5, Math.min(width, height) / 1080);
    ctx.font = fontFor();
    for (const g of rings.splice(0)) dropRing(g); // placed for the old size
    resetLayers();
    dirty = true;
    wake();
  }

  const fontFor = () => `${Math.round(15 * Math.max(scale, 0.8))}px system-ui, sans-serif`;

  // ---- bubbles
  function who(note) {
    if (note.bot) return "bot";
    if (note.anon) return "anonymous";
    return "registered";
  }

  // Like Listen to Wikipedia: the radius grows with the log of the edit size.
  function radiusFor(size) {
    const r = 5 + 9 * Math.log10(Math.abs(Number(size) || 0) + 1);
    return Math.min(60, Math.max(5, r)) * scale;
  }

  // Only web links may be opened: a feed could send `javascript:` URLs.
  function safeUrl(raw) {
    try {
      const u = new URL(String(raw));
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : "";
    } catch {
      return "";
    }
  }

  function addBubble(note, now) {
    const pan = Math.max(-1, Math.min(1, Number(note.pan) || 0));
    const margin = 40 * scale;
    const span = width - 2 * margin;
    const x = margin + ((pan + 1) / 2) * span + (Math.random() - 0.5) * 0.12 * span;
    const y = margin + Math.random() * (height - 2 * margin);
    const title = label(note);
    const b = {
      x: Math.max(margin, Math.min(width - margin, x)),
      y,
      r: radiusFor(note.size),
      who: who(note),
      kind: note.kind === "removal" || note.kind === "new_member" ? note.kind : "addition",
      born: now,
      title,
      url: safeUrl(note.url),
      tw: title ? ctx.measureText(title).width : 0, // measured once, used for drawing and hit-testing
      tx: 0, // where the title starts: right of the bubble, or left of it near the right edge
      drawn: false,
      step: -1, // alpha step last drawn
      ts: -1, // title alpha step last drawn
      row: -1, // title atlas row
      rp: 0, // radius in whole pixels, for its sprite
      ix: 0, // integer position: sprites are blitted without resampling
      iy: 0,
    };
    b.rp = Math.max(1, Math.round(b.r));
    b.ix = Math.round(b.x);
    b.iy = Math.round(b.y);
    b.tx = b.x + b.r + 8 * scale + b.tw > width - 8 ? b.x - b.r - 8 * scale - b.tw : b.x + b.r + 8 * scale;
    bubbles.push(b);
    if (bubbles.length > MAX_BUBBLES) bubbles.splice(0, bubbles.length - MAX_BUBBLES);
    if (b.kind === "new_member") addRing(b, now);
    stats.lastBubble = { colour: palette[b.who], title, kind: b.kind };
    wake();
  }

  function wake() {
    if (!running && !settings.audioOnly) {
      running = true;
      requestAnimationFrame(frame);
    }
  }

  // Bubbles are drawn from small pre-rendered sprites, one per (who, kind, radius in
  // pixels), blitted at integer positions with the bubble's alpha step: a blit is much
  // cheaper than rasterising anti-aliased arcs every frame.
  const WHO = ["registered", "anonymous", "bot"];
  let dpr = 1;
  let sprites = new Map();
  const offscreen = typeof OffscreenCanvas === "function";

  function sprite(b) {
    const key = `${b.who}|${b.kind}|${b.rp}`;
    let s = sprites.get(key);
    if (s) return s;
    const lw = 2.5 * scale;
    const outer = b.kind === "new_member" ? b.rp + 5 * scale : b.rp;
    const half = Math.ceil(outer + lw);
    const side = Math.ceil(2 * half * dpr);
    const c = offscreen ? new OffscreenCanvas(side, side) : document.createElement("canvas");
    c.width = c.height = side;
    const g = c.getContext("2d");
    g.scale(dpr, dpr);
    g.fillStyle = g.strokeStyle = palette[b.who];
    g.lineWidth = lw;
    // Additions are filled, removals are rings, new members are both.
    if (b.kind !== "removal") {
      g.beginPath();
      g.arc(half, half, b.rp, 0, 2 * Math.PI);
      g.fill();
    }
    if (b.kind !== "addition") {
      g.beginPath();
      g.arc(half, half, outer, 0, 2 * Math.PI);
      g.stroke();
    }
    // An ImageBitmap is drawn from as it is; a canvas is copied first, at every draw.
    s = { c: offscreen ? c.transferToImageBitmap() : c, half, size: 2 * half };
    sprites.set(key, s);
    return s;
  }

  // Titles are rendered once into rows of an atlas and blitted from there. A row is
  // reused round-robin; only the newest MAX_TITLES titles are drawn, so a title still
  // shown keeps its row (its owner is checked, and it is re-rendered if it lost it).
  const ATLAS_ROWS = 64;
  let atlas = null;
  let actx = null;
  let rowH = 0;
  let nextRow = 0;
  let owners = new Array(ATLAS_ROWS).fill(null);

  function resetLayers() {
    for (const s of sprites.values()) if (s.c.close) s.c.close();
    sprites = new Map();
    atlas = null;
    owners = new Array(ATLAS_ROWS).fill(null);
  }

  function titleRow(b) {
    if (b.row >= 0 && owners[b.row] === b) return b.row;
    if (!atlas) {
      atlas = document.createElement("canvas");
      rowH = Math.ceil(24 * Math.max(scale, 0.8));
      atlas.width = Math.ceil(Math.min(4096, width) * dpr);
      atlas.height = Math.ceil(ATLAS_ROWS * rowH * dpr);
      actx = atlas.getContext("2d");
      actx.scale(dpr, dpr);
    }
    const row = nextRow;
    nextRow = (nextRow + 1) % ATLAS_ROWS;
    owners[row] = b;
    b.row = row;
    actx.clearRect(0, row * rowH, width, rowH);
    actx.font = fontFor();
    actx.textBaseline = "middle";
    actx.fillStyle = palette.fg;
    actx.fillText(b.title, 0, row * rowH + rowH / 2);
    return row;
  }

  // New members: a ring widening from the bubble, thinning as it goes. Each ring is
  // drawn on a small canvas of its own over the sky, so that it can move every frame
  // while the sky is repainted only when a bubble changes.
  const MAX_RINGS = 4;
  const ringLayers = []; // canvases not in use, kept for the next rings

  function addRing(b, now) {
    if (rings.length >= MAX_RINGS) dropRing(rings.shift());
    const half = Math.ceil(b.r + 160 * scale + 4 * scale + 2);
    const c = ringLayers.pop() || document.createElement("canvas");
    c.className = "ring";
    c.width = c.height = Math.ceil(2 * half * dpr);
    c.style.width = c.style.height = `${2 * half}px`;
    c.style.transform = `translate(${Math.round(b.x) - half}px, ${Math.round(b.y) - half}px)`;
    c.hidden = false;
    if (!c.isConnected) canvas.after(c);
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    rings.push({ c, g, half, r: b.r, x: b.x - Math.round(b.x) + half, y: b.y - Math.round(b.y) + half, who: b.who, born: now });
  }

  function drawRing(ring, now) {
    const t = Math.min(1, Math.max(0, (now - ring.born) / RING_MS));
    const g = ring.g;
    g.clearRect(0, 0, 2 * ring.half, 2 * ring.half);
    g.globalAlpha = 1 - t;
    g.strokeStyle = palette[ring.who];
    g.lineWidth = 4 * scale * (1 - t) + 1;
    g.beginPath();
    g.arc(ring.x, ring.y, ring.r + t * 160 * scale, 0, 2 * Math.PI);
    g.stroke();
  }

  function dropRing(ring) {
    ring.c.hidden = true;
    ringLayers.push(ring.c);
  }

  let dirty = true; // something must be drawn again
  let urgent = false; // ... at this very frame
  let lastDraw = 0; // the frame that last painted the sky
  const titleStep = (age) => {
    const a = age < 400 ? age / 400 : Math.min(1, (TITLE_MS - age) / 1000);
    return Math.max(0, Math.min(ALPHA_STEPS, Math.round(a * ALPHA_STEPS)));
  };

  function frame(now) {
    // Prune the dead in place: the arrays never keep what is no longer seen.
    let keep = 0;
    for (const b of bubbles) if (now - b.born < LIFE_MS) bubbles[keep++] = b;
    if (keep !== bubbles.length) dirty = true;
    bubbles.length = keep;
    keep = 0;
    for (const g of rings) {
      if (now - g.born < RING_MS) rings[keep++] = g;
      else dropRing(g);
    }
    rings.length = keep;
    stats.frames++;

    if (bubbles.length === 0 && rings.length === 0) {
      // Nothing moves: wipe the sky once; schedule no other frame.
      ctx.globalAlpha = 1;
      ctx.fillStyle = palette.bg;
      ctx.fillRect(0, 0, width, height);
      dirty = true;
      running = false;
      flushPanels();
      return;
    }

    urgent = false;
    // Has anything visibly changed since the last drawing? Alpha is quantized, so most
    // frames with few bubbles change nothing and the canvas is left as it is.
    for (const b of bubbles) {
      const step = Math.min(ALPHA_STEPS - 1, Math.floor(alphaAt(now - b.born) * ALPHA_STEPS));
      if (step !== b.step) {
        if (b.step < 0) urgent = true; // a new bubble is drawn at once
        b.step = step;
        dirty = true;
      }
    }
    if (settings.titles) {
      let n = 0;
      for (let i = bubbles.length - 1; i >= 0 && n < MAX_TITLES; i--) {
        const b = bubbles[i];
        const age = Math.max(0, now - b.born);
        if (age >= TITLE_MS) {
          if (b.ts > 0) {
            b.ts = 0; // its title has just gone
            dirty = true;
          }
          break;
        }
        if (!b.title) continue;
        const ts = titleStep(age);
        if (ts !== b.ts) {
          b.ts = ts;
          dirty = true;
        }
        n++;
      }
    }
    for (const g of rings) drawRing(g, now);

    // A fade step (one sixteenth of the alpha, a bubble takes one every half second)
    // may wait a few frames for the next repaint: a birth repaints at once and takes
    // the waiting fades with it, so with hundreds of bubbles fading the sky is
    // repainted about as often as bubbles are born, not every frame.
    const paint = dirty && (urgent || stats.frames - lastDraw >= FADE_WAIT);
    if (paint) {
      dirty = false;
      lastDraw = stats.frames;
      draw(now);
    }
    // Panel updates waiting for a frame go with this repaint, or go alone if none
    // comes soon: one composited frame for both, not one each.
    if (panelsDue >= 0 && (paint || stats.frames - panelsDue >= FADE_WAIT)) flushPanels();
    requestAnimationFrame(frame);
  }

  function draw(now) {
    stats.paints++;
    ctx.globalAlpha = 1;
    ctx.fillStyle = palette.bg;
    ctx.fillRect(0, 0, width, height);

    // Grouped by alpha step: one globalAlpha change per step, not per bubble.
    for (let s = 0; s < ALPHA_STEPS; s++) {
      let set = false;
      for (const b of bubbles) {
        if (b.step !== s) continue;
        if (!set) {
          ctx.globalAlpha = (s + 0.5) / ALPHA_STEPS;
          set = true;
        }
        const sp = sprite(b);
        ctx.drawImage(sp.c, b.ix - sp.half, b.iy - sp.half, sp.size, sp.size);
        if (!b.drawn) {
          b.drawn = true;
          stats.drawn++;
        }
      }
    }

    if (settings.titles) drawTitles(now);
    ctx.globalAlpha = 1;
  }

  function alphaAt(age) {
    // A note can arrive after the timestamp of the frame that draws it: age < 0.
    if (age <= 0) return 0;
    if (age < FADE_IN_MS) return age / FADE_IN_MS;
    return Math.max(0, 1 - (age - FADE_IN_MS) / (LIFE_MS - FADE_IN_MS));
  }

  function drawTitles(now) {
    let n = 0;
    // Newest first, so the cap drops the oldest titles.
    for (let i = bubbles.length - 1; i >= 0 && n < MAX_TITLES; i--) {
      const b = bubbles[i];
      const age = Math.max(0, now - b.born);
      if (age >= TITLE_MS) break; // older still are older: none left to draw
      if (!b.title) continue;
      n++;
      if (b.ts === 0) continue;
      const row = titleRow(b);
      const w = Math.min(b.tw + 2, atlas.width / dpr);
      ctx.globalAlpha = b.ts / ALPHA_STEPS;
      ctx.drawImage(atlas, 0, row * rowH * dpr, w * dpr, rowH * dpr, Math.round(b.tx), Math.round(b.y - rowH / 2), w, rowH);
    }
  }

  // Hit-testing: newest bubble first, its circle or its title while shown.
  function hit(px, py) {
    const now = performance.now();
    for (let i = bubbles.length - 1; i >= 0; i--) {
      const b = bubbles[i];
      if (!b.url) continue;
      const dx = px - b.x;
      const dy = py - b.y;
      if (dx * dx + dy * dy <= b.r * b.r) return b;
      if (settings.titles && now - b.born < TITLE_MS && px >= b.tx && px <= b.tx + b.tw && Math.abs(dy) <= 10 * scale) return b;
    }
    return null;
  }
  canvas.addEventListener("click", (e) => {
    const b = hit(e.clientX, e.clientY);
    if (b) window.open(b.url, "_blank", "noopener");
  });
  canvas.addEventListener("mousemove", (e) => {
    canvas.classList.toggle("pointing", hit(e.clientX, e.clientY) !== null);
  });

  // ---- welcome banner
  let welcomeTimer = 0;
  let leaveTimer = 0;
  function welcome(name) {
    const el = $("welcome");
    el.textContent = name ? `Welcome, ${name}!` : "Welcome!";
    stats.banner = el.textContent;
    // Fade in for every newcomer, hold, fade out over the last second.
    el.classList.remove("shown", "leaving");
    el.hidden = false;
    void el.offsetWidth;
    el.classList.add("shown");
    clearTimeout(welcomeTimer);
    clearTimeout(leaveTimer);
    leaveTimer = setTimeout(() => el.classList.add("leaving"), WELCOME_MS - 1000);
    welcomeTimer = setTimeout(() => {
      el.hidden = true;
      el.classList.remove("shown", "leaving");
      stats.banner = "";
    }, WELCOME_MS);
  }

  // What a note is called on screen: its page, or for a new account (whose "page" is
  // the log of new users) the newcomer's name.
  function label(note) {
    if (note.kind === "new_member") return String(note.user || "a newcomer");
    return String(note.title ?? "");
  }

  // ---- log of recent edits
  // Entries are shown in batches, four times a second at most: at tens of notes a
  // second, relaying out the panel for each one costs more than the sky. The panel
  // keeps its rows and only their text changes: no element is made or dropped.
  const LOG_BATCH_MS = 250;
  let logNotes = []; // the newest LOG_LEN notes, newest first
  let logTimer = 0;
  const logRows = []; // {li, size, title, who, note}

  function logNote(note) {
    logNotes.unshift(note);
    if (logNotes.length > LOG_LEN) logNotes.length = LOG_LEN;
    if (!logTimer) logTimer = setTimeout(() => panelsLater(true, null), LOG_BATCH_MS);
  }

  // Set an element's text through its one text node.
  function setText(el, text) {
    if (!el.firstChild) el.append(text);
    else if (el.firstChild.nodeValue !== text) el.firstChild.nodeValue = text;
  }

  // ---- panel updates: with the sky's next repaint while it is moving
  let panelsDue = -1; // the frame from which updates wait, -1 when none does
  let logDue = false;
  let statusDue = null; // the latest status not yet shown

  function panelsLater(log, status) {
    if (log) logDue = true;
    if (status) statusDue = status;
    if (!running) flushPanels();
    else if (panelsDue < 0) panelsDue = stats.frames;
  }

  function flushPanels() {
    panelsDue = -1;
    if (logDue) flushLog();
    if (statusDue) renderStatus(statusDue);
    logDue = false;
    statusDue = null;
  }

  function flushLog() {
    logTimer = 0;
    const log = $("log");
    while (logRows.length < logNotes.length) {
      const li = document.createElement("li");
      const size = document.createElement("span");
      size.className = "size";
      const title = document.createElement("a");
      title.target = "_blank";
      title.rel = "noopener";
      const who = document.createElement("span");
      who.className = "who";
      li.append(size, title, who);
      log.append(li);
      logRows.push({ li, size, title, who, note: null });
    }
    logNotes.forEach((note, i) => {
      const row = logRows[i];
      if (row.note === note) return;
      row.note = note;
      const size = Number(note.size) || 0;
      const sign = note.kind === "removal" ? "−" : "+";
      setText(row.size, note.kind === "new_member" ? "new" : `${sign}${Math.abs(size)}`);
      setText(row.title, label(note));
      const url = safeUrl(note.url);
      if (url) row.title.href = url;
      else row.title.removeAttribute("href");
      setText(row.who, ` — ${String(note.user ?? "")} (${String(note.source ?? "")})`);
    });
  }

  // ---- sources, device and controls: rendered from hello and status frames
  let controlsOn = false;
  let draggingVolume = false;
  let serverMuted = false;
  const sourceRows = new Map(); // name -> {li, state, rate, toggle}

  // A status comes every second and rarely changes anything: only what differs is
  // written to the page, so an unchanged panel is not laid out again.
  function renderStatus(msg) {
    if (typeof msg.volume === "number" && !draggingVolume && $("volume").value !== String(msg.volume)) $("volume").value = String(msg.volume);
    serverMuted = msg.muted === true;
    setText($("mute"), serverMuted ? "unmute" : "mute");
    if ($("mute").getAttribute("aria-pressed") !== String(serverMuted)) $("mute").setAttribute("aria-pressed", String(serverMuted));
    const dev = $("device");
    const devHidden = msg.device === "playing" || msg.device === undefined;
    if (dev.hidden !== devHidden) dev.hidden = devHidden;
    setText(dev, msg.device === "lost" ? "audio device lost — waiting for it…"
    : msg.device === "suspended" ? "audio device resting until the next note"
    : `audio device: ${String(msg.device)}`);
    if (Array.isArray(msg.sources)) renderSources(msg.sources);
  }

  function renderSources(list) {
    const names = list.map((s) => String(s.name));
    const same = names.length === sourceRows.size && names.every((n) => sourceRows.has(n));
    if (!same) {
      const ul = $("sources");
      ul.replaceChildren();
      sourceRows.clear();
      for (const name of names) {
        const li = document.createElement("li");
        const toggle = document.createElement("input");
        toggle.type = "checkbox";
        toggle.title = `play ${name}`;
        toggle.hidden = !controlsOn;
        toggle.addEventListener("change", () => control({ source: name, enabled: toggle.checked }));
        const nameEl = document.createElement("span");
        nameEl.className = "name";
        nameEl.textContent = name;
        const state = document.createElement("span");
        state.className = "state";
        const rate = document.createElement("span");
        rate.className = "rate";
        li.append(toggle, nameEl, state, rate);
        ul.append(li);
        sourceRows.set(name, { li, state, rate, toggle });
      }
    }
    for (const s of list) {
      const row = sourceRows.get(String(s.name));
      const st = String(s.state);
      const cls = `state-${st}${s.enabled === false ? " disabled" : ""}`;
      if (row.li.className !== cls) row.li.className = cls;
      setText(row.state, st === "reconnecting" ? "reconnecting…" : st);
      const pm = Number(s.per_minute) || 0;
      setText(row.rate, `${pm < 10 ? pm.toFixed(1) : Math.round(pm)}/min`);
      if (row.toggle.checked !== (s.enabled !== false)) row.toggle.checked = s.enabled !== false;
    }
  }

  async function control(body) {
    const err = $("control-error");
    try {
      const res = await fetch("/control", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (res.ok) {
        err.hidden = true;
        return;
      }
      err.textContent = `not applied: ${(await res.text()) || res.status}`;
    } catch (e) {
      err.textContent = `not applied: ${e.message}`;
    }
    err.hidden = false;
  }

  const volume = $("volume");
  volume.addEventListener("pointerdown", () => (draggingVolume = true));
  window.addEventListener("pointerup", () => (draggingVolume = false));
  volume.addEventListener("input", () => control({ volume: Number(volume.value) }));
  $("mute").addEventListener("click", () => control({ muted: !serverMuted }));

  // ---- the feed: one websocket, reconnecting with backoff by itself
  let ws = null;
  let delay = 500;
  let everConnected = false;
  let okTimer = 0;

  function connectionBanner(text, ok) {
    const el = $("connection");
    el.textContent = text;
    el.classList.toggle("ok", ok);
    el.hidden = text === "";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(`${scheme}${location.host}/feed`);
    ws.onopen = () => {
      stats.connected = true;
      delay = 500;
      if (everConnected) {
        stats.reconnects++;
        connectionBanner("reconnected", true);
        clearTimeout(okTimer);
        okTimer = setTimeout(() => connectionBanner("", true), 3000);
      }
      everConnected = true;
    };
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return; // a frame that is not JSON is not ours to draw
      }
      onMessage(msg);
    };
    ws.onclose = () => {
      stats.connected = false;
      clearTimeout(okTimer);
      connectionBanner("connection to carillon lost — reconnecting…", false);
      // Jittered backoff so that many kiosks do not come back in lockstep.
      setTimeout(connect, delay * (0.75 + Math.random() / 2));
      delay = Math.min(delay * 2, 10000);
    };
  }

  function onMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "hello") {
      controlsOn = msg.controls === true;
      $("controls").hidden = !controlsOn;
      for (const row of sourceRows.values()) row.toggle.hidden = !controlsOn;
      statusDue = null; // older than this
      renderStatus(msg);
    } else if (msg.type === "status") {
      panelsLater(false, msg);
    } else if (msg.type === "note") {
      stats.notes++;
      if (settings.sources && !settings.sources.has(String(msg.source))) return;
      if (msg.kind === "new_member") welcome(String(msg.user ?? ""));
      if (settings.log) logNote(msg);
      if (!settings.audioOnly) addBubble(msg, performance.now());
    }
  }

  // ---- settings panel
  function applySettings() {
    document.body.classList.toggle("theme-light", settings.theme === "light");
    document.body.classList.toggle("theme-dark", settings.theme !== "light");
    readPalette();
    resetLayers();
    dirty = true;
    $("log-panel").hidden = !settings.log;
    $("legend").hidden = !settings.legend;
    canvas.hidden = settings.audioOnly;
    if (settings.audioOnly) {
      bubbles.length = 0;
      for (const g of rings.splice(0)) dropRing(g);
    }
    $("opt-titles").checked = settings.titles;
    $("opt-log").checked = settings.log;
    $("opt-legend").checked = settings.legend;
    $("opt-audio").checked = settings.audioOnly;
    $("opt-theme").value = settings.theme;
    // Keep the URL in step, so the current view can be bookmarked as a kiosk.
    const p = new URLSearchParams(location.search);
    const set = (k, on, v) => (on ? p.set(k, v) : p.delete(k));
    set("titles", !settings.titles, "off");
    set("log", !settings.log, "off");
    set("legend", !settings.legend, "off");
    set("audio", settings.audioOnly, "only");
    set("theme", settings.theme === "light", "light");
    const q = p.toString();
    history.replaceState(null, "", q ? `?${q}` : location.pathname);
    wake();
  }

  const toggle = $("settings-toggle");
  toggle.addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
  });
  for (const [id, key] of [["opt-titles", "titles"], ["opt-log", "log"], ["opt-legend", "legend"], ["opt-audio", "audioOnly"]]) {
    $(id).addEventListener("change", (e) => {
      settings[key] = e.target.checked;
      applySettings();
    });
  }
  $("opt-theme").addEventListener("change", (e) => {
    settings.theme = e.target.value === "light" ? "light" : "dark";
    applySettings();
  });
  $("fullscreen").addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => {});
  });

  // ---- read-only view for tests
  window.carillonDisplay = Object.freeze({
    get notes() { return stats.notes; },
    get bubbles() { return bubbles.length; },
    get drawn() { return stats.drawn; },
    get colours() { return { registered: palette.registered, anonymous: palette.anonymous, bot: palette.bot }; },
    get lastBubble() { return stats.lastBubble && { ...stats.lastBubble }; },
    get connected() { return stats.connected; },
    get reconnects() { return stats.reconnects; },
    get banner() { return stats.banner; },
    get frames() { return stats.frames; },
    get paints() { return stats.paints; },
  });

  window.addEventListener("resize", resize);
  applySettings();
  resize();
  connect();
})();
