// The viewer's side business (loaded after viewer-decisions.js): the user's own presets, and a
// decision the server refused because the session had expired — shown as NOT STORED, kept in
// sessionStorage across the login, and offered again on the same slice.
(function () {
  const V = window.medsynthViewer;
  if (!V) return;
  const $ = (id) => document.getElementById(id);

  // ---- presets ----------------------------------------------------------------------------
  function savePrefs(prefs) {
    return fetch("/api/viewer/settings", {
      method: "PUT", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(prefs),
    }).then((r) => r.json().then((b) => { if (!r.ok) throw new Error(b.detail); V.data.prefs = b; return b; }));
  }
  $("preset-save").addEventListener("click", () => {
    const name = prompt("Name of this preset (W " + Math.round(V.win().w) + " / L " + Math.round(V.win().l) + ")");
    if (!name) return;
    const presets = V.data.prefs.presets.filter((p) => p.name !== name)
      .concat([{ name, width: Math.round(V.win().w), level: Math.round(V.win().l) }]);
    savePrefs({ ...V.data.prefs, presets }).then(() => location.assign(V.pageUrl().replace(/window=[^&]*(&ww=[^&]*&wl=[^&]*)?/, "window=" + encodeURIComponent(name))), (e) => V.toast(e.message));
  });
  $("preset-default").addEventListener("click", () => {
    const name = V.data.builtins.includes(V.win().name) || V.data.prefs.presets.some((p) => p.name === V.win().name) ? V.win().name : null;
    if (!name) { V.toast("Save this window as a preset first."); return; }
    savePrefs({ ...V.data.prefs, default_window: name }).then(() => V.toast(`The viewer now opens with ${name}.`, "ok"), (e) => V.toast(e.message));
  });

  // ---- a decision the server did not store (expired session) ------------------------------
  const UNSTORED = "medsynth-unstored";
  function csrf() { const m = (document.body.getAttribute("hx-headers") || "").match(/"X-CSRF-Token":\s*"([^"]*)"/); return m ? m[1] : ""; }
  function notStored(entry, afterLogin) {
    const box = $("not-stored");
    const what = `${entry.decision === "approved" ? "approve" : "reject"} of slice ${entry.slice + 1} (${entry.label || "label from mask"})`;
    box.hidden = false;
    if (!afterLogin) {
      const login = "/login?next=" + encodeURIComponent(V.pageUrl());
      box.innerHTML = `<b>NOT STORED.</b> Your session expired, so the ${what} did not reach the server. ` +
        `<a class="button small" href="${login}">Log in again</a> — you come back to this slice and can store it.`;
      return;
    }
    box.innerHTML = `<b>NOT STORED yet:</b> the ${what} was refused because your session had expired. ` +
      `<button type="button" class="small" id="unstored-store">Store it now</button> <button type="button" class="secondary small" id="unstored-drop">Discard</button>`;
    $("unstored-drop").onclick = () => { sessionStorage.removeItem(UNSTORED); box.hidden = true; };
    $("unstored-store").onclick = () => {
      sessionStorage.removeItem(UNSTORED);
      box.hidden = true;
      V.go(entry.slice, true);
      V.post({ volume: entry.volume, slice: entry.slice, decision: entry.decision, label: entry.label, note: entry.note });
    };
  }
  V.notStored = (entry) => { // viewer-decisions.js: the API answered 401
    const kept = { volume: entry.volume, slice: entry.slice, decision: entry.decision, label: entry.label, note: entry.note };
    sessionStorage.setItem(UNSTORED, JSON.stringify(kept));
    notStored(kept, false);
  };
  document.body.addEventListener("htmx:beforeOnLoad", (ev) => {
    const to = ev.detail.xhr.getResponseHeader("HX-Redirect");
    if (!to || !to.startsWith("/login")) return;
    ev.preventDefault(); // the panel needs a new login: come back to this slice
    location.assign("/login?next=" + encodeURIComponent(V.pageUrl()));
  });

  const unstored = JSON.parse(sessionStorage.getItem(UNSTORED) || "null");
  if (unstored && unstored.volume === V.data.id) notStored(unstored, true);
})();
