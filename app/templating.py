"""Jinja2 pages and htmx partials: one template per page, one {% block %} per swappable region."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2_fragments.fastapi import Jinja2Blocks

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    block: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a whole page, or only `block` when htmx asks for it (Vary tells caches)."""
    ctx = {
        "user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf", ""),  # set by the login check
    }
    ctx.update(context or {})
    kwargs: dict[str, Any] = {"status_code": status_code}
    if block and is_htmx(request):
        kwargs["block_name"] = block
    response = templates.TemplateResponse(request, name, ctx, **kwargs)
    response.headers["Vary"] = "HX-Request"
    return response
