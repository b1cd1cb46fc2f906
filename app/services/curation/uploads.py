"""Receiving a volume upload: multipart streamed straight to disk, size-limited, safely named."""

from __future__ import annotations

import re
import shutil
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import InsufficientStorage, InvalidInput, PayloadTooLarge
from app.imaging.nifti import nifti_stem
from app.settings import Settings

FILE_FIELDS = ("file", "mask")
_UNSAFE = re.compile(r"[^\w.+-]+")
_FLUSH_BYTES = 1024**2


def safe_filename(name: str) -> str:
    """A plain .nii/.nii.gz base name; a path, a hidden name or another suffix is InvalidInput."""
    shown = name if len(name) <= 120 else name[:117] + "..."
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise InvalidInput(
            f"file name {shown!r} contains a path or starts with a dot; "
            "send a plain file name such as 'volume-0.nii.gz'"
        )
    clean = _UNSAFE.sub("_", unicodedata.normalize("NFKC", name)).strip("_")[:200]
    if nifti_stem(clean) is None:
        raise InvalidInput(f"file {shown!r}: only .nii and .nii.gz files are accepted")
    return clean


def limit_message(limit: int) -> str:
    size = f"{limit / 1024**2:,.1f} MiB"
    return f"upload is larger than the limit of {size} (MEDSYNTH_MAX_UPLOAD_BYTES)"


@dataclass
class StagedUpload:
    """Files of one upload in a private folder; `cleanup` removes whatever is left of it."""

    folder: Path
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)  # field → (path, name)

    def path(self, name: str) -> Path | None:
        return self.files[name][0] if name in self.files else None

    def filename(self, name: str) -> str | None:
        return self.files[name][1] if name in self.files else None

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Parts:
    """Collects python-multipart callbacks as events the async loop then acts on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self._field, self._value, self._headers = b"", b"", {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": lambda: setattr(self, "_headers", {}),
            "on_header_field": lambda d, s, e: setattr(self, "_field", self._field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.events.append(("begin", self._headers)),
            "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.events.append(("end", None)),
        }

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""


class _Writer:
    """Writes file parts into the staging folder, counting bytes against the limit."""

    def __init__(self, staged: StagedUpload, limit: int) -> None:
        self.staged, self.limit, self.total = staged, limit, 0
        self.handle: BinaryIO | None = None
        self.buffer = bytearray()

    async def begin(self, headers: dict) -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        field_name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in params:
            return  # a plain form field (e.g. csrf_token): ignored
        if field_name not in FILE_FIELDS:
            raise InvalidInput(f"unexpected file field {field_name!r}; send 'file' and 'mask'")
        if field_name in self.staged.files:
            raise InvalidInput(f"more than one {field_name!r} file in the upload")
        name = safe_filename(params[b"filename"].decode("utf-8", "replace"))
        path = self.staged.folder / field_name / name
        path.parent.mkdir()
        self.staged.files[field_name] = (path, name)
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in end()/close()

    async def data(self, chunk: bytes) -> None:
        if self.handle is None:
            return
        self.total += len(chunk)
        if self.total > self.limit:
            raise PayloadTooLarge(limit_message(self.limit))
        self.buffer += chunk
        if len(self.buffer) >= _FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self.handle is not None and self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            await anyio.to_thread.run_sync(self.handle.write, data)

    async def end(self) -> None:
        await self.flush()
        self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


async def receive_upload(
    settings: Settings, content_type: str, content_length: int | None, body: AsyncIterator[bytes]
) -> StagedUpload:
    """Stream a multipart body with parts `file` (required) and `mask` into tmp/; bounded memory."""
    limit = settings.max_upload_bytes
    if content_length is not None and content_length > limit + 1024**2:
        raise PayloadTooLarge(limit_message(limit))
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidInput("send the volume as multipart/form-data with a 'file' part")
    staged = StagedUpload(settings.tmp_dir / f"upload-{uuid.uuid4().hex}")
    staged.folder.mkdir(parents=True)
    writer, parts = _Writer(staged, limit), _Parts()
    try:
        parser = MultipartParser(params[b"boundary"], parts.callbacks())
        async for chunk in body:
            parser.write(chunk)
            await _handle(writer, parts)
        parser.finalize()
        await _handle(writer, parts)
        writer.close()
        if "file" not in staged.files:
            raise InvalidInput("the upload has no 'file' part (a .nii or .nii.gz volume)")
        return staged
    except BaseException as exc:
        writer.close()
        staged.cleanup()
        if isinstance(exc, MultipartParseError):
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
        if isinstance(exc, OSError):
            raise InsufficientStorage(f"could not store the upload: {exc.strerror}") from exc
        raise


async def _handle(writer: _Writer, parts: _Parts) -> None:
    events, parts.events = parts.events, []
    for kind, value in events:
        if kind == "begin":
            await writer.begin(value)  # type: ignore[arg-type]
        elif kind == "data":
            await writer.data(value)  # type: ignore[arg-type]
        else:
            await writer.end()
