"""Config snapshots: models registered at run time come back after a kill -9 and restart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    RunningServer,
    listening,
    second_version,
    serving_archive,
    start_server,
    stop_server,
    toy_archive,
    wait_for_ping,
    wait_until,
)
from torchwire.config import parse_properties
from torchwire.snapshot import snapshot_files

NAME = re.compile(r"[0-9]{17}-(startup|snapshot|shutdown)\.cfg")


@dataclass
class Front:
    server: RunningServer
    tmp: Path
    store: Path

    def mgmt(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.management_url, timeout=60)

    def snapshots(self) -> list[Path]:
        return snapshot_files(self.tmp / "logs" / "config")

    def kill_front(self) -> None:
        """kill -9 the front process only, as a crash would; then reap what is left."""
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(30)
        try:
            os.killpg(self.server.proc.pid, signal.SIGKILL)  # workers left behind, if any
        except ProcessLookupError:
            pass

    def restart(self) -> None:
        """Start again in the same folder with no --ts-config (and no --models); the
        snapshot holds the config's port 0, so the new ports are read from the log."""
        log = self.server.log_dir / "ts_log.log"
        offset = log.stat().st_size
        cmd = [sys.executable, "-m", "torchwire", "start", "--foreground", "--model-store",
               str(self.store), "--log-location", str(self.tmp / "logs")]
        proc = subprocess.Popen(cmd, cwd=self.tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.server = RunningServer(proc, "", self.server.log_dir)
        try:
            wait_until(lambda: {"inference", "management"} <= set(listening(log, offset)), 90,
                       "the restarted server listening")
            at = listening(log, offset)
            self.server = RunningServer(proc, at["inference"], self.server.log_dir,
                                        management_url=at["management"])
            wait_for_ping(self.server.url, proc, 200, 90)
        except BaseException:
            stop_server(self.server)
            raise


def snapshot_models(path: Path) -> dict[str, dict[str, dict[str, object]]]:
    models: dict[str, dict[str, dict[str, object]]] = json.loads(
        parse_properties(path.read_text())["model_snapshot"])["models"]
    return models


def describe(front: Front, name: str, version: str = "") -> dict[str, object]:
    with front.mgmt() as c:
        r = c.get(f"/models/{name}/{version}".rstrip("/"))
    assert r.status_code == 200, r.text
    doc: dict[str, object] = r.json()[0]
    return doc


def live_workers(doc: dict[str, object]) -> int:
    workers = doc["workers"]
    assert isinstance(workers, list)
    return sum(1 for w in workers if w["status"] == "READY")


@pytest.fixture(scope="module")
def web_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback web server with a toy archive at /allowed/web.mar (up for the restarts)."""
    scratch = tmp_path_factory.mktemp("web")
    archive = toy_archive(scratch, "web")
    with serving_archive(archive.read_bytes()) as url:
        yield url


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, web_archive: str) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("snap")
    store = tmp / "store"
    store.mkdir()
    toy_archive(store, "toy")
    second_version(store / "toy-1.0" / "toy.mar", store / "toy-2.0", tmp)
    config = {"enable_model_api": "true", "disable_token_authorization": "true",
              "default_workers_per_model": 1,
              "allowed_urls": "file://.*,http://127.0.0.1:[0-9]+/allowed/.*"}
    server = start_server(tmp, store, ["toy=toy-1.0/toy.mar"], config)
    f = Front(server, tmp, store)
    yield f
    stop_server(f.server)


def build_state(front: Front, web: str) -> None:
    """Two models (one by URL), one scaled to 2 workers, a non-default version as default."""
    with front.mgmt() as c:  # toy 1.0 was loaded at start
        for url in ("toy-2.0/toy.mar", f"{web}/allowed/web.mar"):
            r = c.post("/models", params={"url": url, "synchronous": "true"})
            assert r.status_code == 200, r.text
        scaled = c.put("/models/web", params={"min_worker": 2, "synchronous": "true"})
        default = c.put("/models/toy/2.0/set-default")
    assert scaled.status_code == 200 and default.status_code == 200


def assert_restored(front: Front, web: str, web_workers: int) -> None:
    toy, web_doc = describe(front, "toy"), describe(front, "web")
    assert toy["modelVersion"] == "2.0"  # the default survived
    assert live_workers(describe(front, "toy", "1.0")) == 1
    assert web_doc["modelUrl"] == f"{web}/allowed/web.mar"
    assert web_doc["minWorkers"] == web_workers and live_workers(web_doc) == web_workers
    for path in ("toy", "toy/1.0", "toy/2.0", "web"):
        r = httpx.post(f"{front.server.url}/predictions/{path}", content=b"hi", timeout=60)
        assert r.status_code == 200 and r.json()["echo"] == "hi"


def test_snapshots_are_written_in_torchserves_format(front: Front, web_archive: str) -> None:
    build_state(front, web_archive)
    names = [p.name for p in front.snapshots()]
    assert all(NAME.fullmatch(n) for n in names)
    assert names[-1].endswith("-startup.cfg") and names[0].endswith("-snapshot.cfg")
    props = parse_properties(front.snapshots()[0].read_text())
    assert props["enable_model_api"] == "true"
    doc = json.loads(props["model_snapshot"])
    assert doc["modelCount"] == 3
    toy2 = doc["models"]["toy"]["2.0"]
    assert toy2["defaultVersion"] is True and toy2["marName"] == "toy.mar"
    assert doc["models"]["web"]["1.0"]["minWorkers"] == 2


def test_kill_9_then_restart_without_config_restores_everything(front: Front,
                                                                 web_archive: str) -> None:
    front.kill_front()
    front.restart()
    assert_restored(front, web_archive, web_workers=2)
    assert "restoring 3 model version(s)" in front.server.log_text()


def test_a_truncated_newest_snapshot_falls_back_to_the_one_before(front: Front,
                                                                 web_archive: str) -> None:
    with front.mgmt() as c:
        r = c.put("/models/web", params={"min_worker": 1, "synchronous": "true"})
    assert r.status_code == 200
    newest = front.snapshots()[0]
    assert snapshot_models(newest)["web"]["1.0"]["minWorkers"] == 1
    front.kill_front()
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash mid-write
    front.restart()
    assert_restored(front, web_archive, web_workers=2)  # the previous snapshot's state
    assert f"skipping snapshot {newest}" in front.server.log_text()
