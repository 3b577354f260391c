"""``torchwire workflow-archive``: torch-workflow-archiver's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from torchwire.errors import ArchiveError
from torchwire.workflow.archive import WarRequest, write_war


def add_workflow_archive_flags(p: argparse.ArgumentParser) -> None:
    """torch-workflow-archiver's flags, with the same names and defaults."""
    p.add_argument("--workflow-name", required=True,
                   help="workflow name; the archive is <export-path>/NAME.war")
    p.add_argument("--spec-file", required=True,
                   help="the workflow specification (.yaml: models and dag)")
    p.add_argument("--handler",
                   help="Python file with the workflow's function nodes (pre/post-processing)")
    p.add_argument("--export-path", default=None,
                   help="output folder (default: the current one)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing .war")
    p.add_argument("--extra-files", help="comma-separated extra files (or folders)")


def _paths(text: str | None) -> tuple[Path, ...]:
    if not text:
        return ()
    return tuple(Path(p.strip()).expanduser() for p in text.split(",") if p.strip())


def run_workflow_archive(args: argparse.Namespace, stderr: TextIO | None = None) -> int:
    err = stderr or sys.stderr
    req = WarRequest(
        name=args.workflow_name,
        spec_file=Path(args.spec_file).expanduser(),
        handler=Path(args.handler).expanduser() if args.handler else None,
        extra_files=_paths(args.extra_files),
    )
    export = Path(args.export_path).expanduser() if args.export_path else Path.cwd()
    try:
        path = write_war(req, export, force=args.force)
    except ArchiveError as exc:
        err.write(f"torchwire workflow-archive: error: {exc.message}\n")
        return 1
    err.write(f"torchwire workflow-archive: wrote {path}\n")
    return 0
