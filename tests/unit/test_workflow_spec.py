"""Workflow specifications: TorchServe's properties, defaults and DAG checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from torchwire.errors import ArchiveError, InvalidWorkflow
from torchwire.workflow.archive import WarRequest, open_war, read_war_manifest, write_war
from torchwire.workflow.dag import combine_leaves
from torchwire.workflow.spec import NodeSettings, parse_spec

SPEC = """
models:
    min-workers: 2
    batch-size: 3
    timeout-ms: 500
    m1:
       url: model1.mar
       batch-size: 4
    m2:
       url: model2.mar
    unused:
       url: unused.mar
dag:
  pre: [m1, m2]
  m1: [post]
  m2: [post]
"""


def test_properties_layer_global_then_per_model() -> None:
    spec = parse_spec(yaml.safe_load(SPEC))
    assert spec.order[0] == "pre" and spec.order[-1] == "post"
    assert spec.nodes["m1"].settings == NodeSettings(min_workers=2, batch_size=4, timeout_ms=500)
    assert spec.nodes["m2"].settings.batch_size == 3
    assert "unused" not in spec.nodes  # only DAG nodes are served
    pre = spec.nodes["pre"]
    assert pre.is_function
    assert (pre.settings.batch_size, pre.settings.max_batch_delay, pre.settings.timeout_ms) == (
        1, 0, 500)
    assert spec.parents["post"] == ("m1", "m2")
    assert spec.leaves == ["post"]
    assert spec.dag_text == "{pre=[m1, m2], m1=[post], m2=[post]}"


@pytest.mark.parametrize(("dag", "why"), [
    ({"a": ["b"], "c": ["b"]}, "only one start node"),
    ({"a": ["b"], "b": ["c"], "c": ["b"]}, "Not a valid DAG"),
    ({"a": ["a"]}, "Self loop"),
    ({"a": "b"}, "must be a list"),
    ({}, "'dag' must map"),
])
def test_bad_dags_are_refused(dag: dict[str, object], why: str) -> None:
    with pytest.raises(InvalidWorkflow, match=why):
        parse_spec({"models": {}, "dag": dag})


def test_bad_property_is_refused() -> None:
    with pytest.raises(InvalidWorkflow, match="models.m.batch-size must be an integer"):
        parse_spec({"models": {"m": {"url": "m.mar", "batch-size": "x"}}, "dag": {"m": []}})


def test_leaves_combine_as_torchserve() -> None:
    assert combine_leaves({"only": b"raw"}) == b"raw"
    both = json.loads(combine_leaves({"a": b'{"x": 1}', "b": b"text"}))
    assert both == {"a": {"x": 1}, "b": "text"}


def test_war_round_trip(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "h.py").write_text("def pre(data, context):\n    return data\n")
    war = write_war(WarRequest("wf", tmp_path / "spec.yaml", tmp_path / "h.py"), tmp_path)
    with zipfile.ZipFile(war) as z:
        assert sorted(z.namelist()) == ["WAR-INF/MANIFEST.json", "h.py", "spec.yaml"]
    with pytest.raises(ArchiveError, match="already exists"):
        write_war(WarRequest("wf", tmp_path / "spec.yaml"), tmp_path)
    manifest = read_war_manifest(open_war(war, tmp_path / "out"))
    assert (manifest.name, manifest.spec_file, manifest.handler) == ("wf", "spec.yaml", "h.py")


def test_war_without_manifest_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.war"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("spec.yaml", SPEC)
    with pytest.raises(InvalidWorkflow, match="no WAR-INF/MANIFEST.json"):
        read_war_manifest(open_war(bad, tmp_path / "out"))
