"""Look inside an archive without extracting it: its manifest, its files, its problems."""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwire.archive.manifest import MANIFEST_PATH, MAX_MANIFEST_BYTES, Manifest
from torchwire.archive.paths import member_parts
from torchwire.archive.unpack import _CORRUPT, _tar_member_problem, _zip_member_problem
from torchwire.errors import ArchiveError

_MANIFEST_PARTS = tuple(MANIFEST_PATH.split("/"))


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    stored: int | None = None  # compressed size inside a zip
    note: str = ""  # "directory", "link -> target", ...


@dataclass
class Listing:
    path: Path
    kind: str  # "zip", "tar" or "directory"
    entries: list[Entry] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    manifest_member: str | None = None
    manifest_error: str | None = None
    problems: list[str] = field(default_factory=list)  # why loading would refuse it

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)


def _manifest_rank(name: str) -> int | None:
    """0 for MAR-INF/MANIFEST.json, 1 for DIR/MAR-INF/MANIFEST.json, else None."""
    parts = member_parts(name)
    if parts[-2:] != _MANIFEST_PARTS or len(parts) > 3:
        return None
    return len(parts) - 2


def _pick_manifest(names: list[str]) -> str | None:
    ranked = sorted((rank, name) for name in names if (rank := _manifest_rank(name)) is not None)
    return ranked[0][1] if ranked else None


def _parse_manifest(listing: Listing, raw: bytes | None, member: str | None) -> None:
    source = f"{listing.path}"
    if member is None or raw is None:
        listing.manifest_error = f"{source} has no {MANIFEST_PATH}"
        return
    source = f"{listing.path}!{member}"
    listing.manifest_member = member
    try:
        data = json.loads(raw)
        Manifest.from_json(data, source)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        listing.manifest_error = f"{source} is not valid JSON: {exc}"
        return
    except ArchiveError as exc:
        listing.manifest_error = exc.message
    listing.manifest = data if isinstance(data, dict) else None


def _read_limited(fh: Any) -> bytes | None:
    data: bytes = fh.read(MAX_MANIFEST_BYTES + 1)
    return None if len(data) > MAX_MANIFEST_BYTES else data


# --- zip ------------------------------------------------------------------------------


def _zip_entry(info: zipfile.ZipInfo) -> Entry:
    note = "directory" if info.is_dir() else ""
    return Entry(info.filename, info.file_size, info.compress_size, note)


def _list_zip(listing: Listing) -> None:
    with zipfile.ZipFile(listing.path) as zf:
        infos = zf.infolist()
        for info in infos:
            listing.entries.append(_zip_entry(info))
            problem = _zip_member_problem(info)
            if problem is not None:
                listing.problems.append(f"member {info.filename!r}: {problem}")
        member = _pick_manifest([i.filename for i in infos if not i.is_dir()])
        raw = None
        if member is not None:
            with zf.open(member) as fh:
                raw = _read_limited(fh)
        _parse_manifest(listing, raw, member)


# --- tar ------------------------------------------------------------------------------


def _tar_entry(member: tarfile.TarInfo) -> Entry:
    if member.isdir():
        return Entry(member.name, 0, note="directory")
    if member.issym() or member.islnk():
        return Entry(member.name, 0, note=f"link -> {member.linkname}")
    return Entry(member.name, member.size, note="" if member.isfile() else "special file")


def _list_tar(listing: Listing) -> None:
    with tarfile.open(listing.path, "r:*") as tf:
        members = tf.getmembers()
        symlinks = frozenset(member_parts(m.name) for m in members if m.issym())
        for m in members:
            listing.entries.append(_tar_entry(m))
            problem = _tar_member_problem(m, symlinks)
            if problem is not None:
                listing.problems.append(f"member {m.name!r}: {problem}")
        name = _pick_manifest([m.name for m in members if m.isfile()])
        raw = None
        if name is not None:
            fh = tf.extractfile(name)
            raw = _read_limited(fh) if fh is not None else None
        _parse_manifest(listing, raw, name)


# --- directory --------------------------------------------------------------------------


def _list_dir(listing: Listing) -> None:
    root = listing.path
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            name = path.relative_to(root).as_posix()
            if path.is_symlink():
                listing.entries.append(Entry(name, 0, note=f"link -> {os.readlink(path)}"))
            else:
                listing.entries.append(Entry(name, path.stat().st_size))
    manifest = root / MANIFEST_PATH
    if not manifest.is_file():
        _parse_manifest(listing, None, None)
        return
    with manifest.open("rb") as fh:
        _parse_manifest(listing, _read_limited(fh), MANIFEST_PATH)


def inspect_archive(path: Path) -> Listing:
    """List ``path`` (a .mar/.zip, .tar.gz/.tgz or directory) without writing anything."""
    if not path.exists():
        raise ArchiveError(f"model archive {path} does not exist")
    if path.is_dir():
        listing = Listing(path, "directory")
        _list_dir(listing)
        return listing
    try:
        if zipfile.is_zipfile(path):
            listing = Listing(path, "zip")
            _list_zip(listing)
        elif tarfile.is_tarfile(path):
            listing = Listing(path, "tar")
            _list_tar(listing)
        else:
            raise ArchiveError(f"model archive {path} is not a zip/.mar, a .tar.gz or a directory")
    except (OSError, *_CORRUPT) as exc:
        raise ArchiveError(f"model archive {path} is corrupt or unreadable: {exc}") from exc
    return listing
