"""Server paths and process ids are for admins only (issue 21 item 7).

Run results carry what the trainer wrote (its snapshot and data files, the weights folder, the
run folder, error text naming files); reviewers get the same documents with every absolute path
taken out, so no page or JSON answer of theirs shows the server's layout. One function does it
for any document, so a new field with a path in it is covered without a change here.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "(a server folder)"
PID_KEYS = {"pid", "pids"}
# an absolute POSIX or home path: "/a/b", "~/x"; not "fid/kid", "1/2" or a lone "/"
_PATH = re.compile(r"(?<![\w.~/:])~?(?:/[\w.@+=,-]+)+/?")


def _text(value: str) -> str | None:
    """None for a string that is only a path, else the text with each path replaced."""
    stripped = value.strip()
    if stripped and _PATH.fullmatch(stripped):
        return None
    return _PATH.sub(_hide, value)


def _hide(match: re.Match[str]) -> str:
    """The placeholder, keeping a sentence's full stop or comma that ended the match."""
    found = match.group(0)
    return HIDDEN + found[len(found.rstrip(".,")) :]


def without_server_paths(doc: Any) -> Any:
    """A copy of `doc` (JSON-like) without absolute paths (in values and keys) or pids."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            name = (_text(key) or HIDDEN) if isinstance(key, str) else key
            out[name] = None if key in PID_KEYS else without_server_paths(value)
        return out
    if isinstance(doc, list | tuple):
        return [without_server_paths(v) for v in doc]
    if isinstance(doc, str):
        return _text(doc)
    return doc
