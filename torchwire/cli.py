"""The ``torchwire`` command: start, stop, archive (and TorchServe's ``--start``/``--stop``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torchwire.archive.cli import add_archive_flags, run_archive
from torchwire.config import Settings, config_file_from_env, load_settings
from torchwire.errors import ConfigError
from torchwire.store import ModelSpec, parse_model_arg
from torchwire.workflow.cli import add_workflow_archive_flags, run_workflow_archive

log = logging.getLogger("torchwire")

PID_FILE = "torchwire.pid"
START_WAIT = 120.0


def pid_path() -> Path:
    return Path(tempfile.gettempdir()) / f".{PID_FILE}"


def add_start_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-store", help="folder holding model archives")
    p.add_argument("--workflow-store",
                   help="folder holding workflow archives (.war); default: the model store")
    p.add_argument("--models", nargs="+", default=[],
                   help="models to load: name=archive.mar, archive.mar, a folder, or 'all'")
    p.add_argument("--ts-config", "--config", dest="ts_config",
                   help="TorchServe config.properties file")
    p.add_argument("--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("--ncs", "--no-config-snapshots", action="store_true",
                   help="neither write config snapshots nor restore the last one")
    p.add_argument("--log-location", help="folder for logs (default ./logs)")
    p.add_argument("--inference-address", help="e.g. http://127.0.0.1:8080")
    p.add_argument("--management-address", help="e.g. http://127.0.0.1:8081")
    p.add_argument("--metrics-address", help="e.g. http://127.0.0.1:8082")
    p.add_argument("--enable-model-api", action="store_true", default=None,
                   help="allow registering and deleting models through the management API")
    p.add_argument("--disable-token-auth", action="store_true", default=None,
                   help="turn token authorization off")
    p.add_argument("--enable-token-auth", action="store_true", default=None,
                   help="require tokens on every API")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchwire", description=__doc__)
    p.add_argument("--start", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stop", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command")
    add_start_flags(sub.add_parser("start", help="start the server"))
    sub.add_parser("stop", help="stop the server started by 'torchwire start'")
    add_archive_flags(sub.add_parser(
        "archive", help="make a model archive (torch-model-archiver's flags), or --inspect one"))
    add_workflow_archive_flags(sub.add_parser(
        "workflow-archive", help="make a workflow archive (torch-workflow-archiver's flags)"))
    return p


def cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model_store": args.model_store,
        "workflow_store": args.workflow_store,
        "log_location": args.log_location,
        "inference_address": args.inference_address,
        "management_address": args.management_address,
        "metrics_address": args.metrics_address,
        "enable_model_api": args.enable_model_api,
        "disable_token_authorization": args.disable_token_auth,
        "enable_token_authorization": args.enable_token_auth,
    }


def model_specs(args: argparse.Namespace, settings: Settings) -> list[ModelSpec]:
    if settings.model_snapshot is not None:
        if args.models or settings.load_models:
            log.info("restoring the snapshot's models; --models / load_models are ignored")
        return []
    names = [m for arg in args.models for m in arg.split(",") if m] or settings.load_models
    return [parse_model_arg(m) for m in names]


def check_stores(settings: Settings) -> None:
    """TorchServe's refusal to start: a model or workflow store that is not a folder."""
    for flag, store in (("--model-store", settings.model_store),
                        ("--workflow-store", settings.workflow_store)):
        if store is not None and not store.is_dir():
            raise ConfigError(f"{flag} directory not found: {store}")


def start_foreground(args: argparse.Namespace) -> int:
    from torchwire.logs import configure_logging
    from torchwire.server import default_log_dir, run_server
    from torchwire.snapshot import latest_snapshot

    config = Path(args.ts_config) if args.ts_config else None
    settings = load_settings(cli_settings(args), config_path=config)
    check_stores(settings)
    log_dir = default_log_dir(settings)
    configure_logging(log_dir)
    restoring = config is None and not args.ncs and config_file_from_env() is None
    snapshot = latest_snapshot(log_dir / "config") if restoring else None
    if snapshot is not None:
        log.info("starting from the snapshot %s", snapshot)
        settings = load_settings(cli_settings(args), config_path=snapshot)
        check_stores(settings)
        log_dir = default_log_dir(settings)
    if settings.log_location is None:
        from dataclasses import replace

        settings = replace(settings, log_location=log_dir)
    run_server(settings, model_specs(args, settings), snapshots=not args.ncs)
    return 0


def _listening(address: str) -> bool:
    from torchwire.config import parse_address

    addr = parse_address(address)
    try:
        with socket.create_connection((addr.host, addr.port), timeout=0.5):
            return True
    except OSError:
        return False


def start_background(argv: list[str], args: argparse.Namespace) -> int:
    settings = load_settings(cli_settings(args),
                             config_path=Path(args.ts_config) if args.ts_config else None)
    check_stores(settings)
    log_dir = settings.log_location or Path.cwd() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / "torchwire_stdout.log").open("ab")
    cmd = [sys.executable, "-m", "torchwire", *_as_start(argv), "--foreground"]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pid_path().write_text(str(proc.pid))
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"torchwire exited at start (code {proc.returncode}); see {out.name}",
                  file=sys.stderr)
            return 1
        if _listening(settings.inference_address.url):
            print(f"torchwire started (pid {proc.pid}) on {settings.inference_address}; "
                  f"logs in {log_dir}")
            return 0
        time.sleep(0.2)
    print(f"torchwire (pid {proc.pid}) is not listening yet; see {out.name}", file=sys.stderr)
    return 0


def _as_start(argv: list[str]) -> list[str]:
    rest = [a for a in argv if a not in ("--start", "start", "--foreground")]
    return ["start", *rest]


def stop() -> int:
    path = pid_path()
    if not path.exists():
        print("torchwire is not running (no pid file)", file=sys.stderr)
        return 1
    pid = int(path.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        print("torchwire is not running", file=sys.stderr)
        return 1
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            print("torchwire stopped")
            return 0
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    print("torchwire did not stop in 60 s and was killed", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--start" in argv and "start" not in argv:
        argv = ["start", *[a for a in argv if a != "--start"]]
    if argv[:1] == ["--stop"]:
        argv = ["stop"]
    args = parser().parse_args(argv)
    try:
        if args.command == "start":
            if args.foreground:
                return start_foreground(args)
            return start_background(argv, args)
        if args.command == "stop":
            return stop()
        if args.command == "archive":
            return run_archive(args)
        if args.command == "workflow-archive":
            return run_workflow_archive(args)
    except ConfigError as exc:
        print(f"torchwire: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a listener's address is in use
        print(f"torchwire: {exc}", file=sys.stderr)
        return 1
    parser().print_help()
    return 2
