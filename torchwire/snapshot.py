"""Config snapshots: the registered models survive a restart, in TorchServe's file format.

A snapshot is a ``config.properties`` file under ``{log_location}/config/`` named
``<yyyyMMddHHmmssSSS>-startup.cfg`` (after a successful start), ``-snapshot.cfg``
(after each management call that changed the models) or ``-shutdown.cfg`` (on
``torchwire stop``). It holds the server's settings plus ``model_snapshot``: JSON
with every model version, its default flag, archive name, workers and batching, as
TorchServe's ``SnapshotManager`` writes it, so either server can read the other's
files. torchwire adds ``modelUrl`` (where the archive came from) to each entry.

Unlike TorchServe, each file is written atomically (temp file + rename), and a
newest snapshot that cannot be read is skipped with a warning in favour of the one
before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchwire.config import (
    Address,
    ModelSettings,
    Settings,
    model_settings_from_mapping,
    parse_properties,
)
from torchwire.errors import ConfigError, ServeError
from torchwire.registry import ModelRegistry
from torchwire.sources import is_remote
from torchwire.store import ModelSpec, ModelStore

if TYPE_CHECKING:
    from torchwire.model import ModelVersion

log = logging.getLogger(__name__)

KINDS = ("startup", "snapshot", "shutdown")
_FILE = re.compile(r"(?P<stamp>[0-9]{17})-(?:startup|snapshot|shutdown)\.cfg")
# Keys given as settings are secrets: a snapshot (a plain file under the logs) never holds them.
_NOT_WRITTEN = frozenset({"unknown", "model_snapshot", "load_models",
                          "management_key", "inference_key", "api_key"})
# Each per-model key as TorchServe spells it: the first alias its field declares.
_CAMEL = {f.name: (f.metadata.get("aliases") or (f.name,))[0]
          for f in dataclasses.fields(ModelSettings)}


# --------------------------------------------------------------------------- writing


def property_value(value: Any) -> str:
    """A settings value as config.properties text that :mod:`torchwire.config` reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Address | Path):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps({name: {version: _model_json(entry) for version, entry in vs.items()}
                           for name, vs in value.items()})
    return str(value)


def _model_json(entry: ModelSettings) -> dict[str, Any]:
    return {_CAMEL[k]: v for k, v in dataclasses.asdict(entry).items() if v is not None}


def settings_properties(settings: Settings) -> dict[str, str]:
    """Every setting that differs from its default, and unrecognised keys kept as given."""
    defaults = Settings()
    props = dict(settings.unknown)
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if f.name not in _NOT_WRITTEN and value is not None and value != getattr(defaults, f.name):
            props[f.name] = property_value(value)
    return props


def _escape(text: str, key: bool) -> str:
    """Java ``Properties.store`` escaping (non-ASCII as ``\\uXXXX`` so any reader copes)."""
    out = []
    for i, ch in enumerate(text):
        if ch in "\\=:#!":
            out.append("\\" + ch)
        elif ch in "\t\n\r\f":
            out.append({"\t": r"\t", "\n": r"\n", "\r": r"\r", "\f": r"\f"}[ch])
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def properties_text(props: dict[str, str], when: datetime) -> str:
    head = f"#Saving snapshot\n#{when.strftime('%a %b %d %H:%M:%S %Y')}\n"
    return head + "".join(f"{_escape(k, True)}={_escape(v, False)}\n" for k, v in props.items())


