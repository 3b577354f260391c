"""Per-model settings: config.properties < the archive's model-config.yaml < API/CLI overrides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from torchwire.archive import Manifest
from torchwire.config import ModelSettings, load_settings
from torchwire.devices import GpuAllocator
from torchwire.errors import ConfigError
from torchwire.store import ModelStore


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    models = {"m": {"1.0": {"batchSize": 2, "maxBatchDelay": 7, "responseTimeout": 9,
                            "minWorkers": 3, "maxWorkers": 3}}}
    cfg = tmp_path / "config.properties"
    cfg.write_text(f"batch_size=1\njob_queue_size=50\nmodels={json.dumps(models)}\n")
    store = ModelStore(load_settings(env={}, config_path=cfg), GpuAllocator(0))
    try:
        manifest = Manifest(model_name="m", handler="h.py")
        yaml_config = {"batchSize": 4, "jobQueueSize": 11, "deviceType": "cpu",
                       "startupTimeout": 30, "minWorkers": 1, "maxWorkers": 2,
                       "handler": {"topk": 3}}
        from_yaml = store.serving_config(manifest, yaml_config, ModelSettings())
        assert from_yaml.batch_size == 4  # model-config.yaml beats config.properties
        assert from_yaml.max_batch_delay == 7  # config.properties where the yaml is silent
        assert from_yaml.response_timeout == 9.0
        assert from_yaml.job_queue_size == 11
        assert (from_yaml.min_workers, from_yaml.max_workers) == (1, 2)
        assert from_yaml.startup_timeout == 30.0 and from_yaml.device_type == "cpu"
        overridden = store.serving_config(manifest, yaml_config,
                                          ModelSettings(batch_size=8, min_workers=2))
        assert overridden.batch_size == 8  # the management API / CLI beats the yaml
        assert overridden.min_workers == 2 and overridden.max_batch_delay == 7
        other = store.serving_config(Manifest(model_name="x", handler="h.py"), {}, ModelSettings())
        assert other.batch_size == 1 and other.job_queue_size == 50  # server defaults
    finally:
        shutil.rmtree(store.work_dir)


def test_scheduling_keys_are_server_wide_and_per_model(tmp_path: Path) -> None:
    models = {"m": {"1.0": {"batchPolicy": "adaptive", "scaleUpWaitMs": 20}}}
    cfg = tmp_path / "config.properties"
    cfg.write_text("batch_policy=torchserve\nelastic_workers=false\nscale_down_after=5\n"
                   f"models={json.dumps(models)}\n")
    store = ModelStore(load_settings(env={}, config_path=cfg), GpuAllocator(0))
    try:
        manifest = Manifest(model_name="m", handler="h.py")
        m = store.serving_config(manifest, {"elasticWorkers": True}, ModelSettings())
        assert m.batch_policy == "adaptive"  # the model's key beats the server's
        assert (m.elastic.enabled, m.elastic.scale_up_wait_ms, m.elastic.scale_down_after) == (
            True, 20, 5.0)
        other = store.serving_config(Manifest(model_name="x", handler="h.py"), {}, ModelSettings())
        assert other.batch_policy == "torchserve" and not other.elastic.enabled
        assert other.elastic.scale_up_wait_ms == 100  # the default
    finally:
        shutil.rmtree(store.work_dir)


def test_a_bad_batch_policy_is_refused_with_the_choices(tmp_path: Path) -> None:
    cfg = tmp_path / "config.properties"
    cfg.write_text("batch_policy=lazy\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, config_path=cfg)
    assert "batch_policy" in str(err.value) and "adaptive, torchserve" in str(err.value)
