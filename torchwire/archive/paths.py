"""Checks on file names stored inside model archives (shared by pack and unpack)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_member_reason(name: str) -> str | None:
    """Why ``name`` may not be used as a path inside an archive, or None if it is safe.

    Safe names are relative POSIX paths that stay inside the extraction directory:
    no absolute paths, no ``..`` component, no backslashes, no drive letters, no NUL.
    """
    if not name:
        return "empty member name"
    if "\x00" in name:
        return "NUL byte in member name"
    if "\\" in name:
        return "backslash in member name"
    if name.startswith("/"):
        return "absolute member path"
    if _DRIVE.match(name):
        return "drive letter in member name"
    if ".." in PurePosixPath(name).parts:
        return "'..' in member path"
    return None


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of a safe member name, without ``.`` and empty parts."""
    return tuple(part for part in name.split("/") if part not in ("", "."))


def link_problem(
    member_name: str,
    link_target: str,
    *,
    hardlink: bool,
    symlinks: frozenset[tuple[str, ...]] = frozenset(),
) -> str | None:
    """Why a link member is unsafe, or None when its target stays inside the archive.

    A symlink's target is relative to the directory holding the link; a hard link's
    target is relative to the archive root. ``symlinks`` are the archive's symlink
    members: a target may not pass through one of them, so that resolving it is the
    same as resolving it lexically (``l1 -> .`` then ``l2 -> l1/../..`` is refused).
    """
    if not link_target or link_target.startswith("/") or "\\" in link_target:
        return "points outside the archive"
    if _DRIVE.match(link_target) or "\x00" in link_target:
        return "points outside the archive"
    path = [] if hardlink else list(member_parts(member_name)[:-1])
    for part in link_target.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            path.append(part)
            if tuple(path) in symlinks:
                return "points through another symbolic link"
        elif not path:
            return "points outside the archive"
        else:
            path.pop()
    return None


def layout_clash(entries: Iterable[tuple[str, bool]]) -> str | None:
    """A member that would be both a file and a directory, given (name, is_dir) pairs."""
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for name, is_dir in entries:
        parts = member_parts(name)
        dirs.update(parts[:i] for i in range(1, len(parts)))
        if parts:
            (dirs if is_dir else files).add(parts)
    clash = files & dirs
    return "/".join(min(clash)) if clash else None
