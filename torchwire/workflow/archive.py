"""Workflow archives (.war): torch-workflow-archiver's layout, read and written.

A .war is a zip holding the specification YAML, the handler file and any extra
files at its top level, and ``WAR-INF/MANIFEST.json``::

    {"createdOn": "06/12/2026 08:00:00",
     "workflow": {"workflowName": "wf", "specFile": "spec.yaml", "handler": "handler.py"},
     "archiverVersion": "0.2.15"}
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from torchwire import __version__
from torchwire.archive.pack import CREATED_ON_FORMAT
from torchwire.archive.unpack import extract_zip
from torchwire.errors import ArchiveError, InvalidWorkflow

WAR_MANIFEST = "WAR-INF/MANIFEST.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")  # torch-workflow-archiver's rule
MAX_SPEC_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WorkflowManifest:
    name: str
    spec_file: str
    handler: str | None
    created_on: str
    archiver_version: str

    def to_json(self) -> dict[str, Any]:
        workflow = {"workflowName": self.name, "specFile": self.spec_file}
        if self.handler:
            workflow["handler"] = self.handler
        return {"createdOn": self.created_on, "workflow": workflow,
                "archiverVersion": self.archiver_version}


def name_problem(name: str) -> str | None:
    if NAME.match(name):
        return None
    return (f"workflow name {name!r} contains special characters; the allowed pattern is "
            f"{NAME.pattern}")


def _field(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidWorkflow(f"{WAR_MANIFEST}: {what}")
    return value


def read_war_manifest(war_dir: Path) -> WorkflowManifest:
    """The manifest, checked as TorchServe checks it (name, archiver version, createdOn)."""
    path = war_dir / WAR_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidWorkflow(f"the workflow archive has no {WAR_MANIFEST}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidWorkflow(f"{WAR_MANIFEST} is not valid JSON: {exc}") from None
    workflow = data.get("workflow") if isinstance(data, dict) else None
    if not isinstance(workflow, dict):
        raise InvalidWorkflow(f"{WAR_MANIFEST}: Missing Workflow entry in manifest file.")
    handler = workflow.get("handler")
    return WorkflowManifest(
        name=_field(workflow, "workflowName", "Workflow name is not defined."),
        spec_file=_field(workflow, "specFile", "the workflow's specFile is not defined."),
        handler=handler if isinstance(handler, str) and handler else None,
        created_on=_field(data, "createdOn", "Workflow archive createdOn is not defined."),
        archiver_version=_field(data, "archiverVersion",
                                "Workflow archive version is not defined."),
    )


def read_spec(war_dir: Path, manifest: WorkflowManifest) -> Any:
    path = _inside(war_dir, manifest.spec_file, "specFile")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise InvalidWorkflow(f"the specification {manifest.spec_file} is over 1 MiB")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidWorkflow(f"Failed to parse yaml {manifest.spec_file}: {exc}") from None


def handler_path(war_dir: Path, manifest: WorkflowManifest) -> Path | None:
    if manifest.handler is None:
        return None
    return _inside(war_dir, manifest.handler, "handler")


def _inside(war_dir: Path, name: str, what: str) -> Path:
    path = (war_dir / name).resolve()
    if not path.is_relative_to(war_dir.resolve()) or not path.is_file():
        raise InvalidWorkflow(f"{WAR_MANIFEST}: {what} {name!r} is not a file in the archive")
    return path


def open_war(path: Path, dest_root: Path) -> Path:
    """Unpack ``path`` (a .war zip, checked member by member) into a new folder."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise InvalidWorkflow(f"{path.name} is not a workflow archive (a .war zip)")
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{path.stem[:40]}-", dir=dest_root))
    try:
        extract_zip(path, dest)
    except ArchiveError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidWorkflow(exc.message) from None
    return dest


# -- writing -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WarRequest:
    """``torch-workflow-archiver``'s arguments."""

    name: str
    spec_file: Path
    handler: Path | None = None
    extra_files: tuple[Path, ...] = ()


def _sources(req: WarRequest) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in (req.spec_file, req.handler, *req.extra_files):
        if path is None:
            continue
        if not path.exists():
            raise ArchiveError(f"{path} does not exist")
        if path.name in files and files[path.name] != path:
            raise ArchiveError(f"two files are named {path.name}: {files[path.name]}, {path}")
        files[path.name] = path
    return files


def _write_tree(z: zipfile.ZipFile, name: str, path: Path) -> None:
    if path.is_file():
        z.write(path, name)
        return
    for child in sorted(path.rglob("*")):
        if child.is_file() and "__pycache__" not in child.parts:
            z.write(child, f"{name}/{child.relative_to(path).as_posix()}")


def write_war(req: WarRequest, export_path: Path, force: bool = False) -> Path:
    """Write ``<export_path>/<name>.war``; refuses to overwrite unless ``force``."""
    problem = name_problem(req.name)
    if problem:
        raise ArchiveError(problem)
    if not export_path.is_dir():
        raise ArchiveError(f"Given export-path {export_path} is not a directory. Point to a "
                           "valid export-path directory.")
    target = export_path / f"{req.name}.war"
    if target.exists() and not force:
        raise ArchiveError(f"{target} already exists. Please specify --force/-f option to "
                           "overwrite the workflow archive output file.")
    manifest = WorkflowManifest(req.name, req.spec_file.name,
                                req.handler.name if req.handler else None,
                                datetime.now().strftime(CREATED_ON_FORMAT), __version__)
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in _sources(req).items():
            _write_tree(z, name, path)
        z.writestr(WAR_MANIFEST, json.dumps(manifest.to_json(), indent=2))
    partial.replace(target)
    return target
