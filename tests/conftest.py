"""Shared fixtures: example archives built once, and real server processes."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from torchwire.archive import Manifest, open_archive, read_manifest, write_archive

ROOT = Path(__file__).resolve().parents[1]
TOY = Path(__file__).resolve().parent / "e2e" / "toy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    url: str
    log_dir: Path
    metrics_url: str = ""
    grpc_target: str = ""  # host:port of the gRPC inference API
    grpc_management_target: str = ""
    management_url: str = ""

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)  # type: ignore[arg-type]

    def management(self) -> httpx.Client:
        """A client of the management API, with its key."""
        auth = {"Authorization": f"Bearer {self.key('management')}"}
        return httpx.Client(base_url=self.management_url, timeout=60, headers=auth)

    def key(self, kind: str) -> str:
        """A key from the key_file.json the server wrote in its working directory."""
        keys = json.loads((self.log_dir.parent / "key_file.json").read_text())
        return str(keys[kind]["key"])

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob("*.log"))


def wait_for_ping(url: str, proc: subprocess.Popen[bytes], want: int, deadline_s: float) -> None:
    """Poll /ping until it answers ``want`` (the server's own readiness signal)."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            last = httpx.get(f"{url}/ping", timeout=2).status_code
            if last == want:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"/ping did not answer {want} in {deadline_s}s (last {last})")


LISTENING = re.compile(r"(gRPC )?(\w+) API listening on (?:(https?)://)?(\[[^\]]+\]|[^\s:]+):(\d+)")


def listening(log: Path, offset: int = 0) -> dict[str, str]:
    """Where a server listens, from its log past ``offset``: ``{"inference":
    "http://127.0.0.1:PORT", ..., "grpc inference": "127.0.0.1:PORT"}``."""
    if not log.exists():
        return {}
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    found = {}
    for grpc, api, scheme, host, port in LISTENING.findall(text):
        found[f"grpc {api}" if grpc else api] = (
            f"{host}:{port}" if grpc else f"{scheme or 'http'}://{host}:{port}")
    return found


def start_server(tmp: Path, store: Path, models: list[str], config: dict[str, object],
                 want_ping: int = 200, env: dict[str, str] | None = None) -> RunningServer:
    """Start ``python -m torchwire`` on ports the OS picks (port 0, read back from the log)."""
    tmp.mkdir(parents=True, exist_ok=True)
    props = {
        "inference_address": "http://127.0.0.1:0",
        "management_address": "http://127.0.0.1:0",
        "metrics_address": "http://127.0.0.1:0",
        "grpc_inference_port": 0,
        "grpc_management_port": 0,
        "metrics_mode": "prometheus",  # the tests scrape TorchServe's metrics (default: log)
        **config,
    }
    cfg = tmp / "config.properties"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log_dir = tmp / "logs"
    log = log_dir / "ts_log.log"
    offset = log.stat().st_size if log.exists() else 0  # a second server in the same folder
    cmd = [sys.executable, "-m", "torchwire", "start", "--foreground", "--model-store",
           str(store), "--ts-config", str(cfg), "--log-location", str(log_dir),
           *(["--models", *models] if models else [])]
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})
    try:
        wait_until(lambda: _running(proc) and "inference" in listening(log, offset), 90,
                   "the server listening")
        wait_for_ping(listening(log, offset)["inference"], proc, want_ping, 90)
    except BaseException:
        stop_server(RunningServer(proc, "", log_dir))
        raise
    at = listening(log, offset)
    return RunningServer(proc, at["inference"], log_dir, at.get("metrics", ""),
                         at.get("grpc inference", ""), at.get("grpc management", ""),
                         at.get("management", ""))


def _running(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode}")
    return True


