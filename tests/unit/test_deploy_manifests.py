"""Every port, path, argument and environment variable that deploy/ names is the server's.

No cluster is reachable here: the manifests are parsed as YAML and each value they give
torchwire is checked against what the server really reads and serves.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from torchwire.api.metrics import MetricsAPI
from torchwire.auth import OPEN_PATHS, read_key_file
from torchwire.cli import cli_settings, parser
from torchwire.config import SETTING_KEYS, Settings, load_settings
from torchwire.metrics import Metrics
from torchwire.registry import ModelRegistry
from torchwire.server import Server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE_CONFIG = DEPLOY / "config.properties"
KSERVE_CONFIG = "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8085\n"
ENV_NAMES = {f"{prefix}_{key.upper()}" for key in SETTING_KEYS for prefix in ("TS", "TORCHWIRE")}
ENV_NAMES |= {"TORCHWIRE_CONFIG_FILE", "TS_CONFIG_FILE", "TORCHWIRE_CONFIG_SEARCH",
              "OMP_NUM_THREADS", "PATH", "PYTHONUNBUFFERED", "TORCHWIRE_LIVE_URL"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((str(path.relative_to(ROOT)), doc))
    return found


def kind(name: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == name]


def one(name: str) -> dict[str, Any]:
    (doc,) = kind(name)
    return doc


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for each torchwire container of a Deployment or runtime."""
    for doc in kind("Deployment") + kind("ServingRuntime"):
        pod = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
        for container in pod["containers"]:
            yield pod, container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def settings_of(container: dict[str, Any], config: Path, tmp_path: Path) -> Settings:
    """What the container's server would run with: its args > its env > the config file."""
    env = dict(dockerfile()["env"]) | env_of(container)
    env.pop("TS_KEY_FILE", None)  # the Secret's file is mounted in the pod, not here
    args = parser().parse_args(["start", "--foreground", *container.get("args", [])])
    return load_settings(cli_settings(args), env=env, config_path=config)


def config_for(doc_kind: str, tmp_path: Path) -> Path:
    if doc_kind == "Deployment":
        return IMAGE_CONFIG
    kserve = tmp_path / "config.properties"  # what a KServe user's storageUri holds
    kserve.write_text(KSERVE_CONFIG)
    return kserve


def listening_ports(s: Settings) -> dict[str, int]:
    return {"inference": s.inference_address.port, "management": s.management_address.port,
            "metrics": s.metrics_address.port, "grpc_inference": s.grpc_inference_port,
            "grpc_management": s.grpc_management_port}


def dockerfile() -> dict[str, Any]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    lines = lines[last_from:]  # the final image's stage
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("ENV "):
            env.update(part.split("=", 1) for part in shlex.split(line[4:]))
    expose = [int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]]
    entry = next(line for line in lines if line.startswith("ENTRYPOINT "))
    health = next(line for line in lines if line.startswith("HEALTHCHECK "))
    return {"env": env, "expose": expose, "entrypoint": yaml.safe_load(entry[11:]),
            "healthcheck": health}


@pytest.fixture(scope="module")
def served_paths() -> dict[str, set[str]]:
    server = Server(load_settings({}, env={}), [])
    try:
        inference = {r.path for r in server.inference_routes() if isinstance(r, Route)}
    finally:
        shutil.rmtree(server.store.work_dir, ignore_errors=True)
    metrics = {r.path for r in MetricsAPI(Metrics()).routes() if isinstance(r, Route)}
    return {"inference": inference, "metrics": metrics}


def test_every_manifest_parses_and_names_a_known_kind() -> None:
    kinds = {doc["kind"] for _, doc in documents()}
    assert kinds == {"ServingRuntime", "InferenceService", "Deployment", "Service",
                     "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"}


def test_env_vars_are_settings_with_valid_values(tmp_path: Path) -> None:
    for _, container in containers():
        for name in [e["name"] for e in container.get("env", [])]:
            assert name in ENV_NAMES, f"{name} is not read by torchwire"
        settings_of(container, IMAGE_CONFIG, tmp_path)  # raises ConfigError on a bad value
    for name in dockerfile()["env"]:
        assert name in ENV_NAMES, f"Dockerfile ENV {name} is not read by torchwire"


