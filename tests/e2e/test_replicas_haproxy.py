"""Three replicas behind HAProxy under steady load (c=16): a rolling SIGTERM restart and
a new default version lose nothing; a SIGKILL loses at most what was in flight there.

HAProxy (Debian's package) health-checks each replica's readiness (/ping) every 150 ms;
the replicas drain on SIGTERM (drain_delay=2 s), as in deploy/k8s/. The model takes
20 ms per request (the toy handler sleeps), so one replica with one worker answers at
most ~50 requests/s: the printed table shows what three replicas add.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import second_version, toy_archive, wait_until
from tests.e2e.replicas import HAProxy, Load, Replica, haproxy_binary

CONCURRENCY = 16
BODY = b"sleep:0.02"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Replica], HAProxy]]:
    binary = haproxy_binary()
    store = tmp_path / "store"
    store.mkdir()
    archive = toy_archive(store, "toy")
    second_version(archive, store / "toy-2.0", tmp_path / "unpack")
    replicas = [Replica(f"r{i}", tmp_path / f"r{i}", store, ["toy=toy-1.0/toy.mar"])
                for i in range(3)]
    lb: HAProxy | None = None
    try:
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.wait_ready()
        lb = HAProxy(binary, tmp_path, replicas)
        lb.wait_up([r.name for r in replicas])
        yield replicas, lb
    finally:
        if lb is not None:
            lb.stop()
        for replica in replicas:  # all drain at once
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.terminate()
        for replica in replicas:
            replica.stop()


def rolling_update(replicas: list[Replica], lb: HAProxy) -> list[int]:
    """Kubernetes' rolling update with maxSurge 3: the new pods start together; then, one
    at a time, a new one joins the balancer and, once it is UP, an old one gets SIGTERM.
    ``replicas`` then lists the new ones first. The old ones' exit statuses are returned."""
    old = list(replicas)
    replicas[:] = [replica.successor() for replica in old] + old  # all stopped at the end
    for new in replicas[:3]:
        new.launch()
    codes = []
    for before, new in zip(old, replicas[:3], strict=True):
        new.wait_ready()
        lb.add(new)
        lb.wait_up([new.name])
        codes.append(before.terminate())
        lb.command(f"disable server replicas/{before.name}")
    return codes


def new_default_version(replica: Replica) -> None:
    added = replica.manage("POST", "/models?url=toy-2.0/toy.mar&initial_workers=1"
                                   "&synchronous=true")
    assert added.status_code == 200, added.text
    switched = replica.manage("PUT", "/models/toy/2.0/set-default")
    assert switched.status_code == 200, switched.text
    described = replica.manage("GET", "/models/toy").json()  # the default version
    assert [m["modelVersion"] for m in described] == ["2.0"]


def test_rolling_restart_kill_and_new_version_under_load(
        cluster: tuple[list[Replica], HAProxy], capsys: pytest.CaptureFixture[str]) -> None:
    replicas, lb = cluster
    with Load(lb.url, BODY, CONCURRENCY) as load:
        wait_until(lambda: load.answered("warm-up") >= 50, 30, "warm-up answers")
        three = load.throughput("3 replicas", 150)
        for name in ("r1", "r2"):
            lb.command(f"disable server replicas/{name}")
        one = load.throughput("1 replica", 75)
        for name in ("r1", "r2"):
            lb.command(f"enable server replicas/{name}")
        lb.wait_up(["r1", "r2"])
        load.enter("rolling update (SIGTERM)")
        exit_codes = rolling_update(replicas, lb)
        load.enter("SIGKILL of r1b")
        replicas[1].kill()
        wait_until(lambda: not lb.states()["r1b"].startswith("UP"), 10, "r1b DOWN")
        load.enter("r1b down, r0b and r2b serve")
        wait_until(lambda: load.answered(load.phase) >= 20, 30, "answers without r1b")
        load.enter("new default version on r2b")
        new_default_version(replicas[2])
        load.enter("after")
        wait_until(lambda: load.answered("after") >= 50, 30, "answers after the change")
    with capsys.disabled():
        print("\n" + "\n".join(load.report()))
        print(f"throughput at c={CONCURRENCY}, 20 ms model: 1 replica {one:.0f}/s, "
              f"3 replicas {three:.0f}/s ({three / one:.1f}x)")
    assert exit_codes == [0, 0, 0]
    for phase in load.counts:
        if phase != "SIGKILL of r1b":
            assert load.lost(phase) == 0, (phase, dict(load.counts[phase]))
    assert load.lost("SIGKILL of r1b") <= CONCURRENCY  # at most what r1b held in flight
