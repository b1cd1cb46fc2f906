"""What a route that answers with a file declares in the OpenAPI schema (issue 21 item 11).

FastAPI documents every route as `application/json` unless told otherwise, so a generated client
would try to parse a PNG as JSON. Routes that answer with bytes spread `**file_response(...)`
into their decorator: the real media type, a binary body, and no JSON alternative.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response


class PngResponse(Response):
    media_type = "image/png"


class ZipResponse(Response):
    media_type = "application/zip"


class CsvResponse(Response):
    media_type = "text/csv"


class OctetResponse(Response):
    media_type = "application/octet-stream"


_CLASSES: dict[str, type[Response]] = {
    c.media_type: c for c in (PngResponse, ZipResponse, CsvResponse, OctetResponse)
}


def file_response(media_type: str, what: str) -> dict[str, Any]:
    """Decorator arguments for a route answering `what` as `media_type` bytes."""
    body = {"type": "string", "format": "binary"}
    if media_type == "text/csv":
        body = {"type": "string"}
    return {
        "response_class": _CLASSES[media_type],
        "responses": {200: {"description": what, "content": {media_type: {"schema": body}}}},
    }
