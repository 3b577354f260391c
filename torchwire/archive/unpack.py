"""Safe unpacking of model archives: .mar/.zip, .tar.gz/.tgz, or a plain directory."""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torchwire.archive.manifest import MANIFEST_PATH
from torchwire.archive.paths import layout_clash, link_problem, member_parts, unsafe_member_reason
from torchwire.errors import ArchiveError

logger = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".mar", ".zip")
_UNSAFE_DIR_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_COPY_CHUNK = 1024 * 1024
_MAX_NAME_TRIES = 1000
# Decompression errors (bz2 raises a plain OSError; it is caught while only reading).
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError)

ArchiveKind = Literal["zip", "tar"]

# What an archive's first bytes are, for each kind (the rest of the file is never read).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_TAR_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz
_USTAR_AT = 257  # an uncompressed tar's "ustar" magic
_HEAD_SIZE = 512


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may unpack to (config keys of the same names; docs/limits.md)."""

    max_extracted_size: int = 16 * 1024**3
    max_compression_ratio: int = 100


def open_archive(path: Path, dest_root: Path, limits: UnpackLimits | None = None) -> Path:
    """Return the model directory (the one holding MAR-INF/MANIFEST.json) for ``path``.

    A directory is returned as it is. A zip (.mar) or tar (.tar.gz/.tgz) archive is
    checked member by member, then extracted into a new subdirectory of ``dest_root``;
    a half-extracted directory is never left behind.
    """
    if not path.exists():
        raise ArchiveError(f"model archive {path} does not exist")
    if path.is_dir():
        if not (path / MANIFEST_PATH).is_file():
            raise ArchiveError(f"{path} has no {MANIFEST_PATH}")
        return path
    if not path.is_file():
        raise ArchiveError(f"model archive {path} is not a regular file or a directory")
    return _extract(path, dest_root, _detect_kind(path), limits or UnpackLimits())


def _detect_kind(path: Path) -> ArchiveKind:
    """The archive's kind from its first bytes only (a huge file is not read through)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_SIZE)
    except OSError as exc:
        raise ArchiveError(f"cannot read model archive {path}: {exc}") from exc
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_TAR_MAGIC) or head[_USTAR_AT:_USTAR_AT + 5] == b"ustar":
        return "tar"
    raise ArchiveError(
        f"model archive {path} is corrupt or of an unknown kind "
        "(expected a zip/.mar, a .tar.gz/.tgz or a directory)"
    )


def extraction_name(path: Path) -> str:
    """``<stem>-<hash>``: the hash covers the archive's path, mtime and size."""
    name = path.name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    stem = _UNSAFE_DIR_CHARS.sub("_", name).lstrip(".")[:64] or "archive"
    st = path.stat()
    key = f"{path.resolve()}\0{st.st_mtime_ns}\0{st.st_size}"
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def check_unpacked_size(archive: Path, total: int, limits: UnpackLimits) -> None:
    """Refuse (400) an archive whose members add up to more than the limits allow."""
    if total > limits.max_extracted_size:
        raise ArchiveError(
            f"model archive {archive} unpacks to {total} bytes, more than max_extracted_size "
            f"({limits.max_extracted_size} bytes)")
    packed = max(1, archive.stat().st_size)
    if total > packed * limits.max_compression_ratio:
        raise ArchiveError(
            f"model archive {archive} unpacks to {total // packed} times its size, more than "
            f"max_compression_ratio ({limits.max_compression_ratio}); it looks like an "
            "archive bomb")


