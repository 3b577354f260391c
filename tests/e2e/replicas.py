"""Helpers for the replica test: torchwire replicas, HAProxy in front, a steady load."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process, wait_for_ping, wait_until

MANAGEMENT_KEY = "replica-test-management-key"


def haproxy_binary() -> str:
    """HAProxy's path, installing Debian's package when missing; skip where that fails."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("haproxy is not installed and apt-get is unavailable (or not root)")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "haproxy"]):
        done = subprocess.run(cmd, capture_output=True, timeout=300,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            pytest.skip(f"cannot install haproxy: {done.stderr.decode(errors='replace')[-300:]}")
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if not found:
        pytest.skip("apt-get installed haproxy but it is not on PATH")
    return found


@dataclass
class Replica:
    """One torchwire server process; it keeps its ports across restarts."""

    name: str
    root: Path
    store: Path
    models: list[str]
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None
        wait_for_ping(self.url, self.proc, 200, 90)

    def launch(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.properties"
        cfg.write_text(
            f"inference_address=http://127.0.0.1:{self.port}\n"
            f"management_address=http://127.0.0.1:{self.management_port}\n"
            f"metrics_address=http://127.0.0.1:{free_port()}\n"
            f"grpc_inference_port={free_port()}\ngrpc_management_port={free_port()}\n"
            "default_workers_per_model=1\nenable_model_api=true\n"
            "drain_delay=2\ndrain_timeout=20\n")
        env = {**os.environ, "TS_MANAGEMENT_KEY": MANAGEMENT_KEY}
        cmd = [sys.executable, "-m", "torchwire", "start", "--foreground", "--model-store",
               str(self.store), "--ts-config", str(cfg), "--log-location",
               str(self.root / "logs"), "--models", *self.models]
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def successor(self) -> Replica:
        """The next pod of a rolling update: the same model store, its own ports."""
        name = f"{self.name}b"
        return Replica(name, self.root.with_name(name), self.store, self.models)

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator does; the exit status."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(40)

    def kill(self) -> None:
        """SIGKILL the front and its worker processes at once, as a node failure would."""
        assert self.proc is not None
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for target in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, 9)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def manage(self, method: str, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {MANAGEMENT_KEY}"}
        return httpx.request(method, self.management_url + path, headers=headers, timeout=60)


CHECK = "inter 150ms fall 2 rise 1"  # readiness: 2 failed checks (<= ~0.5 s) take a replica out
HAPROXY_CONFIG = """\
global
    maxconn 2000
    stats socket {socket} level admin
    log stderr format raw local0 info
defaults
    mode http
    log global
    option httplog
    option log-separate-errors
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    # A request that never reached a replica, or reached one that died before answering
    # (predictions are safe to repeat), goes to another replica.
    retry-on conn-failure empty-response
frontend torchwire
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance leastconn
    option httpchk GET /ping
    http-check expect status 200
    timeout check 1s
    default-server {check}
{servers}
"""


class HAProxy:
    def __init__(self, binary: str, root: Path, replicas: list[Replica]) -> None:
        self.port = free_port()
        self.socket = root / "haproxy.sock"
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        self.config = root / "haproxy.cfg"
        self.config.write_text(HAPROXY_CONFIG.format(socket=self.socket, port=self.port,
                                                     servers=servers, check=CHECK))
        self.log = root / "haproxy.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.replicas = replicas

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def add(self, replica: Replica) -> None:
        """Put a new replica behind the balancer (in service once its checks pass)."""
        for line in (f"add server replicas/{replica.name} 127.0.0.1:{replica.port} check {CHECK}",
                     f"enable health replicas/{replica.name}",
                     f"enable server replicas/{replica.name}"):
            answer = self.command(line).strip()
            assert "error" not in answer.lower() and "unknown" not in answer.lower(), answer

    def states(self) -> dict[str, str]:
        """Each replica's status as HAProxy sees it (UP, DOWN, MAINT...)."""
        rows = [line.split(",") for line in self.command("show stat").splitlines()
                if line.startswith("replicas,")]
        return {row[1]: row[17] for row in rows if row[1] != "BACKEND"}

    def wait_up(self, names: list[str]) -> None:
        wait_until(lambda: self.socket.exists() and all(
            self.states().get(n, "").startswith("UP") for n in names), 30, f"{names} UP")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Load:
    """``concurrency`` clients sending back to back through ``url``, in their own thread.

    Each answer is counted under the phase that was current when its request was sent:
    ``ok`` (200) or what went wrong (a status or a transport error's name).
    """

    def __init__(self, url: str, body: bytes, concurrency: int) -> None:
        self.url, self.body, self.concurrency = url, body, concurrency
        self.phase = "warm-up"
        self.errors: list[str] = []  # what each transport error said, with its phase
        self.inflight: collections.Counter[str] = collections.Counter()
        self.started: dict[str, float] = {"warm-up": time.monotonic()}
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def enter(self, phase: str) -> None:
        """Start counting under ``phase`` once every request of the last one is answered,
        so that what happens next is charged to ``phase`` alone."""
        before, self.phase = self.phase, phase
        self.started[phase] = time.monotonic()
        wait_until(lambda: self.inflight[before] == 0, 60, f"the {before!r} requests' answers")

    def throughput(self, phase: str, answers: int) -> float:
        """Answers per second while phase ``phase`` collects ``answers`` answers."""
        self.enter(phase)
        started, base = time.monotonic(), self.answered(phase)
        wait_until(lambda: self.answered(phase) >= base + answers, 30, f"{answers} answers")
        return (self.answered(phase) - base) / (time.monotonic() - started)

    def report(self) -> list[str]:
        """One line per phase: seconds, answers, lost (non-200 or no answer), outcomes."""
        lines = [f"{'phase':<28}{'s':>6}{'answered':>10}{'lost/5xx':>10}"]
        ends = [*list(self.started.values())[1:], time.monotonic()]
        for (phase, start), end in zip(self.started.items(), ends, strict=True):
            counts = self.counts[phase]
            lines.append(f"{phase:<28}{end - start:>6.1f}{sum(counts.values()):>10}"
                         f"{self.lost(phase):>10}  {dict(counts)}")
        return lines + self.errors

    def answered(self, phase: str) -> int:
        return sum(self.counts[phase].values())

    def lost(self, phase: str) -> int:
        return sum(n for what, n in self.counts[phase].items() if what != "ok")

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.concurrency)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            phase = self.phase
            self.inflight[phase] += 1
            try:
                response = await client.post("/predictions/toy", content=self.body)
                outcome = "ok" if response.status_code == 200 else str(response.status_code)
            except httpx.TransportError as exc:
                outcome = type(exc).__name__
                self.errors.append(f"{phase}: {exc!r}")
            self.counts[phase][outcome] += 1
            self.inflight[phase] -= 1
