// Decisions land on the slice they were made on (issue 22). A key or button press is queued
// with its own slice and the reviewer's own decision there as the screen showed it
// (`expected`); the queue sends one request at a time and the server refuses a stale one
// (409) instead of guessing. With "then go to the next slice" the viewer moves on at once:
// the queued entry already names its slice. A repeated press stores nothing new (server).
(function () {
  const V = window.medsynthViewer;
  if (!V) return;
  const D = V.data, $ = (id) => document.getElementById(id);
  const NAMES = ["none", "approved", "rejected"], CODES = { approved: 1, rejected: 2 };
  const queue = [];
  let busy = false;

  function csrf() {
    const m = (document.body.getAttribute("hx-headers") || "").match(/"X-CSRF-Token":\s*"([^"]*)"/);
    return m ? m[1] : "";
  }
  function pendingOn(i) { return queue.some((e) => e.slice === i); }
  function show(i, code, cls) {
    D.map[i][2] = D.map[i][3] = code;
    V.paintCell(i, cls);
    if (i === V.index()) V.hud();
  }
  function mark() { $("viewer").dataset.queued = String(queue.length + (busy ? 1 : 0)); }

  function enqueue(entry) {
    const i = entry.slice;
    entry.expected = NAMES[D.map[i][3]];
    entry.before = [D.map[i][2], D.map[i][3]];
    show(i, CODES[entry.decision], "pending");
    queue.push(entry);
    V.lastPost = entry;
    pump();
  }
  function pump() {
    mark();
    if (busy || !queue.length) return;
    busy = true;
    const e = queue.shift();
    const body = { decision: e.decision, note: e.note || "", expected: e.expected };
    if (e.label) body.label = e.label;
    fetch(`/api/volumes/${D.id}/slices/${e.slice}/review`, {
      method: "PUT", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    }).then((r) => r.json().catch(() => ({})).then((b) => {
      if (r.ok) confirmed(e, b);
      else if (r.status === 401) expired(e);
      else refused(e, b.detail || `HTTP ${r.status}: nothing was stored for slice ${e.slice + 1}`);
    }), () => refused(e, `The server did not answer: nothing was stored for slice ${e.slice + 1}.`))
      .finally(() => { busy = false; pump(); });
  }
  function confirmed(e, b) {
    if (!pendingOn(e.slice)) {
      V.paintCell(e.slice);
      if (V.panelSlice() === e.slice && V.index() === e.slice) V.reloadPanel();
    }
    if (b.progress) progress(b.progress);
  }
  function drop(slice) { // a later entry on a refused slice would be refused too
    for (let k = queue.length - 1; k >= 0; k--) if (queue[k].slice === slice) queue.splice(k, 1);
  }
  function refused(e, message) { // back to what the slice showed before this press
    drop(e.slice);
    [D.map[e.slice][2], D.map[e.slice][3]] = e.before;
    V.paintCell(e.slice);
    V.hud();
    V.toast(message);
    if (V.index() === e.slice) V.reloadPanel();
  }
  function expired(e) { // nothing more can be stored: undo every queued mark, keep the first
    for (const q of queue.splice(0).reverse().concat([e])) {
      D.map[q.slice][2] = q.before[0]; D.map[q.slice][3] = q.before[1];
      V.paintCell(q.slice);
    }
    V.hud();
    if (V.notStored) V.notStored(e);
  }
  function progress(p) {
    const bar = $("progress");
    if (!bar) return;
    const pct = (n) => (p.total ? (100 * n) / p.total : 0) + "%";
    bar.querySelector(".progress .approved").style.width = pct(p.approved);
    bar.querySelector(".progress .rejected").style.width = pct(p.rejected);
    const counts = bar.querySelectorAll(".counts > span");
    counts[0].textContent = `${p.approved} approved`;
    counts[1].textContent = `${p.rejected} rejected`;
    counts[2].textContent = `${p.unreviewed} unreviewed`;
  }

  // A decision on `slice` (the one on screen for a key); label and note from the panel only
  // when the panel shows that slice. `advance`: then show the next slice at once.
  function decide(slice, decision, advance) {
    const form = $("review-form"), fresh = form && V.panelSlice() === slice;
    const checked = fresh && form.querySelector("input[name=label]:checked");
    enqueue({ volume: D.id, slice, decision, label: checked ? checked.value : null,
              note: fresh ? form.elements.note.value : "" });
    if (advance && $("advance").checked && slice === V.index()) V.go(slice + 1);
  }
  document.addEventListener("click", (ev) => {
    const button = ev.target.closest && ev.target.closest("#review-form button[name=decision]");
    if (!button) return;
    ev.preventDefault(); // the queue sends it (a page without scripts posts the form)
    decide(Number(button.form.dataset.slice), button.value, true);
  });

  V.decide = decide;
  V.post = enqueue; // viewer-session.js: "Store it now" after a new login
  V.pendingOn = pendingOn;
  mark();
})();
