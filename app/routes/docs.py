"""The API's OpenAPI schema and a readable page of it, for logged-in users only.

Not Swagger UI: it loads scripts from a CDN (the app may run offline) and an inline script
that the Content-Security-Policy refuses. The page is rendered on the server from the same
schema that /openapi.json serves.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.deps import CurrentUser
from app.templating import render

router = APIRouter()
METHODS = ("get", "post", "put", "patch", "delete")


@router.get("/openapi.json", include_in_schema=False)
def openapi_schema(request: Request, user: CurrentUser) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def _ref_name(schema: dict[str, Any] | None) -> str:
    """A short type label for a schema: Model, list[Model], or the JSON type."""
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list[{_ref_name(schema.get('items'))}]"
    if "anyOf" in schema:
        return " | ".join(_ref_name(s) for s in schema["anyOf"])
    return str(schema.get("type", "object"))


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if (op := item.get(method)) is None:
                continue
            body = op.get("requestBody", {}).get("content", {})
            ok = next((r for c, r in op.get("responses", {}).items() if c.startswith("2")), {})
            returns = ok.get("content", {}).get("application/json", {}).get("schema")
            ops.append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": (op.get("description") or "").strip(),
                "params": [(p["name"], p["in"], _ref_name(p.get("schema")), p.get("required"))
                           for p in op.get("parameters", [])],
                "body": ", ".join(f"{k}: {_ref_name(v.get('schema'))}" for k, v in body.items()),
                "returns": _ref_name(returns),
            })  # fmt: skip
    return sorted(ops, key=lambda o: (not o["path"].startswith("/api"), o["path"]))


@router.get("/docs", include_in_schema=False)
def docs_page(request: Request, user: CurrentUser) -> Response:
    spec = request.app.openapi()
    schemas = {
        name: [(prop, _ref_name(s), prop in body.get("required", []))
               for prop, s in body.get("properties", {}).items()]
        for name, body in spec.get("components", {}).get("schemas", {}).items()
    }  # fmt: skip
    ctx = {"ops": _operations(spec), "schemas": schemas, "nav": "docs"}
    return render(request, "docs.html", ctx)
