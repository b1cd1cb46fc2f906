"""Uploaded zips, checked whole before anything is extracted, then unpacked under flat names.

Every member is vetted first from the central directory (count, declared total size against
the decompressed-size limit, the compression ratio, no absolute paths, no `..`, no links, no
encryption), so a hostile zip is refused before a byte is inflated; a member that inflates past
what is left of the limit is stopped at that chunk. Refusals name members by their number in
the zip, never by their name (a folder may be named after the patient). Members are written
as `NNNNN.dcm` in one folder: a member's own name never becomes a path on disk. Members that
are not DICOM (no `DICM` after the 128-byte preamble) are skipped and counted, not written.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.errors import InsufficientStorage, InvalidInput, PayloadTooLarge

MAX_MEMBERS = 20_000  # a CT study export is a few thousand files at most
# DICOM CT compresses 2-10×; a zip expanding more than this (past RATIO_FREE bytes) is a bomb.
MAX_RATIO = 200
RATIO_FREE = 64 * 1024**2
_CHUNK = 4 * 1024**2


@dataclass
class Extracted:
    """What came out of a zip: DICOM files (shown member name, path) and what was left out."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    non_dicom: list[str] = field(default_factory=list)  # member names skipped as not DICOM


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def limit_message(limit: int, what: str) -> str:
    return (
        f"{what}, more than the decompressed-size limit of {limit / 1024**2:,.0f} MiB "
        "(MEDSYNTH_MAX_DECOMPRESSED_BYTES)"
    )


def _unsafe(name: str) -> str | None:
    """Why a member name is refused, or None when it is a plain relative path."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' path component"
    if "\0" in name:
        return "a NUL byte in its name"
    return None


def check_members(zf: zipfile.ZipFile, name: str, limit: int) -> list[tuple[int, zipfile.ZipInfo]]:
    """The file members of `zf` with their 1-based numbers, or a refusal naming the first.

    Only the central directory is read: sizes, ratio, names and flags are all declared there.
    """
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidInput(f"{name} has {len(infos):,} members; at most {MAX_MEMBERS:,} allowed")
    files = []
    for number, info in enumerate(infos, start=1):
        why = _unsafe(info.filename)
        mode = info.external_attr >> 16
        if why is None and stat.S_ISLNK(mode):
            why = "a symbolic link"
        if why is None and info.flag_bits & 0x1:
            why = "encrypted"
        if why is not None:
            raise InvalidInput(f"{name}: member {number} is {why}; the zip is refused")
        if not info.is_dir():
            files.append((number, info))
    total = sum(i.file_size for _, i in files)
    if total > limit:
        raise PayloadTooLarge(limit_message(limit, f"{name} expands to {total:,} bytes"))
    packed = max(1, sum(i.compress_size for _, i in files))
    if total > RATIO_FREE and total > MAX_RATIO * packed:
        raise PayloadTooLarge(
            f"{name} expands {total / packed:,.0f}-fold ({packed:,} to {total:,} bytes); "
            f"a DICOM zip expanding more than {MAX_RATIO}-fold is refused as a zip bomb"
        )
    return files


def extract_dicom(path: Path, dest: Path, limit: int, name: str | None = None) -> Extracted:
    """Check every member, then write the DICOM ones flat into `dest`; counts bytes written."""
    name = name or path.name
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{name} is not a readable zip file ({exc})") from exc
    out = Extracted()
    written = 0
    with zf:
        members = check_members(zf, name, limit)
        dest.mkdir(parents=True, exist_ok=True)
        _check_free_space(dest, sum(i.file_size for _, i in members), name)
        for index, (number, info) in enumerate(members):
            target = dest / f"{index:05d}.dcm"
            try:
                written += _copy_if_dicom(zf, info, target, limit - written, f"member {number}")
            except _NotDicom:
                out.non_dicom.append(info.filename)
                continue
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                ValueError,
                NotImplementedError,
            ) as exc:
                raise InvalidInput(
                    f"{name}: member {number} is corrupt ({type(exc).__name__})"
                ) from exc
            out.files.append((info.filename, target))
    return out


def _check_free_space(dest: Path, unpacked: int, name: str) -> None:
    """Unpacked files, the scratch HU copy and the cache: about twice the unpacked size."""
    free = shutil.disk_usage(dest).free
    if free < 2 * unpacked + 64 * 1024**2:
        raise InsufficientStorage(
            f"not enough disk space to unpack {name}: needs about {2 * unpacked / 1e6:,.0f} MB, "
            f"{free / 1e6:,.0f} MB free"
        )


class _NotDicom(Exception):
    pass


def _copy_if_dicom(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, shown: str
) -> int:
    with zf.open(info) as src:
        head = src.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            raise _NotDicom
        written = len(head)
        with open(target, "wb") as out:
            out.write(head)
            while chunk := src.read(_CHUNK):
                written += out.write(chunk)
                if written > budget:
                    raise PayloadTooLarge(limit_message(budget, f"{shown} expands"))
    return written
