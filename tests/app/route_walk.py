"""Every route of the app, for tests that walk them all (included routers nest)."""

from __future__ import annotations


def all_routes(routes) -> list:
    """Every route, through included routers (each is one entry holding its own routes)."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        out += all_routes(included.routes) if included is not None else [route]
    return out
