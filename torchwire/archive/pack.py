"""Writing model archives in torch-model-archiver's four formats."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import secrets
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

from torchwire import __version__
from torchwire.archive.manifest import MANIFEST_PATH, Manifest, model_name_problem
from torchwire.archive.paths import layout_clash, member_parts, unsafe_member_reason
from torchwire.errors import ArchiveError

logger = logging.getLogger(__name__)

# torch-model-archiver's --archive-format values and the suffix of what each writes.
FORMATS: dict[str, str] = {
    "default": ".mar",
    "zip-store": ".mar",
    "tgz": ".tar.gz",
    "no-archive": "",
}
CREATED_ON_FORMAT = "%d/%m/%Y %H:%M:%S"
COPY_CHUNK = 1024 * 1024

Sources = list[tuple[str, Path]]
Progress = Callable[[int], None]
"""Called with the number of source bytes just written (for a progress display)."""


def _no_progress(done: int) -> None:
    return None


def archive_path(model_name: str, export_path: Path, fmt: str = "default") -> Path:
    """Where :func:`write_archive` puts the archive of ``model_name`` in format ``fmt``."""
    if fmt not in FORMATS:
        known = ", ".join(FORMATS)
        raise ArchiveError(f"unknown archive format {fmt!r}; expected one of {known}")
    return export_path / f"{model_name}{FORMATS[fmt]}"


def write_archive(
    manifest: Manifest,
    files: dict[str, Path],
    export_path: Path,
    fmt: str = "default",
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write ``files`` (name inside the archive -> source file) and the manifest.

    Returns the written ``.mar``, ``.tar.gz`` or directory. The output is built under a
    temporary name in ``export_path`` and renamed into place when complete. Files are
    copied in chunks of :data:`COPY_CHUNK` bytes (memory stays flat however large the
    weights are); ``progress`` is called after each chunk with its size.
    """
    _check_manifest(manifest, files)
    out = archive_path(manifest.model_name, export_path, fmt)
    sources = _check_files(files)
    if (out.exists() or out.is_symlink()) and not force:
        raise ArchiveError(f"{out} already exists; use --force to overwrite")
    data = manifest_bytes(_completed(manifest))
    export_path.mkdir(parents=True, exist_ok=True)
    tmp = export_path / f".{manifest.model_name}.{secrets.token_hex(6)}.tmp"
    try:
        _write(fmt, tmp, manifest.model_name, sources, data, progress or _no_progress)
        _install(tmp, out)
    except BaseException:
        _remove(tmp)
        raise
    logger.info("wrote model archive %s (%s format)", out, fmt)
    return out


def manifest_bytes(manifest: Manifest) -> bytes:
    """The MANIFEST.json text, indented like torch-model-archiver writes it."""
    return json.dumps(manifest.to_json(), indent=2).encode("utf-8")


def _completed(manifest: Manifest) -> Manifest:
    return dataclasses.replace(
        manifest,
        created_on=manifest.created_on or datetime.now().strftime(CREATED_ON_FORMAT),
        archiver_version=manifest.archiver_version or __version__,
    )


def _check_manifest(manifest: Manifest, files: dict[str, Path]) -> None:
    problem = model_name_problem(manifest.model_name)
    if problem is not None:
        raise ArchiveError(problem)
    if not manifest.handler:
        raise ArchiveError(f"manifest of {manifest.model_name} has no handler")
    names = {"/".join(member_parts(name)) for name in files}
    named = {
        "serializedFile": manifest.serialized_file,
        "modelFile": manifest.model_file,
        "configFile": manifest.config_file,
        "requirementsFile": manifest.requirements_file,
    }
    for key, value in named.items():
        if value is not None and "/".join(member_parts(value)) not in names:
            raise ArchiveError(f"manifest {key} {value!r} is not among the files to archive")


def _check_files(files: dict[str, Path]) -> Sources:
    sources: dict[str, Path] = {}
    for name, src in files.items():
        reason = unsafe_member_reason(name)
        arcname = "/".join(member_parts(name))
        if reason is None and not arcname:
            reason = "no file name"
        if reason is None and arcname == MANIFEST_PATH:
            reason = "reserved for the manifest"
        if reason is None and arcname in sources:
            reason = "given twice"
        if reason is not None:
            raise ArchiveError(f"cannot archive {name!r}: {reason}")
        if not src.is_file():
            raise ArchiveError(f"cannot archive {name!r}: {src} is not a file")
        sources[arcname] = src
    clash = layout_clash([(name, False) for name in [*sources, MANIFEST_PATH]])
    if clash is not None:
        raise ArchiveError(f"cannot archive {clash!r}: it is both a file and a directory")
    return sorted(sources.items())


def total_size(files: dict[str, Path]) -> int:
    """The bytes :func:`write_archive` will copy for ``files`` (what ``progress`` adds up to)."""
    return sum(src.stat().st_size for src in files.values())


def _copy(src: IO[bytes], dst: IO[bytes], progress: Progress) -> None:
    while chunk := src.read(COPY_CHUNK):
        dst.write(chunk)
        progress(len(chunk))


def _write(
    fmt: str, tmp: Path, model_name: str, sources: Sources, manifest: bytes, progress: Progress
) -> None:
    match fmt:
        case "default":
            _write_zip(tmp, sources, manifest, zipfile.ZIP_DEFLATED, progress)
        case "zip-store":
            _write_zip(tmp, sources, manifest, zipfile.ZIP_STORED, progress)
        case "tgz":
            _write_tgz(tmp, model_name, sources, manifest, progress)
        case _:
            _write_dir(tmp, sources, manifest, progress)


def _write_zip(
    tmp: Path, sources: Sources, manifest: bytes, compression: int, progress: Progress
) -> None:
    with zipfile.ZipFile(tmp, "x", compression=compression, strict_timestamps=False) as zf:
        for arcname, src in sources:
            info = zipfile.ZipInfo.from_file(src, arcname, strict_timestamps=False)
            info.compress_type = compression
            with src.open("rb") as fh, zf.open(info, "w") as out:
                _copy(fh, out, progress)
        info = zipfile.ZipInfo(MANIFEST_PATH, time.localtime()[:6])
        info.compress_type = compression
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        zf.writestr(info, manifest)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Counting:
    """A read-only file wrapper that reports how much has been read."""

    def __init__(self, fh: IO[bytes], progress: Progress) -> None:
        self._fh = fh
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._progress(len(data))
        return data


def _write_tgz(
    tmp: Path, model_name: str, sources: Sources, manifest: bytes, progress: Progress
) -> None:
    with tarfile.open(tmp, "x:gz", dereference=True) as tf:
        for arcname, src in sources:
            member = _anonymous(tf.gettarinfo(src, arcname=f"{model_name}/{arcname}"))
            with src.open("rb") as fh:
                tf.addfile(member, _Counting(fh, progress))
        info = tarfile.TarInfo(f"{model_name}/{MANIFEST_PATH}")
        info.size = len(manifest)
        info.mtime = int(time.time())
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(manifest))


def _write_dir(tmp: Path, sources: Sources, manifest: bytes, progress: Progress) -> None:
    tmp.mkdir()
    for arcname, src in sources:
        target = tmp / arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as fh, target.open("xb") as out:
            _copy(fh, out, progress)
        shutil.copymode(src, target)
    manifest_file = tmp / MANIFEST_PATH
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    manifest_file.write_bytes(manifest)


def _install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``, replacing whatever ``out`` was."""
    out_is_dir = out.is_dir() and not out.is_symlink()
    if not (tmp.is_dir() or out_is_dir) or not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return
    old = tmp.with_name(f"{tmp.name}.old")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
