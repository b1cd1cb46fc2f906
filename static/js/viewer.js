// Slice viewer: what htmx cannot do alone — keyboard shortcuts, the slider read-out, and
// swapping the image source in place (the <img> is hx-preserve'd) so slices never flash.
(function () {
  const nav = document.getElementById("viewer-nav");
  const slider = document.getElementById("slice-slider");
  if (!nav || !slider) return;
  const out = document.getElementById("slice-out");
  const MOVES = { ArrowLeft: -1, ArrowRight: 1, j: -1, k: 1, PageUp: -10, PageDown: 10,
                  Home: -1e9, End: 1e9 };
  let pending = null; // a review key pressed while the next slice was still loading

  const stage = () => document.getElementById("stage");
  const settled = () => stage() && stage().dataset.slice === slider.value;

  function go(n) {
    n = Math.max(0, Math.min(Number(slider.max), n));
    if (String(n) === slider.value) return;
    slider.value = n;
    out.textContent = n;
    htmx.trigger(nav, "go");
  }

  function click(selector) {
    const run = () => { const el = document.querySelector(selector); if (el) el.click(); };
    if (settled()) run(); else pending = run; // act on the slice the reviewer is looking at
  }

  function typing(el) {
    return el.closest && el.closest(
      "textarea, select, [contenteditable], input:not([type=range]):not([type=radio]):not([type=checkbox])");
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key in MOVES) {
      e.preventDefault();
      go(Number(slider.value) + MOVES[e.key]);
      return;
    }
    const actions = {
      a: '#review-form button[value="approved"]', r: '#review-form button[value="rejected"]',
      n: '#review-form input[value="normal"]', t: '#review-form input[value="tumour"]',
    };
    if (actions[e.key]) click(actions[e.key]);
    else if (e.key === "o") nav.querySelector('input[name="overlay"]').click();
    else if ("12345".includes(e.key)) nav.querySelector(`input[data-key="${e.key}"]`).click();
    else return;
    e.preventDefault();
  });

  slider.addEventListener("input", () => { out.textContent = slider.value; });
  document.addEventListener("click", (e) => {
    const step = e.target.closest("[data-step]");
    const chip = e.target.closest("[data-goto]");
    if (step) go(Number(slider.value) + Number(step.dataset.step));
    else if (chip) go(Number(chip.dataset.goto));
  });
  nav.addEventListener("input", (e) => { // typing a width or level selects "Custom"
    if (e.target.name === "ww" || e.target.name === "wl") nav.querySelector('input[value="custom"]').checked = true;
  });
  nav.addEventListener("change", (e) => { // a preset shows its width and level in the inputs
    if (e.target.name === "window" && e.target.dataset.width) {
      nav.elements.ww.value = e.target.dataset.width;
      nav.elements.wl.value = e.target.dataset.level;
    }
  }, true);

  document.body.addEventListener("htmx:afterSettle", () => {
    const s = stage();
    if (!s) return;
    const img = document.getElementById("slice-img");
    if (img.getAttribute("src") !== s.dataset.src) img.src = s.dataset.src;
    document.querySelectorAll(".chip.current").forEach((c) => c.classList.remove("current"));
    const chip = document.getElementById("chip-" + s.dataset.slice);
    if (chip) { chip.classList.add("current"); chip.scrollIntoView({ block: "nearest", inline: "nearest" }); }
    for (const d of [1, -1]) { // warm the browser cache for the neighbours
      const n = Number(s.dataset.slice) + d;
      if (n >= 0 && n <= Number(s.dataset.max)) {
        new Image().src = s.dataset.src.replace(/\/slices\/\d+\.png/, `/slices/${n}.png`);
      }
    }
    if (pending && settled()) { const run = pending; pending = null; run(); }
  });
})();
