"""Receiving a volume upload: multipart streamed straight to disk, size-limited, safely named.

The `file` field is a NIfTI volume, a .zip of a DICOM folder, or several DICOM files (a
multi-file selection; then they are staged in one folder); `mask` is one NIfTI, zip or SEG.
"""

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
TEXT_FIELDS = ("mask_structure",)  # small plain fields kept (the others, csrf_token, ignored)
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


def upload_name(name: str) -> str:
    """A safe name for a staged part: NIfTI names as safe_filename, others (zip, DICOM) cleaned.

    A browser folder selection may send 'folder/IM0001': only the last component is kept.
    """
    if nifti_stem(name) is not None:
        return safe_filename(name)
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE.sub("_", unicodedata.normalize("NFKC", base)).strip("_.")[:200]
    return clean or "upload"


def is_nifti_or_zip(name: str) -> bool:
    return nifti_stem(name) is not None or name.lower().endswith(".zip")


def limit_message(limit: int) -> str:
    size = f"{limit / 1024**2:,.1f} MiB"
    return f"upload is larger than the limit of {size} (MEDSYNTH_MAX_UPLOAD_BYTES)"


@dataclass
class StagedUpload:
    """Files of one upload in a private folder; `cleanup` removes whatever is left of it."""

    folder: Path
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)  # field → (path, name)
    parts: dict[str, int] = field(default_factory=dict)  # field → number of parts received
    fields: dict[str, str] = field(default_factory=dict)  # TEXT_FIELDS → value

    @property
    def is_dicom(self) -> bool:
        """A zip or several DICOM files in `file`, rather than one NIfTI volume."""
        path, name = self.files["file"]
        return path.is_dir() or nifti_stem(name) is None

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
        self.text: str | None = None  # the TEXT_FIELDS part being read

    async def begin(self, headers: dict) -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        field_name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in params:  # a plain form field: kept if named, else ignored
            self.text = field_name if field_name in TEXT_FIELDS else None
            return
        if field_name not in FILE_FIELDS:
            raise InvalidInput(f"unexpected file field {field_name!r}; send 'file' and 'mask'")
        name = upload_name(params[b"filename"].decode("utf-8", "replace"))
        count = self.staged.parts.get(field_name, 0)
        if count and (field_name == "mask" or is_nifti_or_zip(name) or self._single()):
            raise InvalidInput(
                f"more than one {field_name!r} file in the upload; several files are accepted "
                "only as DICOM slices (otherwise send one .nii, .nii.gz or .zip)"
            )
        self.staged.parts[field_name] = count + 1
        folder = self.staged.folder / field_name
        folder.mkdir(exist_ok=True)
        if count == 1:  # a second DICOM slice: the field now names the folder
            self.staged.files[field_name] = (folder, "DICOM files")
        path = folder / (f"{count:05d}-{name}" if count else name)
        if not count:
            self.staged.files[field_name] = (path, name)
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in end()/close()

    def _single(self) -> bool:
        """The first `file` part was a NIfTI or zip, which cannot be one of several."""
        return (
            is_nifti_or_zip(self.staged.files["file"][1]) if "file" in self.staged.files else False
        )

    async def data(self, chunk: bytes) -> None:
        if self.text is not None:
            value = self.staged.fields.get(self.text, "") + chunk.decode("utf-8", "replace")
            self.staged.fields[self.text] = value[:64]
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
        self.text = None
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
            raise InvalidInput(
                "the upload has no 'file' part (a .nii or .nii.gz volume, or a .zip of DICOM)"
            )
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