def model_entries(models: ModelRegistry) -> dict[str, dict[str, dict[str, Any]]]:
    """TorchServe's ``Model.getModelState`` for every version, plus ``modelUrl``."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for name in models.names():
        default = models.get(name).version
        for model in models.versions(name):
            if model.workflow is not None:
                continue  # a workflow's node: workflows are not in snapshots (as TorchServe)
            c = model.config
            entries.setdefault(name, {})[model.version] = {
                "defaultVersion": model.version == default,
                "marName": archive_name(model.model_url),
                "minWorkers": c.min_workers, "maxWorkers": c.max_workers,
                "batchSize": c.batch_size, "maxBatchDelay": c.max_batch_delay,
                "responseTimeout": int(c.response_timeout),
                "startupTimeout": int(c.startup_timeout),
                "runtimeType": "python", "modelUrl": model.model_url,
            }
    return entries


def archive_name(url: str) -> str:
    """TorchServe's ``ArchiveUtils.getFilenameFromUrl``: the URL's last path segment."""
    return url.rstrip("/").rsplit("/", 1)[-1]


class SnapshotWriter:
    """Writes snapshots of ``models`` under ``directory`` (nothing when disabled)."""

    def __init__(self, directory: Path, settings: Settings, models: ModelRegistry,
                 enabled: bool = True) -> None:
        self.directory = directory
        self.settings = settings
        self.models = models
        self.enabled = enabled
        self.unrestored: dict[str, dict[str, dict[str, Any]]] = {}  # kept until re-registered

    def save(self, kind: str) -> Path | None:
        """Write a ``kind`` snapshot now; a failure is logged, never raised."""
        if not self.enabled:
            return None
        try:
            return self._write(kind)
        except OSError as exc:
            log.error("cannot write the %s snapshot in %s: %s", kind, self.directory, exc)
            return None

    def changed(self) -> None:
        """A management call changed the models (TorchServe's ``-snapshot.cfg``)."""
        self.save("snapshot")

    def _models(self) -> dict[str, dict[str, dict[str, Any]]]:
        live = model_entries(self.models)
        for name in list(self.unrestored):
            if name in live:
                del self.unrestored[name]
        return {**self.unrestored, **live}

    def _write(self, kind: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = datetime.now()
        path = self._free_name(now, kind)
        models = self._models()
        document = {"name": path.name, "modelCount": sum(len(v) for v in models.values()),
                     "created": int(time.time() * 1000), "models": models}
        props = {**settings_properties(self.settings),
                 "model_snapshot": json.dumps(document, indent=2)}
        _atomic_write(path, properties_text(props, now))
        log.info("saved snapshot %s", path)
        return path

    def _free_name(self, now: datetime, kind: str) -> Path:
        millis = int(now.timestamp() * 1000)
        while True:  # two snapshots in one millisecond, of any kinds, get consecutive stamps
            stamp = datetime.fromtimestamp(millis / 1000)
            prefix = f"{stamp.strftime('%Y%m%d%H%M%S')}{millis % 1000:03d}"
            if not any(self.directory.glob(f"{prefix}-*.cfg")):
                return self.directory / f"{prefix}-{kind}.cfg"
            millis += 1


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class SnapshotEntry:
    """One model version to restore."""

    name: str
    version: str
    url: str  # where to load the archive from (store name, path or URL)
    default: bool
    overrides: ModelSettings
    raw: dict[str, Any]


def snapshot_files(directory: Path) -> list[Path]:
    """Snapshot files, newest first (by the time stamp in the name, as TorchServe)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _FILE.fullmatch(p.name) and p.is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def latest_snapshot(directory: Path) -> Path | None:
    """The newest snapshot that reads cleanly; corrupt newer ones are skipped with a warning."""
    for path in snapshot_files(directory):
        try:
            read_models(_read_snapshot_json(path))
        except ConfigError as exc:
            log.warning("skipping snapshot %s: %s", path, exc)
            continue
        return path
    return None


def _read_snapshot_json(path: Path) -> str:
    try:
        props = parse_properties(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc}") from None
    text = props.get("model_snapshot")
    if text is None:
        raise ConfigError("it has no model_snapshot entry (cut short?)")
    return text


def read_models(text: str) -> list[SnapshotEntry]:
    """The entries of a ``model_snapshot`` JSON document; ConfigError when it is malformed."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model_snapshot is not valid JSON ({exc})") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        raise ConfigError("model_snapshot has no models object")
    return list(_entries(models))


def _entries(models: dict[str, Any]) -> Iterator[SnapshotEntry]:
    for name, versions in models.items():
        if not isinstance(versions, dict):
            raise ConfigError(f"model_snapshot: models[{name!r}] is not an object")
        for version, raw in versions.items():
            yield _entry(str(name), str(version), raw)


def _entry(name: str, version: str, raw: Any) -> SnapshotEntry:
    where = f"model_snapshot: models[{name!r}][{version!r}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("marName"), str):
        raise ConfigError(f"{where} has no marName")
    overrides = model_settings_from_mapping(raw, where)
    url = raw.get("modelUrl") if isinstance(raw.get("modelUrl"), str) else None
    return SnapshotEntry(name, version, url or raw["marName"], raw.get("defaultVersion") is True,
                         overrides, raw)


# --------------------------------------------------------------------------- restoring


class Restorer:
    """Registers a snapshot's model versions at start, as TorchServe's ``restore``."""

    def __init__(self, store: ModelStore, models: ModelRegistry, settings: Settings,
                 writer: SnapshotWriter) -> None:
        self.store = store
        self.models = models
        self.settings = settings
        self.writer = writer

    async def restore(self, entries: list[SnapshotEntry]) -> None:
        log.info("restoring %d model version(s) from the snapshot", len(entries))
        await asyncio.gather(*(self._one(entry) for entry in entries))
        for entry in entries:
            if entry.default and self._has(entry):
                self.models.set_default(entry.name, entry.version)

    def _has(self, entry: SnapshotEntry) -> bool:
        return any(m.version == entry.version for m in self.models
                   if m.name == entry.name)

    def source(self, entry: SnapshotEntry) -> str:
        """Where to load from: a recorded local path as is; for a URL (and for TorchServe's
        files, which record no URL) the store's copy of ``marName`` when there is one."""
        if not is_remote(entry.url) and entry.url != entry.raw["marName"]:
            return entry.url
        mar = entry.raw["marName"]
        root = self.settings.model_store
        if root is not None and mar and "/" not in mar and (root / mar).exists():
            return str(mar)
        return entry.url

    async def _one(self, entry: SnapshotEntry) -> None:
        try:
            model = await self._build(entry)
            self.models.add(model)
        except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the others
            why = exc.message if isinstance(exc, ServeError) else repr(exc)
            self.models.startup_failures[f"{entry.name} {entry.version}"] = why
            self.writer.unrestored.setdefault(entry.name, {})[entry.version] = entry.raw
            log.error("cannot restore %s %s from the snapshot: %s", entry.name, entry.version,
                      why)
            return
        await model.start()
        if model.load_error:
            log.error("model %s failed to load: %s", model.name, model.load_error)

    async def _build(self, entry: SnapshotEntry) -> ModelVersion:
        model = await self.store.fetch_build(ModelSpec(self.source(entry), entry.name),
                                             entry.overrides, loaded_at_startup=True)
        if model.version != entry.version:
            log.warning("%s: the snapshot recorded version %s, the archive has %s",
                        entry.name, entry.version, model.version)
        model.model_url = entry.url
        return model
