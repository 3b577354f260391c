"""Snapshot files: TorchServe's format both ways, atomic names, corrupt files skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from torchwire.config import Address, ModelSettings, Settings, load_settings, parse_properties
from torchwire.devices import GpuAllocator
from torchwire.errors import ConfigError
from torchwire.registry import ModelRegistry
from torchwire.snapshot import (
    Restorer,
    SnapshotEntry,
    SnapshotWriter,
    archive_name,
    latest_snapshot,
    properties_text,
    read_models,
    settings_properties,
    snapshot_files,
)
from torchwire.store import ModelStore

# A snapshot as TorchServe 0.12 writes it (Properties.store of its config + Gson JSON).
TORCHSERVE_SNAPSHOT = (
    "#Saving snapshot\n"
    "#Sun Mar 29 04:53:34 UTC 2020\n"
    r"inference_address=http\://127.0.0.1\:8443" "\n"
    "default_workers_per_model=4\n"
    "model_store=/srv/models\n"
    r'model_snapshot={\n  "name"\: "20200329045334828-startup.cfg",\n  "modelCount"\: 2,'
    r'\n  "created"\: 1585457614832,\n  "models"\: {\n    "noop"\: {\n      "1.11"\: {'
    r'\n        "defaultVersion"\: true,\n        "marName"\: "noop.mar",'
    r'\n        "minWorkers"\: 4,\n        "maxWorkers"\: 4,\n        "batchSize"\: 1,'
    r'\n        "maxBatchDelay"\: 100,\n        "responseTimeout"\: 120,'
    r'\n        "startupTimeout"\: 120,\n        "runtimeType"\: "python"\n     },'
    r'\n      "2.0"\: {\n        "defaultVersion"\: false,\n        "marName"\: "noop_v2.mar",'
    r'\n        "minWorkers"\: 1,\n        "maxWorkers"\: 3,\n        "batchSize"\: 8,'
    r'\n        "maxBatchDelay"\: 50,\n        "responseTimeout"\: 60\n     }\n    }\n  }\n}'
    "\n"
    "tsConfigFile=config.properties\n"
)


def test_torchserves_own_snapshot_is_read(tmp_path: Path) -> None:
    path = tmp_path / "20200329045334828-startup.cfg"
    path.write_text(TORCHSERVE_SNAPSHOT)
    settings = load_settings({}, env={}, config_path=path)
    assert settings.inference_address == Address("http", "127.0.0.1", 8443)
    assert settings.unknown == {}  # model_snapshot and tsConfigFile are known keys
    assert settings.model_snapshot is not None
    entries = {(e.name, e.version): e for e in read_models(settings.model_snapshot)}
    noop, v2 = entries["noop", "1.11"], entries["noop", "2.0"]
    assert noop.default and noop.url == "noop.mar"
    assert noop.overrides.min_workers == 4 and noop.overrides.max_workers == 4
    assert not v2.default and v2.overrides.batch_size == 8 and v2.overrides.max_workers == 3


def test_settings_survive_the_round_trip(tmp_path: Path) -> None:
    settings = Settings(
        inference_address=Address("https", "0.0.0.0", 8443), model_store=tmp_path,
        allowed_urls=["file://.*", "http://a.example/.*"], enable_model_api=True,
        models={"m": {"1.0": ModelSettings(min_workers=2, batch_size=4, gpu_ids=[0, 1])}},
        private_key_file=tmp_path / "k.pem", certificate_file=tmp_path / "c pem:#!.pem",
        job_queue_size=7, unknown={"custom_key": "a=b:c", "odd key": "é"})
    path = tmp_path / "snap.cfg"

    path.write_text(properties_text(settings_properties(settings), datetime.now()))
    back = load_settings({}, env={}, config_path=path)
    assert back == settings


def test_every_model_key_survives_the_round_trip(tmp_path: Path) -> None:
    """A model key added to ModelSettings is written and read back without a second table
    (a `batchPolicy` model once crashed the writer right after start-up)."""
    every = ModelSettings(
        min_workers=1, max_workers=2, batch_size=4, max_batch_delay=7, response_timeout=9,
        startup_timeout=11, job_queue_size=13, device_type="cpu", gpu_ids=[0],
        batch_policy="torchserve", elastic_workers=False, scale_up_wait_ms=5,
        scale_down_after=3)
    assert all(getattr(every, f.name) is not None for f in dataclasses.fields(ModelSettings))
    settings = Settings(model_store=tmp_path, models={"m": {"1.0": every}})
    path = tmp_path / "snap.cfg"
    path.write_text(properties_text(settings_properties(settings), datetime.now()))
    assert load_settings({}, env={}, config_path=path).models == {"m": {"1.0": every}}


def test_model_snapshot_is_not_copied_into_the_next_snapshot() -> None:
    props = settings_properties(Settings(model_snapshot='{"models": {}}', load_models=["a.mar"]))
    assert "model_snapshot" not in props and "load_models" not in props


def test_writer_names_files_like_torchserve_and_leaves_no_temp_files(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "config", Settings(), ModelRegistry())
    written = [writer.save(kind) for kind in ("startup", "snapshot", "snapshot", "shutdown")]
    assert all(p is not None for p in written)
    names = sorted(p.name for p in (tmp_path / "config").iterdir())
    assert names == sorted(p.name for p in written if p is not None)  # no temp files left
    assert len(set(names)) == 4  # same millisecond: the next stamp, not a lost snapshot
    doc = json.loads(parse_properties(written[-1].read_text())["model_snapshot"])  # type: ignore[union-attr]
    assert doc["modelCount"] == 0 and doc["models"] == {}
    assert doc["name"] == written[-1].name  # type: ignore[union-attr]


def test_disabled_writer_writes_nothing(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "config", Settings(), ModelRegistry(), enabled=False)
    assert writer.save("startup") is None
    assert not (tmp_path / "config").exists()


def test_newest_readable_snapshot_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = SnapshotWriter(tmp_path, Settings(), ModelRegistry())
    good = writer.save("startup")
    bad = writer.save("snapshot")
    assert good is not None and bad is not None
    bad.write_bytes(bad.read_bytes()[:-40])  # cut short, as a crash mid-write would
    (tmp_path / "notes.txt").write_text("not a snapshot")
    with caplog.at_level(logging.WARNING):
        assert latest_snapshot(tmp_path) == good
    assert f"skipping snapshot {bad}" in caplog.text
    assert snapshot_files(tmp_path) == [bad, good]


def test_snapshots_in_one_millisecond_keep_their_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A startup and a snapshot written in the same millisecond: the later one is newer
    (by name, "-snapshot" sorts before "-startup", so the stamp itself must differ)."""
    frozen = datetime(2026, 12, 6, 9, 0, 0, 123000)

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return frozen

    monkeypatch.setattr("torchwire.snapshot.datetime", Clock)
    writer = SnapshotWriter(tmp_path, Settings(), ModelRegistry())
    first, second = writer.save("startup"), writer.save("snapshot")
    assert first is not None and second is not None
    assert snapshot_files(tmp_path) == [second, first]


