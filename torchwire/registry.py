"""ModelRegistry: model names and versions, and each name's default version."""

from __future__ import annotations

from collections.abc import Iterator

from torchwire.errors import Conflict, Forbidden, ModelNotFound, ModelVersionNotFound
from torchwire.model import ModelVersion


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, dict[str, ModelVersion]] = {}
        self._default: dict[str, str] = {}
        self.startup_failures: dict[str, str] = {}  # archive → why it could not be loaded
        self.starting = False  # the server is still registering its start-up models
        self.draining = False  # the server is stopping: readiness fails, requests still served

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFound(f"Model not found: {name}")
        key = version if version is not None else self._default[name]
        found = versions.get(key)
        if found is None:
            raise ModelVersionNotFound(f"Model version: {version} does not exist for model: {name}")
        return found

    def add(self, model: ModelVersion, make_default: bool = False) -> None:
        versions = self._models.setdefault(model.name, {})
        if model.version in versions:
            raise Conflict(f"Model version {model.version} is already registered for model "
                           f"{model.name}")
        versions[model.version] = model
        if make_default or model.name not in self._default:
            self._default[model.name] = model.version

    def remove(self, name: str, version: str | None = None) -> ModelVersion:
        model = self.get(name, version)
        versions = self._models[name]
        if model.version == self._default[name] and len(versions) > 1:
            raise Forbidden(
                f"Cannot remove default version {model.version} for model {name}; "
                "set another version as default first"
            )
        del versions[model.version]
        if not versions:
            del self._models[name]
            del self._default[name]
        return model

    def discard(self, model: ModelVersion) -> None:
        """Remove ``model`` even if it is the default (another version becomes default)."""
        versions = self._models.get(model.name, {})
        if versions.get(model.version) is not model:
            return
        del versions[model.version]
        if not versions:
            del self._models[model.name]
            del self._default[model.name]
        elif self._default[model.name] == model.version:
            self._default[model.name] = next(iter(versions))

    def set_default(self, name: str, version: str) -> None:
        if version not in self._models.get(name, {}):
            self.get(name)  # ModelNotFound for an unknown name
            raise ModelVersionNotFound(f"Model version {version} does not exist for model {name}")
        self._default[name] = version

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        self.get(name)
        return list(self._models[name].values())

    def __iter__(self) -> Iterator[ModelVersion]:
        for versions in self._models.values():
            yield from versions.values()

    def healthy(self) -> bool:
        """For /ping: nothing failed to load, and every model has the workers it wants."""
        if self.starting or self.draining or self.startup_failures:
            return False
        return all(model.healthy for model in self)

    def ready(self) -> bool:
        """Every startup archive loaded and every model version can serve now."""
        if self.draining or self.startup_failures:
            return False
        return all(model.ready for model in self)