def _extract(archive: Path, dest_root: Path, kind: ArchiveKind, limits: UnpackLimits) -> Path:
    dest_root.mkdir(parents=True, exist_ok=True)
    base = extraction_name(archive)
    tmp = Path(tempfile.mkdtemp(prefix=f".{base}.", suffix=".partial", dir=dest_root))
    try:
        if kind == "zip":
            _extract_zip(archive, tmp, limits)
        else:
            _extract_tar(archive, tmp, limits)
        relative = _find_model_dir(tmp, archive).relative_to(tmp)
        final = _publish(tmp, dest_root, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("extracted model archive %s into %s", archive, final)
    return final / relative


def _publish(tmp: Path, dest_root: Path, base: str) -> Path:
    """Rename the finished extraction to the first free ``base``, ``base-1``, ... name."""
    for n in range(_MAX_NAME_TRIES):
        final = dest_root / (base if n == 0 else f"{base}-{n}")
        if final.exists() or final.is_symlink():
            continue
        try:
            os.rename(tmp, final)
        except OSError:
            if final.exists():
                continue  # lost a race for this name
            raise
        return final
    raise ArchiveError(f"no free directory name for {base} in {dest_root}")


def _find_model_dir(root: Path, archive: Path) -> Path:
    if (root / MANIFEST_PATH).is_file():
        return root
    found = [
        child
        for child in sorted(root.iterdir())
        if child.is_dir() and not child.is_symlink() and (child / MANIFEST_PATH).is_file()
    ]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(child.name for child in found)
        raise ArchiveError(f"{archive} holds several models ({names}); expected one")
    raise ArchiveError(f"{archive} has no {MANIFEST_PATH}")


def _refuse(archive: Path, member: str, reason: str) -> ArchiveError:
    return ArchiveError(f"unsafe model archive {archive}: member {member!r}: {reason}")


def _check_layout(archive: Path, entries: list[tuple[str, bool]]) -> None:
    clash = layout_clash(entries)
    if clash is not None:
        raise _refuse(archive, clash, "is both a file and a directory")


# --- zip ------------------------------------------------------------------------------


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    reason = unsafe_member_reason(info.filename)
    if reason is not None:
        return reason
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "symbolic links are not allowed"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "device files, fifos and sockets are not allowed"
    if not member_parts(info.filename) and not info.is_dir():
        return "member has no file name"
    return None


def _check_zip_members(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        reason = _zip_member_problem(info)
        if reason is not None:
            raise _refuse(archive, info.filename, reason)
    _check_layout(archive, [(info.filename, info.is_dir()) for info in infos])


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    parts = member_parts(info.filename)
    target = dest.joinpath(*parts)
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)


def extract_zip(archive: Path, dest: Path, limits: UnpackLimits | None = None) -> None:
    """Extract a zip into ``dest`` after checking every member (for .war files too)."""
    _extract_zip(archive, dest, limits or UnpackLimits())


def _extract_zip(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_zip_members(archive, infos)
            # zipfile never reads past a member's declared size (and checks its CRC).
            check_unpacked_size(archive, sum(info.file_size for info in infos), limits)
            for info in infos:
                _extract_zip_member(zf, info, dest)
    except (*_CORRUPT, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: encrypted member; NotImplementedError: unknown compression.
        raise ArchiveError(f"model archive {archive} is corrupt or unreadable: {exc}") from exc


# --- tar ------------------------------------------------------------------------------


def _tar_link_problem(member: tarfile.TarInfo, symlinks: frozenset[tuple[str, ...]]) -> str | None:
    kind = "hard link" if member.islnk() else "symbolic link"
    problem = link_problem(member.name, member.linkname, hardlink=member.islnk(), symlinks=symlinks)
    return None if problem is None else f"{kind} to {member.linkname!r} {problem}"


def _tar_member_problem(
    member: tarfile.TarInfo, symlinks: frozenset[tuple[str, ...]]
) -> str | None:
    reason = unsafe_member_reason(member.name)
    if reason is not None:
        return reason
    if not member_parts(member.name) and not member.isdir():
        return "member has no file name"
    if member.issym() or member.islnk():
        return _tar_link_problem(member, symlinks)
    if member.ischr() or member.isblk():
        return "device files are not allowed"
    if member.isfifo():
        return "fifos are not allowed"
    if not (member.isfile() or member.isdir()):
        return "unsupported member type"
    return None


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    symlinks = frozenset(member_parts(m.name) for m in members if m.issym())
    for member in members:
        reason = _tar_member_problem(member, symlinks)
        if reason is not None:
            raise _refuse(archive, member.name, reason)
    _check_layout(archive, [(member.name, member.isdir()) for member in members])


def _read_tar_members(archive: Path, tf: tarfile.TarFile,
                      limits: UnpackLimits) -> list[tarfile.TarInfo]:
    """Every member, refusing as soon as their sizes pass the limits (a bomb is not read
    through to its end)."""
    members: list[tarfile.TarInfo] = []
    total = 0
    try:
        for member in tf:
            members.append(member)
            total += member.size if member.isfile() else 0
            check_unpacked_size(archive, total, limits)
        return members
    except (OSError, *_CORRUPT) as exc:  # nothing is written yet: any error is the file's
        raise ArchiveError(f"model archive {archive} is corrupt or unreadable: {exc}") from exc


def _extract_tar(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = _read_tar_members(archive, tf, limits)
            _check_tar_members(archive, members)
            wanted = [member for member in members if member_parts(member.name)]
            tf.extractall(dest, members=wanted, filter="data")
    except tarfile.FilterError as exc:
        member = getattr(exc, "tarinfo", None)
        raise _refuse(archive, member.name if member else "?", str(exc)) from exc
    except _CORRUPT as exc:
        raise ArchiveError(f"model archive {archive} is corrupt or unreadable: {exc}") from exc