def test_no_snapshot_at_all(tmp_path: Path) -> None:
    assert latest_snapshot(tmp_path / "missing") is None
    (tmp_path / "20200101000000000-startup.cfg").write_text("inference_address=x\n")
    assert latest_snapshot(tmp_path) is None  # no model_snapshot: cut before it


@pytest.mark.parametrize("text", ["[]", '{"models": 3}', '{"models": {"m": {"1": {}}}}',
                                  '{"models": {"m": {"1": {"marName": "m.mar", '
                                  '"minWorkers": -1}}}}'])
def test_malformed_model_snapshot_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        read_models(text)


def test_archive_name_is_the_last_url_segment() -> None:
    assert archive_name("https://host/path/model.mar") == "model.mar"
    assert archive_name("model.mar") == "model.mar"
    assert archive_name("sub/dir/") == "dir"


def test_a_version_that_cannot_be_restored_is_kept_for_later(tmp_path: Path) -> None:
    """Its archive is gone: /ping's failures name it, and later snapshots still hold it."""
    settings = Settings(model_store=tmp_path)
    models = ModelRegistry()
    writer = SnapshotWriter(tmp_path / "config", settings, models)
    store = ModelStore(settings, GpuAllocator(0))
    raw = {"defaultVersion": True, "marName": "gone.mar", "minWorkers": 2, "maxWorkers": 2,
           "modelUrl": "gone.mar"}
    entries = read_models(json.dumps({"models": {"gone": {"1.0": raw}}}))
    try:
        asyncio.run(Restorer(store, models, settings, writer).restore(entries))
    finally:
        shutil.rmtree(store.work_dir, ignore_errors=True)
    assert "gone 1.0" in models.startup_failures and not list(models)
    path = writer.save("startup")
    assert path is not None
    kept = json.loads(parse_properties(path.read_text())["model_snapshot"])["models"]
    assert kept == {"gone": {"1.0": raw}}


def test_source_prefers_a_recorded_path_then_the_stores_copy(tmp_path: Path) -> None:
    (tmp_path / "web.mar").write_bytes(b"")
    restorer = Restorer(ModelStore.__new__(ModelStore), ModelRegistry(),
                        Settings(model_store=tmp_path), SnapshotWriter(tmp_path, Settings(),
                                                                       ModelRegistry()))

    def entry(url: str, mar: str) -> SnapshotEntry:
        return SnapshotEntry("m", "1.0", url, True, ModelSettings(), {"marName": mar})

    assert restorer.source(entry("v2/toy.mar", "toy.mar")) == "v2/toy.mar"
    assert restorer.source(entry("http://h/allowed/web.mar", "web.mar")) == "web.mar"
    assert restorer.source(entry("http://h/allowed/x.mar", "x.mar")) == "http://h/allowed/x.mar"
    assert restorer.source(entry("noop.mar", "noop.mar")) == "noop.mar"  # TorchServe's files


def test_every_per_model_key_is_written_camel_case() -> None:
    from torchwire.config import ModelSettings
    from torchwire.snapshot import property_value

    entry = ModelSettings(batch_size=4, gpu_ids=[0], batch_policy="torchserve",
                          scale_up_wait_ms=5)
    written = json.loads(property_value({"m": {"1.0": entry}}))
    assert written == {"m": {"1.0": {"batchSize": 4, "deviceIds": [0],
                                     "batchPolicy": "torchserve", "scaleUpWaitMs": 5}}}