def test_the_key_secret_is_a_key_file_mounted_where_ts_key_file_points(tmp_path: Path) -> None:
    secret = one("Secret")
    (name, text), = secret["stringData"].items()
    (tmp_path / name).write_text(text)
    assert set(read_key_file(tmp_path / name)) == {"management", "inference", "API"}
    for pod, container in containers():
        key_file = Path(env_of(container)["TS_KEY_FILE"])
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName")
                      == secret["metadata"]["name"])
        assert Path(mounts[volume["name"]]) / name == key_file


def test_image_entrypoint_and_healthcheck() -> None:
    image = dockerfile()
    assert image["entrypoint"] == ["torchwire", "start", "--foreground"]
    assert image["env"]["TORCHWIRE_CONFIG_SEARCH"].split(":") == [
        "/mnt/models/config/config.properties", "/home/model-server/config.properties"]
    assert "TORCHWIRE_LIVE_URL" in image["healthcheck"]
    live = image["env"]["TORCHWIRE_LIVE_URL"]
    settings = load_settings(env={}, config_path=IMAGE_CONFIG)
    assert live == f"http://127.0.0.1:{settings.inference_address.port}/live"
    assert set(image["expose"]) == set(listening_ports(settings).values())


def test_container_ports_probes_and_scrape_annotations(
        tmp_path: Path, served_paths: dict[str, set[str]]) -> None:
    for doc in kind("Deployment") + kind("ServingRuntime"):
        pod = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
        annotations = (doc["spec"]["template"]["metadata"]["annotations"]
                       if doc["kind"] == "Deployment" else doc["spec"]["annotations"])
        for container in pod["containers"]:
            s = settings_of(container, config_for(doc["kind"], tmp_path), tmp_path)
            ports = listening_ports(s)
            named = {p.get("name"): p["containerPort"] for p in container["ports"]}
            assert set(named.values()) <= set(ports.values()), doc["kind"]
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe not in container:
                    continue
                get = container[probe]["httpGet"]
                assert get["path"] in served_paths["inference"] & OPEN_PATHS, (probe, get)
                port = named.get(get["port"], get["port"]) if "port" in get else 8080
                assert port == ports["inference"], (doc["kind"], probe)
            scrape = {k.split("/")[1]: v for k, v in annotations.items()}
            assert int(scrape["port"]) == ports["metrics"]
            assert scrape["path"] in served_paths["metrics"]


def test_probes_split_liveness_from_readiness() -> None:
    for _, container in containers():
        assert container["livenessProbe"]["httpGet"]["path"] in {"/live", "/v2/health/live"}
        assert container["readinessProbe"]["httpGet"]["path"] in {"/ping", "/v2/health/ready"}


def test_deployment_drains_within_its_grace_period(tmp_path: Path) -> None:
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    s = settings_of(pod["containers"][0], IMAGE_CONFIG, tmp_path)
    assert pod["terminationGracePeriodSeconds"] > s.drain_delay + s.drain_timeout
    readiness = pod["containers"][0]["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < s.drain_delay
    assert not s.disable_token_authorization  # 0.0.0.0 keeps its keys


def test_service_pdb_and_autoscalers_point_at_the_deployment() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for hpa in kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_queue_depth_autoscaler_reads_a_metric_torchwire_exports() -> None:
    metrics = Metrics()
    metrics.watch(ModelRegistry())
    exported = {m.name for m in metrics.registry.collect()}
    assert "torchwire_queue_depth" in exported
    (hpa,) = [h for h in kind("HorizontalPodAutoscaler")
              if h["spec"]["metrics"][0]["type"] == "Pods"]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load(one("ConfigMap")["data"]["config.yaml"])["rules"]
    assert [r["name"]["as"] for r in rules] == [metric]
    assert all(metric in r["seriesQuery"] and metric in r["metricsQuery"] for r in rules)
    assert metric in exported


def test_kserve_runtime_and_inference_services_fit_together(tmp_path: Path) -> None:
    runtime = one("ServingRuntime")
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    assert {"name": "pytorch"}.items() <= runtime["spec"]["supportedModelFormats"][0].items()
    (container,) = runtime["spec"]["containers"]
    assert "args" not in container  # the image finds KServe's layout by itself
    ports = listening_ports(settings_of(container, config_for("ServingRuntime", tmp_path),
                                        tmp_path))
    assert ports["inference"] == 8080 and ports["grpc_inference"] == 8081
    for isvc in kind("InferenceService"):
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] == "pytorch"
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
        for port in model.get("ports", []):
            assert port["name"] == "h2c" and port["containerPort"] == ports["grpc_inference"]
