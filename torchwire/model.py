"""ModelVersion: one loaded version of a model — its settings, batcher and workers."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from torchwire.archive import Manifest
from torchwire.batching import Batcher, Job, deadline_of
from torchwire.config.models import ServingConfig
from torchwire.devices import GpuAllocator
from torchwire.errors import DependencyInstallError, ServiceUnavailable
from torchwire.metrics_yaml import MetricSpec
from torchwire.protocol import PREDICT, BatchDone, Item, Kind, Outcome, WorkerSpec
from torchwire.requirements import ModelRequirements
from torchwire.stream import ResponseStream
from torchwire.workers.elastic import ElasticScaler
from torchwire.workers.pool import WorkerPool
from torchwire.workers.process import WorkerHooks, WorkerProcess

log = logging.getLogger(__name__)


class ModelState(enum.Enum):
    LOADING = "Loading"  # workers wanted, none has loaded yet
    READY = "Ready"  # at least one worker is serving
    FAILED = "Failed"  # the model could not be loaded (see load_error)
    STOPPED = "Stopped"  # scaled to zero workers on purpose
    UNLOADING = "Unloading"


class ModelObserver(Protocol):
    """What the server's metrics learn from a model version."""

    def observe_batch(self, model: ModelVersion, jobs: list[Job], done: BatchDone) -> None:
        """A worker answered ``jobs`` as one batch."""

    def observe_load(self, model: ModelVersion, worker_id: str, seconds: float) -> None:
        """A worker loaded the model, ``seconds`` after it was spawned."""


