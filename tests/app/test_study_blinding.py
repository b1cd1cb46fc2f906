"""Blinding: nothing but the pixels tells a real study image from a synthetic one."""

from __future__ import annotations

import io
import re
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import select

from app.db import session_scope
from app.errors import InvalidInput
from app.models import Study, StudyImage, Trial
from app.services.studies.images import blind_png, png_chunks
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    add_world,
    answer_all,
    create_study,
    tiny_run_fixture,
    truth_by_token,
)

VARYING = {"date", "content-length"}  # the clock, and the compressed size of the pixels


def _png(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


def test_encoder_strips_everything_but_the_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    plain = Image.fromarray(pixels, "L")
    info = PngImagePlugin.PngInfo()
    info.add_text("Source", "synthetic seed 12")
    noisy = [
        _png(plain),
        _png(plain, pnginfo=info, dpi=(300, 300), optimize=True),  # text, pHYs, other zlib
        _png(plain.convert("RGB"), compress_level=0),
        _png(Image.fromarray(pixels.astype("<u2") * 257)),  # I;16 with the same values
    ]
    out = [blind_png(data, 16) for data in noisy]
    assert all(o == out[0] for o in out), "same pixels must give the same bytes"
    assert png_chunks(out[0]) == [b"IHDR", b"IDAT", b"IEND"]
    decoded = Image.open(io.BytesIO(out[0]))
    assert decoded.mode == "L" and decoded.size == (16, 16) and decoded.info == {}
    assert np.array_equal(np.asarray(decoded), pixels)
    with pytest.raises(InvalidInput, match="32x32"):
        blind_png(_png(Image.new("L", (32, 32))), 16)
    with pytest.raises(InvalidInput):
        blind_png(b"not a png", 16)


def _png_facts(data: bytes) -> tuple:
    """Everything about a PNG except its pixels: chunks, header fields, zlib settings."""
    img = Image.open(io.BytesIO(data))
    idat_start = data.index(b"IDAT") + 4
    chunks, info = tuple(png_chunks(data)), tuple(sorted(img.info.items()))
    return chunks, img.mode, img.size, info, data[8:33], data[idat_start : idat_start + 2]


@pytest.fixture
def study(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    return create_study(admin, world, n_real=3, n_fake=3)


@pytest.mark.slow
def test_image_bytes_and_headers_do_not_depend_on_the_class(live_app, study):
    sid = study["id"]
    truth = truth_by_token(live_app.sessions, sid)
    seen: dict[bool, set] = {True: set(), False: set()}
    with live_app.client("reader1") as c:
        while (nxt := c.get(f"/api/studies/{sid}/next")).status_code == 200:
            body = nxt.json()
            assert set(body) == {"trial", "image", "answered", "total"}
            r = c.get(body["image"])
            assert r.status_code == 200
            headers = tuple(sorted((k, v) for k, v in r.headers.items() if k not in VARYING))
            seen[truth[body["trial"]]].add((headers, _png_facts(r.content)))
            zlib.decompress(r.content[r.content.index(b"IDAT") + 4 :][:-16])  # one IDAT stream
            answer = c.post(
                f"/api/studies/{sid}/answers", json={"trial": body["trial"], "rating": 3}
            )
            assert answer.json() == {"trial": body["trial"], "recorded": True}
    assert len(seen[True]) == len(seen[False]) == 1 and seen[True] == seen[False]
    ((headers, _),) = seen[True]
    names = {k for k, _ in headers}
    assert not names & {"etag", "last-modified", "content-disposition"}
    assert (
        dict(headers)["cache-control"] == "no-store"
        and dict(headers)["content-type"] == "image/png"
    )


def _normalise(html: str, token: str) -> str:
    html = html.replace(token, "TOKEN")
    return re.sub(r'class="reader-progress">\d+ / \d+<', 'class="reader-progress">N<', html)


@pytest.mark.slow
def test_read_page_html_differs_only_by_the_token(live_app, study):
    sid = study["id"]
    truth = truth_by_token(live_app.sessions, sid)
    pages: dict[bool, set] = {True: set(), False: set()}
    partials: dict[bool, set] = {True: set(), False: set()}
    with live_app.client("reader1") as c:
        html = c.get(f"/studies/{sid}/read").text
        for _ in range(6):
            token = re.search(r'name="trial" value="([^"]+)"', html).group(1)
            assert token in truth
            # the same trial seen again (a reader who comes back) renders the same page
            assert c.get(f"/studies/{sid}/read").text == html
            pages[truth[token]].add(_normalise(html, token))
            r = c.post(f"/studies/{sid}/read", data={"trial": token, "rating": "2"},
                       headers={"HX-Request": "true"})  # fmt: skip
            assert r.status_code == 200
            html = r.text
            nxt = re.search(r'name="trial" value="([^"]+)"', html)
            if nxt:
                partials[truth[nxt.group(1)]].add(_normalise(html, nxt.group(1)))
                html = c.get(f"/studies/{sid}/read").text
        assert "Done" in html
    assert len(pages[True]) == 1 and pages[True] == pages[False]
    assert len(partials[True] | partials[False]) == 1


@pytest.mark.slow
def test_readers_cannot_reach_the_key_other_answers_or_results(live_app, study):
    sid = study["id"]
    with session_scope(live_app.sessions) as session:
        s = session.get(Study, sid)
        image_ids = [i.id for i in s.images]
        tokens = {r.user.username: [t.token for t in r.trials] for r in s.readers}
    with live_app.client("reader2") as r2:
        answer_all(r2, sid)  # reader2's answers exist, so there is something to leak
    with live_app.client("reader1") as r1:
        forbidden = [f"/api/studies/{sid}/results", f"/studies/{sid}/results",
                     f"/api/studies/{sid}/answers.csv"]  # fmt: skip
        forbidden += [f"/studies/{sid}/images/{i}.png" for i in image_ids]
        for url in forbidden:
            assert r1.get(url).status_code == 403, url
        for token in tokens["reader2"] + tokens["reader1"]:  # others' and not yet shown
            assert r1.get(f"/study-images/{token}").status_code == 404
        for url in (f"/api/studies/{sid}/close", f"/api/studies/{sid}/readers/reader2/remove"):
            assert r1.post(url).status_code == 403
        assert r1.post("/api/studies", json={}).status_code in (403, 422)
        listed = r1.get("/api/studies").json()
        assert listed == [{"id": sid, "name": listed[0]["name"], "state": "open", "answered": 0,
                           "total": 6, "finished": False}]  # fmt: skip
        assert r1.get(f"/api/studies/{sid}").json() == listed[0]
        for url in (f"/api/studies/{sid}", f"/api/studies/{sid}/next"):
            assert r1.get(url.replace(str(sid), str(sid + 1))).status_code == 404
        page = r1.get("/studies").text
        assert "synthetic" not in page.lower() and "n_real" not in page


@pytest.mark.slow
def test_tokens_are_random_and_urls_carry_no_ids(live_app, study):
    sid = study["id"]
    with session_scope(live_app.sessions) as session:
        trials = session.scalars(select(Trial)).all()
        tokens = [t.token for t in trials]
        files = [i.path for i in session.scalars(select(StudyImage))]
    assert len(set(tokens)) == len(tokens) == 12
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)  # 192 random bits
    prefixes = {t[:3] for t in tokens}
    assert len(prefixes) >= 11  # no shared, counter-like prefix
    assert all(re.fullmatch(r"[0-9a-f]{32}\.png", f.rsplit("/", 1)[1]) for f in files)
    with live_app.client("reader1") as c:
        url = c.get(f"/api/studies/{sid}/next").json()["image"]
    assert re.fullmatch(r"/study-images/[A-Za-z0-9_-]{32}", url)
