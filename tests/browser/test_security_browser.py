"""The Content-Security-Policy in a real browser: pages, htmx and our scripts work, and the
browser reports no violation (issue 16)."""

from __future__ import annotations

import pytest

from app.db import session_scope
from tests.app.curation_data import curated
from tests.browser.conftest import login

pytestmark = pytest.mark.browser

VIOLATIONS = """() => window.__csp || []"""
RECORD = """() => { window.__csp = [];
  document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); }"""


def test_pages_and_htmx_run_under_the_csp(live_app, page):
    with session_scope(live_app.sessions) as s:
        volume_id = curated(s, live_app.settings).id
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.add_init_script(f"({RECORD})()")
    login(page, live_app)
    for path in ["/", "/volumes", f"/volumes/{volume_id}", "/datasets", "/jobs", "/studies",
                 "/account", "/users", "/docs"]:  # fmt: skip
        page.goto(live_app.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof htmx") == "object", path
        assert page.evaluate(VIOLATIONS) == [], path
    page.goto(f"{live_app.url}/volumes/{volume_id}")
    page.wait_for_load_state("networkidle")
    page.keyboard.press("ArrowRight")  # viewer.js + an htmx swap of the slice region
    page.wait_for_load_state("networkidle")
    assert page.evaluate(VIOLATIONS) == []
    assert not [m for m in messages if "Content Security Policy" in m], messages
