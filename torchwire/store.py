"""ModelStore: find an archive, unpack it safely, and build its ModelVersion.

Per-version settings are layered: server defaults < config.properties'
``models`` entry < the archive's model-config.yaml < the caller's overrides
(CLI or management API).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from torchwire.archive import Manifest, UnpackLimits, open_archive, read_manifest, read_model_config
from torchwire.archive.manifest import model_name_problem
from torchwire.config import ModelSettings, Settings, model_settings_from_mapping
from torchwire.config.models import ServingConfig, resolve
from torchwire.devices import GpuAllocator
from torchwire.download import Downloads, download_limits
from torchwire.errors import BadRequest, ModelNotFound
from torchwire.metrics_yaml import MetricSpec
from torchwire.model import ModelObserver, ModelVersion
from torchwire.requirements import ModelRequirements, model_requirements
from torchwire.sources import fetch

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".mar", ".tar.gz", ".tgz", ".zip")


@dataclass(frozen=True)
class ModelSpec:
    """What to load: an archive reference, and optionally a name and handler to use."""

    url: str
    name: str | None = None
    handler: str | None = None  # overrides the manifest's handler
    # TorchServe's register parameter: both ends of the worker range, unless the
    # archive's model-config.yaml names a valid minWorkers/maxWorkers pair (which wins)
    initial_workers: int | None = None


def parse_model_arg(text: str) -> ModelSpec:
    """``name=archive.mar`` or ``archive.mar`` (TorchServe's ``--models`` syntax)."""
    name, sep, url = text.partition("=")
    if sep and name and "/" not in name:
        return ModelSpec(url.strip(), name.strip())
    return ModelSpec(text.strip())


class ModelStore:
    def __init__(self, settings: Settings, gpus: GpuAllocator,
                 observer: ModelObserver | None = None,
                 model_metrics: tuple[MetricSpec, ...] = ()) -> None:
        self.settings = settings
        self.gpus = gpus
        self.observer = observer
        self.root = settings.model_store
        self.model_metrics = model_metrics  # metrics_config's, made in every context.metrics
        self.downloads = Downloads()  # every download in progress, cut at shutdown

    @cached_property
    def work_dir(self) -> Path:
        """Where archives are unpacked and downloads land; made on first use."""
        return Path(tempfile.mkdtemp(prefix="torchwire-models-"))

    def close(self) -> None:
        """Delete the work folder and everything unpacked in it."""
        if "work_dir" in self.__dict__:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @asynccontextmanager
    async def fetched(self, url: str, root: Path | None = None) -> AsyncIterator[Path]:
        """The local file for ``url``: a name in ``root`` (the model store by default), a
        path, or a download under ``allowed_urls`` and the download limits, which is
        deleted after the block."""
        s = self.settings
        path, downloaded = await fetch(url, root or s.model_store, s.allowed_urls,
                                       self.work_dir, download_limits(s), self.downloads)
        try:
            yield path
        finally:
            if downloaded:
                shutil.rmtree(path.parent, ignore_errors=True)

    async def fetch_build(self, spec: ModelSpec, overrides: ModelSettings | None = None,
                          loaded_at_startup: bool = False) -> ModelVersion:
        """:meth:`build` for ``spec.url`` wherever it is (see :meth:`fetched`), off the
        event loop; the version's ``model_url`` is the url as given."""
        async with self.fetched(spec.url) as path:
            model = await asyncio.to_thread(self.build, replace(spec, url=str(path)),
                                            overrides, loaded_at_startup)
        model.model_url = spec.url
        return model

    def archives(self) -> list[Path]:
        """Every archive or model directory in the store (for ``--models all``)."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _looks_like_archive(p))

    def locate(self, url: str) -> Path:
        if url.startswith("file://"):
            url = url[len("file://"):]
        candidates = [Path(url)]
        if self.root is not None and not os.path.isabs(url):
            candidates.insert(0, self.root / url)  # the store first, then the working dir
        for path in candidates:
            if path.exists():
                return path
        where = f" in the model store {self.root}" if self.root else ""
        raise ModelNotFound(f"Model archive not found: {url}{where}")

    def build(self, spec: ModelSpec, overrides: ModelSettings | None = None,
              loaded_at_startup: bool = False) -> ModelVersion:
        """A version of ``spec``; where no layer sets the workers: default_workers_per_model,
        else one per GPU (at least one)."""
        archive = self.locate(spec.url)
        limits = UnpackLimits(self.settings.max_extracted_size,
                              self.settings.max_compression_ratio)
        model_dir = open_archive(archive, self.work_dir, limits)
        try:
            return self._version(spec, model_dir, overrides, loaded_at_startup)
        except BaseException:
            self.discard(model_dir)
            raise

    def discard(self, model_dir: Path) -> None:
        """Delete an unpacked archive's folder (never a directory archive the user owns)."""
        if not model_dir.is_relative_to(self.work_dir) or model_dir == self.work_dir:
            return
        top = model_dir.relative_to(self.work_dir).parts[0]  # the model may sit one level down
        shutil.rmtree(self.work_dir / top, ignore_errors=True)

    def _version(self, spec: ModelSpec, model_dir: Path, overrides: ModelSettings | None,
                 loaded_at_startup: bool) -> ModelVersion:
        manifest = read_manifest(model_dir)
        if spec.name and spec.name != manifest.model_name:
            manifest = _renamed(manifest, spec.name)
        if spec.handler:
            manifest = replace(manifest, handler=spec.handler)
        yaml_config = read_model_config(model_dir, manifest)
        config = self.serving_config(manifest, yaml_config, overrides or ModelSettings(),
                                     spec.initial_workers)
        return ModelVersion(
            manifest, model_dir, yaml_config, config, self.gpus,
            model_url=spec.url, log_dir=self.settings.log_location,
            loaded_at_startup=loaded_at_startup, observer=self.observer,
            torch_threads=self.settings.torch_threads, model_metrics=self.model_metrics,
            requirements=self.requirements(manifest, model_dir),
            heartbeat_timeout=float(self.settings.worker_heartbeat_timeout),
        )

    def requirements(self, manifest: Manifest, model_dir: Path) -> ModelRequirements | None:
        """The archive's requirements.txt to install, when install_py_dep_per_model is on."""
        if manifest.requirements_file is None:
            return None
        if not self.settings.install_py_dep_per_model:
            log.info("%s: not installing %s (install_py_dep_per_model is off)",
                     manifest.model_name, manifest.requirements_file)
            return None
        return model_requirements(model_dir, manifest, self.work_dir / "envs")

    def serving_config(self, manifest: Manifest, yaml_config: dict[str, Any],
                       overrides: ModelSettings,
                       initial_workers: int | None = None) -> ServingConfig:
        layered = self._defaults()
        per_model = self.settings.models.get(manifest.model_name, {})
        entry = per_model.get(manifest.model_version)
        if entry is not None:
            layered = layered.merged(entry)
        archive = model_settings_from_mapping(yaml_config, "model-config.yaml")
        layered = layered.merged(archive)
        if initial_workers is not None and not _names_workers(archive):
            layered = layered.merged(ModelSettings(min_workers=initial_workers,
                                                   max_workers=initial_workers))
        return resolve(layered.merged(overrides))

    def _defaults(self) -> ModelSettings:
        s = self.settings
        workers = s.default_workers_per_model
        if workers is None:
            workers = max(1, self.gpus.count)
        return ModelSettings(
            min_workers=workers, max_workers=workers, batch_size=s.batch_size,
            max_batch_delay=s.max_batch_delay, response_timeout=s.default_response_timeout,
            startup_timeout=s.default_startup_timeout, job_queue_size=s.job_queue_size,
            batch_policy=s.batch_policy, elastic_workers=s.elastic_workers,
            scale_up_wait_ms=s.scale_up_wait_ms, scale_down_after=s.scale_down_after,
        )


def _names_workers(archive: ModelSettings) -> bool:
    """The archive's own worker range, which beats ``initial_workers`` in TorchServe:
    ``minWorkers`` of at least 1 and ``maxWorkers`` not below it."""
    low, high = archive.min_workers, archive.max_workers
    return low is not None and low >= 1 and high is not None and high >= low


def _renamed(manifest: Manifest, name: str) -> Manifest:
    problem = model_name_problem(name)
    if problem:
        raise BadRequest(f"invalid model name {name!r}: {problem}")
    return replace(manifest, model_name=name)


def _looks_like_archive(path: Path) -> bool:
    if path.is_dir():
        return (path / "MAR-INF" / "MANIFEST.json").is_file()
    return path.name.endswith(ARCHIVE_SUFFIXES)
