"""Perceived slice-step time in the real viewer (headless Debian chromium); one JSON line.

Ingests a 512×512 phantom, serves the app, opens the viewer and measures, in the page, the
time from a key press (or wheel tick) until the new slice is on screen:
- "step": press → shown, one at a time (20 arrow presses);
- "cine": 20 presses 33 ms apart, as a held key repeats; time until the last is shown;
- "wheel": 20 wheel ticks, one at a time;
- "wl_drag_redraw": a window/level drag step (20 pointer moves), redrawn in the page.
A slice counts as shown when the stage says so (`data-shown`, the canvas viewer) or when the
<img> for it has loaded (the old htmx viewer), so the same script measures before and after.
Target: p95 step ≤ 30 ms.

    python bench/viewer_step.py [--slices 60] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slice_render import serve  # noqa: E402

USER, PASSWORD = "radiologist", "portal-venous-W200-L90"


def prepare(data: Path, slices: int) -> None:
    """Ingest one 512×512 phantom (with its mask) and create the reviewer who scrolls it."""
    from bench.app_setup import ingest_phantom

    ingest_phantom(data, slices, (USER, "reviewer", PASSWORD))


SHOWN = """(n) => {
  const s = document.querySelector('#stage');
  if (s && s.dataset.shown !== undefined) return s.dataset.shown === String(n);
  const img = document.querySelector('#slice-img');
  return !!img && img.src.includes('/slices/' + n + '.png') && img.complete && img.naturalWidth > 0;
}"""

MEASURE = """async ([kind, n0, steps, gap]) => {
  const shown = __SHOWN__;
  const until = (n, t0) => new Promise((resolve, reject) => {
    const tick = () => {
      if (shown(n)) resolve(performance.now() - t0);
      else if (performance.now() - t0 > 10000) reject(new Error('slice ' + n + ' never shown'));
      else requestAnimationFrame(tick);
    };
    tick();
  });
  const stage = document.querySelector('#stage');
  const press = () => {
    if (kind === 'wheel') {
      const el = document.querySelector('#slice-canvas') || document.querySelector('#slice-img');
      el.dispatchEvent(new WheelEvent('wheel', {deltaY: 100, bubbles: true, cancelable: true}));
    } else {
      document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
    }
  };
  if (kind === 'cine') {
    const t0 = performance.now();
    for (let i = 1; i <= steps; i++) { press(); await new Promise(r => setTimeout(r, gap)); }
    return [await until(n0 + steps, performance.now())];
  }
  const times = [];
  for (let i = 1; i <= steps; i++) {
    const t0 = performance.now(); // before the press: a synchronous draw counts too
    press();
    times.push(await until(n0 + i, t0));
    await new Promise((r) => requestAnimationFrame(() => r())); // let the frame paint
  }
  return times;
}""".replace("__SHOWN__", SHOWN)


DRAG = """() => {
  const c = document.querySelector('#slice-canvas');
  if (!c || !document.querySelector('#stage').dataset.shown) return null; // the old viewer
  const r = c.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
  const ev = (type, dx) => new PointerEvent(type, {clientX: x + dx, clientY: y, pointerId: 1,
    bubbles: true, button: 0});
  c.dispatchEvent(ev('pointerdown', 0));
  const times = [];
  for (let i = 1; i <= 20; i++) {
    const t0 = performance.now();
    c.dispatchEvent(ev('pointermove', i * 5)); // the redraw happens in the handler
    times.push(performance.now() - t0);
  }
  c.dispatchEvent(ev('pointerup', 100));
  if (document.querySelector('#hud-window').textContent !== 'W 350 · L 30') return null;
  return times;
}"""


def pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def run(url: str, steps: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/login" not in u, wait_until="domcontentloaded")
        for kind, start in (("step", 2), ("wheel", 2 + steps + 1), ("cine", 2)):
            page.goto(f"{url}/volumes/1?slice={start}")
            page.wait_for_function(SHOWN, arg=start)
            page.wait_for_timeout(400)  # let the first prefetch settle, as a reader would
            try:
                out[kind] = page.evaluate(MEASURE, [kind, start, steps, 33])
            except Exception as exc:  # noqa: BLE001 - e.g. the old viewer has no wheel
                out[kind] = None
                print(f"{kind}: {exc}".splitlines()[0], file=sys.stderr)
        page.goto(f"{url}/volumes/1?slice=2")
        page.wait_for_timeout(600)
        try:
            out["drag"] = page.evaluate(DRAG)
        except Exception:  # noqa: BLE001 - the old viewer cannot drag
            out["drag"] = None
        browser.close()
    step, wheel, cine = out["step"], out["wheel"], out["cine"]
    return {
        "step_p50_ms": pct(step, 50) if step else None,
        "step_p95_ms": pct(step, 95) if step else None,
        "step_total_ms": round(sum(step), 1) if step else None,
        "wheel_p50_ms": pct(wheel, 50) if wheel else None,
        "wheel_p95_ms": pct(wheel, 95) if wheel else None,
        "cine_lag_after_last_ms": round(cine[0], 1) if cine else None,
        "wl_drag_redraw_p95_ms": pct(out["drag"], 95) if out.get("drag") else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=60)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="medsynth-viewer-bench-"))
    proc = None
    try:
        prepare(data, args.slices)
        proc, url = serve(data)
        figures = run(url, args.steps)
        print(
            json.dumps(
                {
                    "bench": "viewer_step",
                    "image": [512, 512],
                    "steps": args.steps,
                    **figures,
                    "target_p95_ms": 30,
                    "cpus": os.cpu_count(),
                    "load1": round(os.getloadavg()[0], 2),
                }
            )
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
