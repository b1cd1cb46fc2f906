"""The API says what it returns (issue 21 item 11): every `/api` route that answers with a file
declares its real media type and no JSON, every JSON answer has a schema, and real answers
match what /openapi.json declares."""

from __future__ import annotations

import typing

from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from app.main import create_app
from tests.app.dicom_files import ct_volume, write_series, zip_folder
from tests.app.nifti_files import phantom_pair
from tests.app.route_walk import all_routes

OK = ("200", "201", "202")


def _api_routes(app) -> list[APIRoute]:
    routes = all_routes(app.routes)
    return [r for r in routes if isinstance(r, APIRoute) and r.path.startswith("/api")]


def _returns(route: APIRoute) -> object:
    return typing.get_type_hints(route.endpoint).get("return")


def _is_class(value: object, base: type) -> bool:
    return isinstance(value, type) and issubclass(value, base)


def _content(op: dict) -> dict:
    """Media type → schema of the operation's success answers."""
    out = {}
    for code in OK:
        for media, body in op["responses"].get(code, {}).get("content", {}).items():
            out[media] = body.get("schema")
    return out


def test_file_routes_declare_their_media_type_and_json_routes_a_schema(live_app, admin):
    spec = admin.get("/openapi.json").json()
    routes = _api_routes(create_app(live_app.settings))
    files, typed = [], []
    for route in routes:
        ret = _returns(route)
        for method in route.methods:
            op = spec["paths"][route.path][method.lower()]
            content = _content(op)
            if _is_class(ret, Response) and not _is_class(ret, JSONResponse):
                if route.status_code == 204:
                    continue  # no body at all
                files.append(route.path)
                assert content and "application/json" not in content, (route.path, content)
                assert all(s and s.get("type") == "string" for s in content.values()), route.path
            elif "application/json" in content:
                typed.append(route.path)
                assert content["application/json"], (method, route.path, "no schema")
    assert len(files) >= 13, files  # PNG, zip, CSV, raw slices, the snapshot file
    assert len(typed) >= 50, typed
    for path, method in (("/api/volumes", "post"), ("/api/utility-runs/{run_id}/cancel", "post"),
                         ("/api/utility-runs/{run_id}/results.json", "get")):  # fmt: skip
        schema = _content(spec["paths"][path][method])["application/json"]
        assert "$ref" in str(schema), (path, schema)


def _resolve(spec: dict, schema: dict) -> list[dict]:
    """The object schemas a response schema allows ($ref and anyOf resolved)."""
    if "$ref" in schema:
        return [spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]]
    return [s for part in schema.get("anyOf", []) for s in _resolve(spec, part)]


def _fits(spec: dict, schema: dict, doc: dict) -> bool:
    """Whether `doc` has every required field of one of the allowed object schemas."""
    return any(set(s.get("required", [])) <= set(doc) for s in _resolve(spec, schema))


def test_real_answers_match_the_declared_types(live_app, admin, tmp_path):
    spec = admin.get("/openapi.json").json()
    upload = _content(spec["paths"]["/api/volumes"]["post"])["application/json"]
    _, volume, mask = phantom_pair(tmp_path, n=1)
    files = {"file": (volume.name, volume.read_bytes()), "mask": (mask.name, mask.read_bytes())}
    r = admin.post("/api/volumes", files=files)
    assert r.status_code == 201 and _fits(spec, upload, r.json()), r.text
    write_series(tmp_path / "ct", ct_volume(n=4))
    dicom = zip_folder(tmp_path / "ct", tmp_path / "ct.zip")
    r2 = admin.post("/api/volumes", files={"file": ("ct.zip", dicom.read_bytes())})
    assert r2.status_code == 201 and "volumes" in r2.json() and _fits(spec, upload, r2.json())
    vid = r.json()["id"]
    base = "/api/volumes/{volume_id}"
    for path, url in (
        (f"{base}/slices/{{index}}.png", f"/api/volumes/{vid}/slices/3.png"),
        (f"{base}/slices/{{index}}.raw", f"/api/volumes/{vid}/slices/3.raw"),
        (f"{base}/reformat/{{plane}}.png", f"/api/volumes/{vid}/reformat/coronal.png"),
    ):
        declared = list(_content(spec["paths"][path]["get"]))
        got = admin.get(url)
        assert got.status_code == 200, (url, got.text[:200])
        assert got.headers["content-type"].split(";")[0] in declared, (url, declared)
