// Slice viewer, PACS-like: the browser windows raw int16 slices itself (W/L drag never waits
// for the server), prefetches neighbours for wheel / held-key cine, zooms and pans with a CSS
// transform, probes HU through /probe, and loads the review panel (htmx) once scrolling pauses.
(function () {
  const dataEl = document.getElementById("viewer-data");
  if (!dataEl) return;
  const D = JSON.parse(dataEl.textContent);
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), canvas = $("slice-canvas"), nav = $("viewer-nav"), slider = $("slice-slider");
  const g = canvas.getContext("2d"), img = g.createImageData(D.cols, D.rows);
  const N = D.n, BLOCK = 8, KEEP = 80;
  const LIVER = [64, 224, 112], TUMOUR = [255, 150, 40];
  const cache = new Map(), inflight = new Map();
  let index = D.index, dir = 1, overlay = D.overlay, pending = null, panelTimer = null;
  let win = { name: D.window.name, w: D.window.width, l: D.window.level };
  let view = { zoom: 1, x: 0, y: 0 }, lut = null, lutKey = "";
  const V = { data: D, go: (n, quiet) => go(n, quiet), lastPost: null, index: () => index,
              pageUrl: () => pageUrl(), toast: (m, k) => toast(m, k), win: () => win,
              hud: () => hud(), panelSlice: () => panelSlice(), reloadPanel: () => reloadPanel(),
              paintCell: (i, cls) => paintCell(i, cls), pendingOn: () => false, decide: null };

  // ---- slices: fetch, cache, prefetch -------------------------------------------------
  function getBytes(url) {
    return fetch(url, { credentials: "same-origin" }).then((r) => {
      if (!r.ok) throw new Error(r.status === 401 ? "session expired" : "HTTP " + r.status);
      return r.arrayBuffer();
    });
  }
  function fetchSlice(i) { // slices come in aligned blocks of BLOCK: one request each
    if (cache.has(i)) return Promise.resolve(cache.get(i));
    const start = i - (i % BLOCK);
    if (inflight.has(start)) return inflight.get(start).then(() => cache.get(i));
    const count = Math.min(BLOCK, N - start), area = D.rows * D.cols;
    const url = `/api/volumes/${D.id}/slices/${start}.raw?count=${count}` + (D.hasMask ? "&mask=true" : "");
    const p = getBytes(url).then((buf) => {
      for (let k = 0; k < count; k++) {
        const mask = D.hasMask ? new Uint8Array(buf, 2 * area * count + k * area, area) : null;
        cache.set(start + k, { hu: new Int16Array(buf, 2 * area * k, area), mask });
      }
    }).finally(() => inflight.delete(start));
    inflight.set(start, p);
    return p.then(() => cache.get(i));
  }
  function prefetch() {
    const here = index - (index % BLOCK);
    for (const d of [0, 1, 2, -1, 3, -2]) {
      const start = here + dir * d * BLOCK;
      if (start < 0 || start >= N || cache.has(start) || inflight.has(start)) continue;
      if (inflight.size >= 3) return;
      fetchSlice(start).then(prefetch, () => {});
    }
    if (cache.size > KEEP) { // forget the slices farthest from here
      const far = [...cache.keys()].sort((a, b) => Math.abs(b - index) - Math.abs(a - index));
      far.slice(0, cache.size - KEEP).forEach((k) => cache.delete(k));
    }
  }

  // ---- drawing --------------------------------------------------------------------------
  function table() {
    const key = win.w + "," + win.l;
    if (key !== lutKey) {
      lut = new Uint8ClampedArray(65536);
      const low = win.l - win.w / 2, k = 255 / win.w;
      for (let v = -32768; v < 32768; v++) lut[v & 0xffff] = (v - low) * k;
      lutKey = key;
    }
    return lut;
  }
  function outline(m, px) {
    const C = D.cols, R = D.rows;
    for (let p = 0; p < m.length; p++) {
      const v = m[p];
      if (!v) continue;
      const r = (p / C) | 0, c = p - r * C;
      const up = r ? m[p - C] : 0, dn = r < R - 1 ? m[p + C] : 0;
      const lf = c ? m[p - 1] : 0, rt = c < C - 1 ? m[p + 1] : 0;
      const col = v === 2 && (up !== 2 || dn !== 2 || lf !== 2 || rt !== 2) ? TUMOUR
        : !up || !dn || !lf || !rt ? LIVER : null;
      if (col) { px[4 * p] = col[0]; px[4 * p + 1] = col[1]; px[4 * p + 2] = col[2]; }
    }
  }
  function draw() {
    const e = cache.get(index);
    if (!e) return false;
    const t = table(), px = img.data, hu = e.hu;
    for (let p = 0, q = 0; p < hu.length; p++, q += 4) {
      const v = t[hu[p] & 0xffff];
      px[q] = px[q + 1] = px[q + 2] = v; px[q + 3] = 255;
    }
    if (overlay && e.mask) outline(e.mask, px);
    g.putImageData(img, 0, 0);
    stage.dataset.shown = index;
    return true;
  }

  // ---- moving through the volume -------------------------------------------------------
  function go(n, quiet) {
    n = Math.max(0, Math.min(N - 1, n));
    if (n === index && stage.dataset.shown === String(n)) return;
    dir = n >= index ? 1 : -1;
    index = n;
    stage.dataset.slice = n;
    slider.value = n;
    hud();
    if (!draw()) fetchSlice(n).then(() => { if (index === n) draw(); }, (e) => toast(e.message));
    prefetch();
    if (!quiet) schedulePanel(false);
  }
  function hud() {
    const [liver, tumour, decision] = D.map[index];
    $("hud-slice").textContent = index + 1;
    $("slice-out").textContent = `${index + 1} / ${N}`;
    const a = D.affine[2];
    $("hud-z").textContent = `z ${(a[2] * index + a[3]).toFixed(1)} mm`;
    $("hud-mask").textContent = D.hasMask ? (tumour ? "tumour in mask" : liver ? "liver in mask" : "") : "";
    const state = ["unreviewed", "approved", "rejected"][decision];
    const badge = $("stage-state");
    badge.className = "stage-state " + state;
    badge.textContent = decision ? state : "not reviewed";
    document.querySelectorAll("#vmap i.current").forEach((c) => c.classList.remove("current"));
    const cell = $("vmap").children[index];
    if (cell) cell.classList.add("current");
    document.querySelectorAll(".plane .axial-line").forEach((l) => {
      l.style.top = `${(100 * (N - 1 - index + 0.5)) / N}%`;
    });
  }
  function paintCell(i, cls) { // the volume map's cell: the decision shown, maybe "pending"
    const cell = $("vmap").children[i], code = D.map[i][2];
    if (!cell) return;
    cell.classList.remove("approved", "rejected", "pending");
    if (code) cell.classList.add(code === 1 ? "approved" : "rejected");
    if (cls) cell.classList.add(cls);
  }
  function nextWhere(test) {
    for (let d = 1; d < N; d++) { const i = (index + d) % N; if (test(D.map[i])) return i; }
    return null;
  }

  // ---- the review panel (htmx) ---------------------------------------------------------
  function pageUrl() {
    const q = new URLSearchParams({ slice: index });
    if (D.reveal) q.set("reveal", "1");
    if (D.builtins.includes(win.name)) q.set("window", win.name);
    else { q.set("window", "custom"); q.set("ww", Math.round(win.w)); q.set("wl", Math.round(win.l)); }
    if (overlay) q.set("overlay", "mask");
    return `/volumes/${D.id}?${q}`;
  }
  function panelSlice() { const p = $("review"); return p ? Number(p.dataset.slice) : -1; }
  function schedulePanel(now) {
    clearTimeout(panelTimer);
    panelTimer = setTimeout(() => {
      history.replaceState(null, "", pageUrl());
      if (panelSlice() === index) { runPending(); return; }
      reloadPanel();
    }, now ? 0 : 150);
  }
  function reloadPanel() {
    const q = D.reveal ? "?reveal=1" : "";
    htmx.ajax("GET", `/volumes/${D.id}/slices/${index}/panel${q}`, { target: "#review", swap: "outerHTML" });
  }
  function runPending() {
    if (!pending) return;
    if (pending.slice !== index) { pending = null; return; } // moved on: never act elsewhere
    if (panelSlice() === index) { const run = pending.run; pending = null; run(); }
  }
  function later(run) { // on the slice on screen, once its panel is there
    pending = { slice: index, run };
    if (panelSlice() === index) runPending(); else schedulePanel(true);
  }

  // ---- window / level, zoom, pan, probe -------------------------------------------------
  function setWindow(w, l, name) {
    win = { name: name || `${Math.round(w)},${Math.round(l)}`, w: Math.max(1, w), l };
    $("hud-window").textContent = `W ${Math.round(win.w)} · L ${Math.round(win.l)}`;
    nav.elements.ww.value = Math.round(win.w);
    nav.elements.wl.value = Math.round(win.l);
    const radio = nav.querySelector(`input[name=window][value="${CSS.escape(win.name)}"]`)
      || nav.querySelector('input[name=window][value="custom"]');
    radio.checked = true;
    draw();
    planes();
  }
  function transform() {
    canvas.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  }
  function zoomBy(f) { view.zoom = Math.min(16, Math.max(0.5, view.zoom * f)); transform(); }
  function pixelAt(ev) {
    const r = canvas.getBoundingClientRect(); // the image is letterboxed (object-fit: contain)
    const s = Math.min(r.width / D.cols, r.height / D.rows);
    const col = Math.floor((ev.clientX - r.left - (r.width - D.cols * s) / 2) / s);
    const row = Math.floor((ev.clientY - r.top - (r.height - D.rows * s) / 2) / s);
    return row >= 0 && row < D.rows && col >= 0 && col < D.cols ? { row, col } : null;
  }
  let probeTimer = null, probeSeq = 0;
  function probe(ev) {
    const at = pixelAt(ev);
    clearTimeout(probeTimer);
    if (!at) { $("hud-probe").textContent = ""; return; }
    probeTimer = setTimeout(() => {
      const seq = ++probeSeq;
      fetch(`/api/volumes/${D.id}/slices/${index}/probe?row=${at.row}&col=${at.col}`)
        .then((r) => (r.ok ? r.json() : null)).then((p) => {
          if (!p || seq !== probeSeq) return;
          const mm = p.position_mm.map((v) => v.toFixed(1)).join(", ");
          $("hud-probe").textContent = `${p.hu} HU${p.label ? " · " + p.label : ""}\n(${mm}) mm`;
          stage.dataset.probe = JSON.stringify(p);
        });
    }, 25);
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, w: win.w, l: win.l, vx: view.x, vy: view.y,
             pan: ev.shiftKey || ev.button === 1 };
    try { canvas.setPointerCapture(ev.pointerId); } catch (e) { /* a synthetic pointer */ }
    ev.preventDefault();
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) { probe(ev); return; }
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (drag.pan) { view.x = drag.vx + dx; view.y = drag.vy + dy; transform(); }
    else setWindow(drag.w + dx * 2, drag.l + dy * 2); // as OHIF: right widens, down raises L
  });
  canvas.addEventListener("pointerup", (ev) => {
    const moved = drag && Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3;
    const at = !moved && pixelAt(ev);
    if (at) { cross = { y: D.ny - 1 - at.row, x: D.nx - 1 - at.col }; planes(); } // a click
    else if (drag && !drag.pan) schedulePanel(false);
    drag = null;
  });
  canvas.addEventListener("pointerleave", () => { if (!drag) $("hud-probe").textContent = ""; });
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    if (ev.ctrlKey) zoomBy(ev.deltaY < 0 ? 1.15 : 1 / 1.15);
    else go(index + (ev.deltaY > 0 ? 1 : -1));
  }, { passive: false });

  // ---- coronal / sagittal reformats ----------------------------------------------------
  let planeTimer = null, cross = { y: null, x: null }; // reformats pass through the last click
  function planes() {
    clearTimeout(planeTimer);
    planeTimer = setTimeout(() => {
      const w = `${Math.round(win.w)},${Math.round(win.l)}`;
      for (const [plane, size, mm] of [["coronal", D.nx, D.spacing[0]], ["sagittal", D.ny, D.spacing[1]]]) {
        const el = $("plane-" + plane);
        const at = plane === "coronal" ? cross.y : cross.x;
        el.src = `/api/volumes/${D.id}/reformat/${plane}.png?window=${w}` + (at === null ? "" : `&at=${at}`);
        el.style.aspectRatio = `${size * mm} / ${N * D.spacing[2]}`;
      }
    }, 200);
  }
  document.querySelectorAll(".plane img").forEach((el) => el.addEventListener("click", (ev) => {
    const r = el.getBoundingClientRect();
    go(N - 1 - Math.floor(((ev.clientY - r.top) / r.height) * N));
  }));

  document.body.addEventListener("htmx:afterSettle", () => {
    const panel = $("review");
    if (!panel) return;
    const i = Number(panel.dataset.slice), codes = { approved: 1, rejected: 2 };
    if (!V.pendingOn(i)) { // a queued decision there is newer than this panel
      D.map[i][2] = codes[panel.dataset.decision] || 0;
      D.map[i][3] = codes[panel.dataset.mine] || 0;
      paintCell(i);
    }
    $("advance").checked = localStorage.getItem("medsynth-advance") === "1";
    if (i === index) hud(); else schedulePanel(false);
    runPending();
  });
  let lastToast = "";
  function toast(message, kind) { // once per message while it is on screen, not per slice
    if (!window.medsynthToast || message === lastToast) return;
    lastToast = message;
    setTimeout(() => { lastToast = ""; }, 6000);
    window.medsynthToast(message, kind);
  }

  // ---- keyboard, controls ---------------------------------------------------------------
  const MOVES = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -1, ArrowDown: 1, j: -1, k: 1,
                  PageUp: -10, PageDown: 10, Home: -1e9, End: 1e9 };
  const LABELS = { n: '#review-form input[value="normal"]', t: '#review-form input[value="tumour"]' };
  function typing(el) {
    return el.closest && el.closest("textarea, select, [contenteditable], input:not([type=range]):not([type=radio]):not([type=checkbox])");
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const k = e.key;
    if (k in MOVES) go(index + MOVES[k]);
    else if ((k === "a" || k === "r") && V.decide) V.decide(index, k === "a" ? "approved" : "rejected", true);
    else if (LABELS[k]) later(() => document.querySelector(LABELS[k]).click());
    // u / s: not decided by me (m[3]), whatever the others did
    else if (k === "u") { const i = nextWhere((m) => !m[3]); if (i !== null) go(i); else toast("You have decided every slice.", "ok"); }
    else if (k === "s") { const i = nextWhere((m) => m[0] && !m[3]) ?? nextWhere((m) => m[0]); if (i !== null) go(i); }
    else if (k === "o") nav.elements.overlay.click();
    else if (k === "p") nav.elements.pixels.click();
    else if (k === "0") $("view-reset").click();
    else if (k === "+" || k === "=") zoomBy(1.25);
    else if (k === "-") zoomBy(0.8);
    else if (/^[1-9]$/.test(k)) { const r = nav.querySelectorAll("input[name=window][data-width]")[Number(k) - 1]; if (r) r.click(); }
    else return;
    e.preventDefault();
  });
  nav.addEventListener("submit", (e) => e.preventDefault());
  slider.addEventListener("input", () => go(Number(slider.value)));
  document.addEventListener("click", (e) => {
    const step = e.target.closest("[data-step]"), cell = e.target.closest("[data-goto]");
    if (step) go(index + Number(step.dataset.step));
    else if (cell) go(Number(cell.dataset.goto));
  });
  nav.addEventListener("change", (e) => {
    const t = e.target;
    if (t.name === "window" && t.dataset.width) setWindow(Number(t.dataset.width), Number(t.dataset.level), t.value);
    else if (t.name === "ww" || t.name === "wl") setWindow(Number(nav.elements.ww.value), Number(nav.elements.wl.value));
    else if (t.name === "overlay") { overlay = t.checked; draw(); }
    else if (t.name === "pixels") { smoothing(t.checked); return; }
    else return;
    schedulePanel(false);
  });
  $("view-reset").addEventListener("click", () => {
    view = { zoom: 1, x: 0, y: 0 }; transform();
    const d = nav.querySelector("input[name=window][data-width]");
    const first = D.window;
    setWindow(first.width, first.level, first.name);
    if (d && !nav.querySelector("input[name=window]:checked")) d.checked = true;
  });
  document.addEventListener("change", (e) => {
    if (e.target.id === "advance") localStorage.setItem("medsynth-advance", e.target.checked ? "1" : "0");
  });

  // smooth (bilinear) between voxels when zoomed, like a PACS; "Pixels" shows them square
  function smoothing(exact) {
    canvas.classList.toggle("pixelated", exact);
    localStorage.setItem("medsynth-pixels", exact ? "1" : "0");
  }

  // ---- start --------------------------------------------------------------------------------
  nav.elements.pixels.checked = localStorage.getItem("medsynth-pixels") === "1";
  smoothing(nav.elements.pixels.checked);
  $("advance").checked = localStorage.getItem("medsynth-advance") === "1";
  setWindow(win.w, win.l, win.name);
  stage.dataset.slice = index;
  hud();
  fetchSlice(index).then(() => { if (stage.dataset.shown !== String(index)) draw(); }, (e) => toast(e.message));
  prefetch();
  // for viewer-session.js (presets, decisions refused for an expired session)
  window.medsynthViewer = V;
})();