class ModelVersion:
    def __init__(
        self,
        manifest: Manifest,
        model_dir: Path,
        yaml_config: dict[str, Any],
        config: ServingConfig,
        gpus: GpuAllocator,
        model_url: str = "",
        log_dir: Path | None = None,
        loaded_at_startup: bool = False,
        observer: ModelObserver | None = None,
        torch_threads: int | None = None,
        requirements: ModelRequirements | None = None,
        model_metrics: tuple[MetricSpec, ...] = (),
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self.model_metrics = model_metrics
        self.torch_threads = torch_threads
        self.manifest = manifest
        self.name = manifest.model_name
        self.version = manifest.model_version
        self.model_dir = model_dir
        self.yaml_config = yaml_config
        self.config = config
        self.gpus = gpus
        self.use_gpu = gpus.uses_gpu(config.device_type)
        self.model_url = model_url
        self.workflow: str | None = None  # set when it serves a node of this workflow
        self.loaded_at_startup = loaded_at_startup
        self.observer = observer
        self.unloading = False
        self.created = time.time()
        self.requirements = requirements
        self._requirements_ready = requirements is None
        self._requirements_lock = asyncio.Lock()
        self.installing = False  # pip is installing requirements.txt; requests queue meanwhile
        self._scaling = asyncio.Lock()
        self.batcher = Batcher(config.batch_size, config.max_batch_delay, config.job_queue_size,
                               config.batch_policy)
        self.pool = self._new_pool(log_dir, heartbeat_timeout)
        self.elastic = ElasticScaler(self, config.elastic)

    def _new_pool(self, log_dir: Path | None, heartbeat_timeout: float) -> WorkerPool:
        """The supervisor of this version's workers, fed by its batcher."""
        hooks = WorkerHooks(self.batcher.slot_free, self.batcher.requeue, self._batch_done,
                            self._worker_loaded)
        return WorkerPool(
            f"{self.name}-{self.version}", self._spec, hooks, self.config.response_timeout,
            self.config.startup_timeout, log_dir, on_failed=self._load_failed,
            heartbeat_timeout=heartbeat_timeout,
        )

    # -- lifecycle ---------------------------------------------------------------
    async def start(self, workers: int | None = None) -> None:
        self.batcher.start()
        self.elastic.start()
        await self.scale(self.config.min_workers if workers is None else workers)

    async def scale(self, workers: int, max_workers: int | None = None,
                    drain_timeout: float | None = None) -> None:
        """Grow or shrink to ``workers``; a retired worker finishes its batches first."""
        async with self._scaling:
            self.config = replace(
                self.config,
                min_workers=workers,
                max_workers=max(workers, self.config.max_workers if max_workers is None
                                else max_workers),
            )
            if workers > 0 and not await self._install_requirements():
                return
            drain = self.config.response_timeout if drain_timeout is None else drain_timeout
            self.elastic.reset()
            await self.pool.scale(workers, drain)
        await self.pool.wait_started()

    async def resize(self, workers: int) -> None:
        """The elastic scaler's move, kept within the scale API's floor and ceiling."""
        async with self._scaling:
            low, high = self.config.min_workers, self.config.max_workers
            await self.pool.scale(min(high, max(low, workers)), self.config.response_timeout)

    async def _install_requirements(self) -> bool:
        """Install requirements.txt before the first worker starts; False if pip failed."""
        async with self._requirements_lock:
            if self._requirements_ready or self.requirements is None:
                return True
            self.installing = True
            try:
                await self.requirements.install(self.config.startup_timeout)
            except DependencyInstallError as exc:
                self.pool.events.load_error = exc.message
                self._load_failed(exc.message)
                return False
            finally:
                self.installing = False
            self._requirements_ready = True
            return True

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Answer every request already accepted (within ``drain_timeout``), then stop."""
        await self.elastic.stop()
        await self._drain(drain_timeout)
        self.unloading = True
        await self.pool.stop(drain_timeout)
        self.batcher.fail_pending(ServiceUnavailable(f"model {self.name} is being unloaded"))
        await self.batcher.stop()

    async def _drain(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pool.live and (waiting := self._unanswered()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(waiting, timeout=remaining)

    def _unanswered(self) -> list[asyncio.Future[Outcome]]:
        jobs = list(self.batcher.pending)
        for worker in self.pool.workers.values():
            jobs += [job for entry in worker.inflight.values() for job in entry.jobs]
        return [job.future for job in jobs if not job.future.done()]

    @property
    def state(self) -> ModelState:
        if self.unloading:
            return ModelState.UNLOADING
        if self.pool.failed():
            return ModelState.FAILED
        if self.pool.live > 0:
            return ModelState.READY
        if self.stopped:
            return ModelState.STOPPED
        return ModelState.LOADING

    @property
    def stopped(self) -> bool:
        """Scaled to zero workers on purpose (not merely not started yet)."""
        return self.config.min_workers == 0 and self.pool.wanted == 0

    @property
    def ready(self) -> bool:
        """True when a request sent now would be served (a worker is up)."""
        return self.state is ModelState.READY

    @property
    def healthy(self) -> bool:
        """True unless it failed, is still loading, or has fewer live workers than wanted."""
        state = self.state
        if state is ModelState.STOPPED:
            return True  # no workers were asked for
        return state is ModelState.READY and self.pool.live >= self.config.min_workers

    @property
    def queue_depth(self) -> int:
        return sum(1 for job in self.batcher.pending if not job.future.done())

    @property
    def load_error(self) -> str | None:
        return self.pool.events.load_error

    # -- inference ---------------------------------------------------------------
    @property
    def answer_limit(self) -> float:
        """How long a caller waits for an answer (or for the next chunk of one).

        The worker times the compute (response_timeout from dispatch); this outer bound
        only guarantees that a request stuck in the queue still gets an answer.
        """
        return self.config.response_timeout + self.config.startup_timeout

    def submit(self, item: Item, kind: Kind = PREDICT) -> ResponseStream:
        """Queue ``item``; its answers (intermediate responses, then the final) stream back.

        ``await model.submit(item).result()`` is the final answer or raises its ServeError.
        A request's ``X-Request-Timeout`` header (or gRPC deadline) bounds its waits.
        """
        self._check_servable()
        loop = asyncio.get_running_loop()
        now = loop.time()
        job = Job(item, loop.create_future(), now, kind, deadline=deadline_of(item, now))
        stream = ResponseStream(job, self.answer_limit)
        self.batcher.submit(job)
        return stream

    def submit_all(self, items: list[Item], kind: Kind = PREDICT) -> list[ResponseStream]:
        """Queue every item, or none (503, before any runs) when they do not all fit."""
        self._check_servable()
        size = self.config.job_queue_size
        free = size - len(self.batcher.pending)
        if len(items) > free:
            raise ServiceUnavailable(
                f"{len(items)} instances do not fit the job queue ({max(0, free)} of "
                f"job_queue_size {size} places free); none of them was run")
        return [self.submit(item, kind) for item in items]  # no await between: all fit

    def _check_servable(self) -> None:
        state = self.state
        if state is ModelState.FAILED:
            raise ServiceUnavailable(
                f"model {self.name} version {self.version} failed to load: {self.load_error}"
            )
        if state is ModelState.UNLOADING:
            raise ServiceUnavailable(f"model {self.name} version {self.version} is unloading")
        if self.stopped and not self.installing:
            raise ServiceUnavailable(
                f"model {self.name} version {self.version} has no workers; scale it up with "
                f"PUT /models/{self.name}?min_worker=1 on the management API"
            )

    def _load_failed(self, error: str) -> None:
        self.batcher.fail_pending(ServiceUnavailable(
            f"model {self.name} version {self.version} failed to load: {error}"
        ))

    def _batch_done(self, jobs: list[Job], done: BatchDone) -> None:
        if self.observer is not None:
            self.observer.observe_batch(self, jobs, done)

    def _worker_loaded(self, worker: WorkerProcess, seconds: float) -> None:
        if self.observer is not None:
            self.observer.observe_load(self, worker.worker_id, seconds)

    # -- workers ---------------------------------------------------------------
    def _threads(self) -> int:
        if self.torch_threads is not None:
            return self.torch_threads
        cores = os.cpu_count() or 1
        return max(1, cores // max(1, self.pool.wanted))

    def _spec(self) -> WorkerSpec:
        gpu_id = self.gpus.pick(self.config.gpu_ids) if self.use_gpu else None
        return WorkerSpec(
            model_name=self.name,
            model_version=self.version,
            model_dir=str(self.model_dir),
            manifest=self.manifest.to_json(),
            handler=self.manifest.handler,
            batch_size=self.config.batch_size,
            max_batch_delay=self.config.max_batch_delay,
            gpu_id=gpu_id,
            threads=self._threads(),
            model_yaml_config=self.yaml_config,
            extra_sys_path=self._sys_path(),
            model_metrics=self.model_metrics,
        )

    def _sys_path(self) -> tuple[str, ...]:
        return () if self.requirements is None else (str(self.requirements.site_packages),)

    def workers(self) -> list[WorkerProcess]:
        return list(self.pool.workers.values())

