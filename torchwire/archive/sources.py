"""What goes into an archive: torch-model-archiver's flags turned into a manifest and files.

The rules are torch-model-archiver's: every given file is stored at the archive's top
level under its base name; an extra-files entry may be a file, a glob or a directory
(whose contents are stored at the top level, sub-directories kept, ``__pycache__``,
``__MACOSX`` and hidden directories left out); a built-in handler name stores no file.
Unlike torch-model-archiver, two different files that would be stored under the same
name are an error rather than one silently replacing the other.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from torchwire.archive.manifest import Manifest, model_name_problem
from torchwire.config import model_settings_from_mapping
from torchwire.errors import ArchiveError, ConfigError
from torchwire.handlers.loader import BUILTIN_HANDLERS, split_handler

logger = logging.getLogger(__name__)

# torch-model-archiver's rule for --model-name (a subset of what the manifest allows).
_ARCHIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
_SKIPPED_DIRS = frozenset({"__pycache__", "__MACOSX"})
_GLOB_CHARS = re.compile(r"[*?]|\[.*\]")
RUNTIMES = ("python", "python3")


@dataclass(frozen=True)
class ArchiveRequest:
    """torch-model-archiver's inputs (paths as given on the command line)."""

    model_name: str
    version: str
    handler: str
    serialized_file: str | None = None
    model_file: str | None = None
    extra_files: str | None = None
    requirements_file: str | None = None
    config_file: str | None = None
    runtime: str = "python"


@dataclass(frozen=True)
class ArchivePlan:
    manifest: Manifest
    files: dict[str, Path]  # name inside the archive -> source file


def check_model_name(name: str) -> None:
    """Refuse names that are unsafe in paths or URLs, with torch-model-archiver's rule."""
    if model_name_problem(name) is not None or not _ARCHIVER_NAME.match(name):
        raise ArchiveError(
            f"model name {name!r} is unsafe in paths and URLs: use letters, digits, '_', '-' "
            f"and '.', starting with a letter or a digit ({_ARCHIVER_NAME.pattern})"
        )


def _existing_file(path: str, what: str) -> Path:
    source = Path(path).expanduser()
    if not source.exists():
        raise ArchiveError(f"{what} {path} does not exist")
    if not source.is_file():
        raise ArchiveError(f"{what} {path} is not a file")
    return source


class _Collector:
    """Archive name -> source file, refusing two different sources for one name."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}

    def add(self, name: str, source: Path) -> str:
        known = self.files.get(name)
        if known is not None and not _same_file(known, source):
            raise ArchiveError(f"both {known} and {source} would be stored as {name!r}")
        self.files[name] = source
        return name

    def add_file(self, path: str, what: str) -> str:
        source = _existing_file(path, what)
        return self.add(source.name, source)

    def add_tree(self, root: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if _kept_dir(d))
            for filename in sorted(filenames):
                source = Path(dirpath) / filename
                if source.is_file():
                    self.add(source.relative_to(root).as_posix(), source)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _kept_dir(name: str) -> bool:
    return name not in _SKIPPED_DIRS and not name.startswith(".")


def _extra_paths(entry: str) -> list[Path]:
    if _GLOB_CHARS.search(entry):
        found = sorted(glob.glob(os.path.expanduser(entry)))
        if not found:
            logger.warning("--extra-files pattern %r matched no file", entry)
        return [Path(p) for p in found]
    path = Path(entry).expanduser()
    if not path.exists():
        raise ArchiveError(f"extra file {entry} does not exist")
    return [path]


def _add_extra_files(collector: _Collector, extra_files: str) -> None:
    for entry in (e.strip() for e in extra_files.split(",")):
        if not entry:
            continue
        for path in _extra_paths(entry):
            if path.is_dir():
                collector.add_tree(path)
            elif path.is_file():
                collector.add(path.name, path)
            else:
                raise ArchiveError(f"extra file {path} is not a file or a directory")


def _handler_file(module: str) -> str | None:
    """The file a handler names, or None for a built-in handler."""
    if module in BUILTIN_HANDLERS and not module.endswith(".py"):
        return None
    return module if module.endswith(".py") else f"{module}.py"


def _check_python(path: Path) -> None:
    try:
        compile(path.read_bytes(), str(path), "exec")
    except (SyntaxError, ValueError) as exc:
        raise ArchiveError(f"handler file {path} is not valid Python: {exc}") from exc


def _add_handler(collector: _Collector, handler: str) -> str:
    """Store the handler's file; returns the manifest's ``handler`` value."""
    module, function = split_handler(handler)
    file = _handler_file(module)
    if file is None:
        return handler
    path = Path(file).expanduser()
    if not path.is_file():
        builtins = ", ".join(sorted(BUILTIN_HANDLERS))
        raise ArchiveError(
            f"handler file {file} not found; --handler takes a built-in name ({builtins}), "
            "a .py file, or file.py:function"
        )
    _check_python(path)
    name = collector.add(path.name, path)
    base = name if module.endswith(".py") else name[: -len(".py")]
    return base if function is None else f"{base}:{function}"


def _check_model_config(path: Path) -> None:
    """Refuse a model-config.yaml that the server would refuse when loading it."""
    try:
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        raise ArchiveError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return
    if not isinstance(data, dict):
        raise ArchiveError(f"config file {path} must hold a YAML mapping")
    try:
        model_settings_from_mapping(data, str(path))
    except ConfigError as exc:
        raise ArchiveError(str(exc)) from exc


def plan_archive(request: ArchiveRequest) -> ArchivePlan:
    """Check every input and list the files; nothing is written."""
    check_model_name(request.model_name)
    if not request.version.strip():
        raise ArchiveError("--version must not be empty")
    if request.runtime not in RUNTIMES:
        raise ArchiveError(f"runtime {request.runtime!r} is not supported; use python")
    files = _Collector()
    serialized = (
        files.add_file(request.serialized_file, "serialized file")
        if request.serialized_file else None
    )
    model_file = files.add_file(request.model_file, "model file") if request.model_file else None
    handler = _add_handler(files, request.handler)
    if request.extra_files:
        _add_extra_files(files, request.extra_files)
    requirements = (
        files.add_file(request.requirements_file, "requirements file")
        if request.requirements_file else None
    )
    config = None
    if request.config_file:
        config = files.add_file(request.config_file, "config file")
        _check_model_config(files.files[config])
    manifest = Manifest(
        model_name=request.model_name, model_version=request.version, handler=handler,
        serialized_file=serialized, model_file=model_file, config_file=config,
        requirements_file=requirements, runtime=request.runtime,
    )
    return ArchivePlan(manifest, dict(sorted(files.files.items())))