def stop_server(server: RunningServer) -> None:
    stop_process(server.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server started in its own session; its whole group is killed after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def torch_model_archiver(args: list[str], scratch: Path) -> subprocess.CompletedProcess[str]:
    """Run TorchServe's own torch-model-archiver (a test dependency) with ``args``."""
    return torchserve_tool("torch-model-archiver", args, scratch)


def torchserve_tool(name: str, args: list[str],
                    scratch: Path) -> subprocess.CompletedProcess[str]:
    """Run one of TorchServe's archiver commands (test dependencies) with ``args``.

    They stage files in ``$TMPDIR``, so each call gets its own TMPDIR, ``scratch``.
    """
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.skip(f"{name} is not installed next to the interpreter")
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    return subprocess.run([str(tool), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def wait_until(check: Callable[[], bool], deadline_s: float = 60.0,
               what: str = "the condition") -> None:
    """Poll ``check`` until it is true; TimeoutError naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {deadline_s} s")


async def until(check: Callable[[], bool], deadline_s: float = 60.0,
                what: str = "the condition") -> None:
    """``wait_until`` for a test running in an event loop: the loop runs while it polls."""
    import asyncio

    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {deadline_s} s")
        await asyncio.sleep(0.01)


def handler_archive(store: Path, name: str, handler: Path, dest: Path,
                    version: str = "1.0", yaml_config: str | None = None) -> Path:
    """An archive of one handler file (and a model-config.yaml when given), into ``dest``."""
    files = {handler.name: handler}
    config_file = None
    if yaml_config is not None:
        cfg = store / f".{name}-model-config.yaml"
        cfg.write_text(yaml_config)
        files["model-config.yaml"] = cfg
        config_file = "model-config.yaml"
    manifest = Manifest(model_name=name, model_version=version, handler=handler.name,
                        config_file=config_file)
    return write_archive(manifest, files, dest, force=True)


def toy_archive(store: Path, name: str, version: str = "1.0",
                yaml_config: str | None = None) -> Path:
    return handler_archive(store, name, TOY / "toy_handler.py", store / f"{name}-{version}",
                           version, yaml_config)


def second_version(archive: Path, out: Path, tmp: Path) -> Path:
    """The same model re-archived as version 2.0."""
    model_dir = open_archive(archive, tmp)
    manifest = replace(read_manifest(model_dir), model_version="2.0")
    files = {p.name: p for p in model_dir.iterdir() if p.is_file()}
    return write_archive(manifest, files, out, force=True)


@pytest.fixture(scope="session")
def example_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    subprocess.run([sys.executable, str(ROOT / "examples" / "digits" / "build.py"), "--out",
                    str(store)], check=True, stdout=subprocess.DEVNULL)
    return store


@pytest.fixture(scope="session")
def digit_samples(example_store: Path) -> list[tuple[bytes, int]]:
    paths = sorted((example_store / "samples" / "digits").glob("*.png"))
    return [(p.read_bytes(), int(p.stem.split("label")[1])) for p in paths]


@pytest.fixture(scope="session")
def server(example_store: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with the digits model (two versions) and the toy model."""
    tmp = tmp_path_factory.mktemp("server")
    store = example_store
    toy_archive(store, "toy", yaml_config="responseTimeout: 3\n")
    second_version(store / "digits.mar", store / "digits-2.0", tmp)
    models = {
        "digits": {"1.0": {"batchSize": 8, "maxBatchDelay": 20},
                   "2.0": {"batchSize": 1, "maxBatchDelay": 0}},
        # TorchServe's batch rule, so requests sent together are batched together
        "toy": {"1.0": {"batchSize": 8, "maxBatchDelay": 200, "batchPolicy": "torchserve"}},
    }
    config = {"max_request_size": 200000, "job_queue_size": 500,
              "models": json.dumps(models)}
    archives = ["digits=digits.mar", "digits=digits-2.0/digits.mar", "toy=toy-1.0/toy.mar"]
    running = start_server(tmp, store, archives, config)
    yield running
    stop_server(running)


# -- OIP / gRPC -------------------------------------------------------------------------
TENSORS = Path(__file__).resolve().parent / "e2e" / "tensors"

TINY_CLASSIFIER = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))
'''


def tensor_archive(store: Path, name: str, yaml_config: str | None = None) -> Path:
    """The tensor-reporting test handler (tests/e2e/tensors) as an archive."""
    return handler_archive(store, name, TENSORS / "tensor_handler.py", store / name,
                           yaml_config=yaml_config)


def tiny_classifier_archive(store: Path, name: str = "tiny") -> Path:
    """TorchServe's image_classifier handler on a small random CNN (fixed seed)."""
    import runpy

    import torch

    src = store / f".{name}-src"
    src.mkdir(exist_ok=True)
    (src / "model.py").write_text(TINY_CLASSIFIER)
    torch.manual_seed(0)
    net = runpy.run_path(str(src / "model.py"))["TinyNet"]()
    torch.save(net.state_dict(), src / "tiny.pt")
    (src / "model-config.yaml").write_text("handler:\n  resize: 32\n  crop: 28\n  topk: 3\n")
    manifest = Manifest(model_name=name, handler="image_classifier", model_file="model.py",
                        serialized_file="tiny.pt", config_file="model-config.yaml")
    files = {p.name: p for p in src.iterdir()}
    return write_archive(manifest, files, store / name, force=True)


DECLARED_OIP = """
oip:
  platform: test_platform
  inputs:
    - {name: x, datatype: FP32, shape: [-1, 3]}
  outputs:
    - {name: doubled, datatype: FP32, shape: [-1, 3]}
    - {name: shape, datatype: INT64, shape: [2]}
"""


@pytest.fixture(scope="session")
def oip_server(example_store: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Tensor models, a tiny image classifier, a toy with a one-slot queue; model API on.

    ``allowed_urls`` allows local files and http://127.0.0.1:<port>/allowed/... only.
    """
    tmp = tmp_path_factory.mktemp("oip-server")
    store = example_store
    toy_archive(store, "toy")
    tensor_archive(store, "tensors")
    tensor_archive(store, "declared", DECLARED_OIP)
    tiny_classifier_archive(store)
    models = {
        "tensors": {"1.0": {"batchSize": 4, "maxBatchDelay": 5}},
        "queue1": {"1.0": {"batchSize": 1, "maxBatchDelay": 0, "jobQueueSize": 1}},
    }
    config = {"enable_model_api": "true", "models": json.dumps(models),
              "allowed_urls": "file://.*,http://127.0.0.1:[0-9]+/allowed/.*"}
    archives = ["tensors=tensors/tensors.mar", "declared=declared/declared.mar",
                "tiny=tiny/tiny.mar", "queue1=toy-1.0/toy.mar", "digits=digits.mar"]
    running = start_server(tmp, store, archives, config)
    yield running
    stop_server(running)


class _ArchiveWeb(http.server.BaseHTTPRequestHandler):
    """Serves ``archive`` at /allowed/web.mar and a redirect at /allowed/hop.mar; else 404."""

    archive: bytes = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        if self.path == "/allowed/web.mar":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.archive)))
            self.end_headers()
            self.wfile.write(self.archive)
        elif self.path == "/allowed/hop.mar":
            self.send_response(302)
            self.send_header("Location", "/elsewhere/web.mar")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serving_archive(archive: bytes) -> Iterator[str]:
    """A loopback web server for URL registrations; yields its base URL."""
    handler = type("ArchiveWeb", (_ArchiveWeb,), {"archive": archive})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- hostile clients (issue 15) ------------------------------------------------------------
@dataclass
class Hostile:
    """A server with tight limits, its model store and its scratch (TMPDIR) folder."""

    server: RunningServer
    store: Path
    scratch: Path
    management_url: str

    def work_dir(self) -> Path:
        return next(self.scratch.glob("torchwire-models-*"))


HOSTILE_LIMITS: dict[str, object] = {
    "header_read_timeout": 2, "body_read_timeout": 2, "worker_heartbeat_timeout": 2,
    "max_workers_per_model": 2, "max_workers_total": 2, "max_download_size": 1_000_000,
    "download_timeout": 3, "max_extracted_size": 50_000_000, "job_queue_size": 4,
    "grpc_max_connection_idle_ms": 1000, "grpc_max_concurrent_streams": 8,
}


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    """The toy model (one worker) behind small limits; model API on, no keys.

    ``allowed_urls``: file://<store>/allowed/... and http://127.0.0.1:<port>/allowed/...
    """
    tmp = tmp_path_factory.mktemp("hostile")
    store, scratch = tmp / "store", tmp / "scratch"
    store.mkdir()
    scratch.mkdir()
    toy = toy_archive(store, "toy")
    (store / "allowed").mkdir()
    (store / "allowed" / "toy.mar").write_bytes(toy.read_bytes())
    models = {"toy": {"1.0": {"batchSize": 1, "maxBatchDelay": 0}}}
    config = {**HOSTILE_LIMITS, "enable_model_api": "true", "disable_token_authorization": "true",
              "models": json.dumps(models),
              "allowed_urls": f"file://{store}/allowed/.*,http://127.0.0.1:[0-9]+/allowed/.*"}
    running = start_server(tmp / "run", store, ["toy=toy-1.0/toy.mar"], config,
                           env={"TMPDIR": str(scratch)})
    yield Hostile(running, store, scratch, running.management_url)
    stop_server(running)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the Schemathesis fuzz test with many cases per operation "
                          "(tests/e2e/test_fuzz.py; minutes instead of under one)")
