"""``torchwire archive``: torch-model-archiver's command line, and ``--inspect``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from torchwire.archive.listing import Listing, inspect_archive
from torchwire.archive.pack import FORMATS, archive_path, total_size, write_archive
from torchwire.archive.progress import MB, ProgressBar
from torchwire.archive.sources import RUNTIMES, ArchiveRequest, plan_archive
from torchwire.errors import ArchiveError

PROGRESS_MIN_BYTES = 16 * MB  # smaller archives are written before a bar would be seen
REQUIRED = (("model_name", "--model-name"), ("version", "--version"), ("handler", "--handler"))


def add_archive_flags(p: argparse.ArgumentParser) -> None:
    """torch-model-archiver's flags, with the same names, short forms and defaults."""
    p.add_argument("--model-name", help="model name; the archive is <export-path>/NAME.mar")
    p.add_argument("-v", "--version", help="the model's version, e.g. 1.0")
    p.add_argument("--serialized-file", help="weights: a state dict (.pt/.pth) or TorchScript")
    p.add_argument("--model-file", help="Python file defining the nn.Module (eager models)")
    p.add_argument("--handler",
                   help="built-in handler name, a handler .py file, or file.py:function")
    p.add_argument("--extra-files", help="comma-separated files, directories or globs")
    p.add_argument("-r", "--requirements-file", help="requirements.txt for the model")
    p.add_argument("-c", "--config-file", help="model-config.yaml with per-model settings")
    p.add_argument("--runtime", default="python", choices=RUNTIMES, help="accepted for parity")
    p.add_argument("--export-path", default=None, help="output folder (default: the current one)")
    p.add_argument("--archive-format", default="default", choices=list(FORMATS),
                   help="default (.mar, deflated), zip-store (.mar, not compressed), "
                        "tgz (.tar.gz) or no-archive (a folder)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing archive")
    p.add_argument("--inspect", metavar="FILE",
                   help="print an archive's manifest and files without extracting it")


def _request(args: argparse.Namespace) -> ArchiveRequest:
    return ArchiveRequest(
        model_name=args.model_name, version=args.version, handler=args.handler,
        serialized_file=args.serialized_file, model_file=args.model_file,
        extra_files=args.extra_files, requirements_file=args.requirements_file,
        config_file=args.config_file, runtime=args.runtime,
    )


def _missing(args: argparse.Namespace) -> list[str]:
    return [flag for attr, flag in REQUIRED if not getattr(args, attr)]


def _progress(stderr: TextIO, label: str, total: int) -> ProgressBar | None:
    if total < PROGRESS_MIN_BYTES or not stderr.isatty():
        return None
    return ProgressBar(stderr, label, total)


def create(args: argparse.Namespace, stderr: TextIO) -> Path:
    """Check the inputs, then write the archive; nothing is left behind on failure."""
    plan = plan_archive(_request(args))
    export = Path(args.export_path).expanduser() if args.export_path else Path.cwd()
    if export.exists() and not export.is_dir():
        raise ArchiveError(f"export path {export} is not a directory")
    out = archive_path(plan.manifest.model_name, export, args.archive_format)
    bar = _progress(stderr, f"writing {out.name}", total_size(plan.files))
    path = write_archive(plan.manifest, plan.files, export, fmt=args.archive_format,
                         force=args.force, progress=bar)
    if bar is not None:
        bar.finish()
    return path


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def format_listing(listing: Listing) -> str:
    lines = [f"{listing.path} ({listing.kind}, {len(listing.entries)} entries, "
             f"{listing.total_size:,} bytes)"]
    if listing.manifest is not None:
        lines += [f"{listing.manifest_member}:", json.dumps(listing.manifest, indent=2)]
    lines.append("files:")
    for e in listing.entries:
        stored = f"{e.stored:>14,}" if e.stored is not None else " " * 14
        lines.append(f"  {e.size:>14,} {stored}  {e.name}{'  (' + e.note + ')' if e.note else ''}")
    if listing.manifest_error:
        lines.append(f"invalid: {listing.manifest_error}")
    lines += [f"unsafe: {problem}" for problem in listing.problems]
    if listing.problems:
        lines.append("torchwire refuses to load this archive")
    return "\n".join(lines)


def inspect(target: str, stdout: TextIO) -> int:
    listing = inspect_archive(Path(target).expanduser())
    stdout.write(format_listing(listing) + "\n")
    return 1 if listing.manifest_error or listing.problems else 0


def run_archive(args: argparse.Namespace, stdout: TextIO | None = None,
                stderr: TextIO | None = None) -> int:
    """The ``archive`` subcommand; returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.inspect:
            return inspect(args.inspect, out)
        missing = _missing(args)
        if missing:
            err.write(f"torchwire archive: error: the following arguments are required: "
                      f"{', '.join(missing)}\n")
            return 2
        path = create(args, err)
    except ArchiveError as exc:
        err.write(f"torchwire archive: error: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        err.write("\ntorchwire archive: interrupted; nothing was written\n")
        return 130
    err.write(f"torchwire archive: wrote {path} ({_size(path) / MB:.1f} MB)\n")
    return 0
