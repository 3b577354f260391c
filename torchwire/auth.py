"""Token authorization: TorchServe's three keys, its key file, and the check on each listener.

At start the server writes ``key_file.json`` (mode 0600) in its working directory::

    {"management": {"key": "...", "expiration time": "..."},
     "inference": {"key": "...", "expiration time": "..."},
     "API": {"key": "..."}}

Clients send a key as ``Authorization: Bearer <key>``. Which listener asks for one:

- management: always, unless authorization is disabled (it can register models,
  that is run code, CVE-2023-43654);
- inference and metrics: when the listener binds a non-loopback address, or when
  authorization is forced on (``enable_token_authorization``); open on loopback
  otherwise. ``/ping`` and the KServe v2 health paths stay open (probes);
- ``GET /token?type=management|inference`` (management port) takes the API key.

A missing or wrong key is a 400 ``InvalidKeyException`` with TorchServe's message (gRPC:
PERMISSION_DENIED), as TorchServe answers. Keys are compared in
constant time and never logged.

Keys may also be given (for replicas behind one load balancer, from a Kubernetes
Secret): ``key_file`` names a key file in the format above to read (it is neither
written nor removed), and ``management_key`` / ``inference_key`` / ``api_key``
(``TS_MANAGEMENT_KEY`` ...) give single keys. Given keys never expire and
``/token`` refuses to rotate them (409).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from torchwire.config import Settings
from torchwire.errors import ConfigError, InvalidKey, KeyIsFixed

log = logging.getLogger(__name__)

KEY_FILE = "key_file.json"
MANAGEMENT = "management"
INFERENCE = "inference"
API = "API"
ROTATABLE = (MANAGEMENT, INFERENCE)
OPEN_PATHS = frozenset({"/ping", "/live", "/v2/health/live", "/v2/health/ready"})


def new_key() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Key:
    value: str
    expires: dt.datetime | None = None

    def expired(self) -> bool:
        return self.expires is not None and dt.datetime.now(dt.UTC) >= self.expires

    def to_json(self) -> dict[str, str]:
        out = {"key": self.value}
        if self.expires is not None:
            out["expiration time"] = self.expires.isoformat().replace("+00:00", "Z")
        return out


class KeyRing:
    """The three keys and the file that holds them.

    ``given`` keys (from the configuration) replace fresh ones and cannot rotate;
    ``owned=False`` means the file is the operator's: never written or removed.
    """

    def __init__(self, path: Path, expiry_min: int | None = None,
                 given: Mapping[str, str] | None = None, owned: bool = True) -> None:
        self.path = path
        self.expiry_min = expiry_min
        self.keys = {MANAGEMENT: self._fresh(), INFERENCE: self._fresh(), API: Key(new_key())}
        self.given = frozenset(given or ())
        self.keys.update({kind: Key(value) for kind, value in (given or {}).items()})
        self.owned = owned

    def _fresh(self) -> Key:
        if self.expiry_min is None:
            return Key(new_key())
        return Key(new_key(), dt.datetime.now(dt.UTC) + dt.timedelta(minutes=self.expiry_min))

    def rotate(self, kind: str) -> Key:
        """Replace the management or inference key and rewrite the key file."""
        if kind in self.given:
            raise KeyIsFixed(f"the {kind} key comes from the configuration (key_file or "
                             f"TS_{kind.upper()}_KEY); change it there and restart")
        self.keys[kind] = self._fresh()
        self.write()
        return self.keys[kind]

    def matches(self, kinds: tuple[str, ...], presented: bytes | None) -> bool:
        """True if ``presented`` is one of ``kinds``' keys and has not expired."""
        if presented is None:
            return False
        hits = [
            hmac.compare_digest(presented, self.keys[kind].value.encode())
            and not self.keys[kind].expired()
            for kind in kinds
        ]
        return any(hits)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {kind: key.to_json() for kind, key in self.keys.items()}

    def write(self) -> None:
        """Write the key file atomically, readable by its owner only."""
        if not self.owned:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)


def key_ring(settings: Settings, default_path: Path) -> KeyRing:
    """The server's keys: from ``key_file`` and the ``*_key`` settings, fresh otherwise."""
    given = read_key_file(settings.key_file) if settings.key_file is not None else {}
    for kind, value in ((MANAGEMENT, settings.management_key),
                        (INFERENCE, settings.inference_key), (API, settings.api_key)):
        if value is not None:
            given[kind] = value
    path = settings.key_file or default_path
    return KeyRing(path, settings.token_expiration_min, given, owned=settings.key_file is None)


def read_key_file(path: Path) -> dict[str, str]:
    """The three keys of a key file; a ConfigError names what is wrong (never a key)."""
    expected = 'expected {"management": {"key": ...}, "inference": {...}, "API": {...}}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read key_file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ConfigError(f"key_file {path} is not JSON; {expected}") from None
    entries = {kind: data.get(kind) if isinstance(data, dict) else None
               for kind in (MANAGEMENT, INFERENCE, API)}
    keys = {kind: e.get("key") for kind, e in entries.items() if isinstance(e, dict)}
    if any(not isinstance(keys.get(kind), str) or not keys[kind] for kind in entries):
        raise ConfigError(f"key_file {path} lacks a key; {expected}")
    return {kind: str(value) for kind, value in keys.items()}


@dataclass(frozen=True)
class Policy:
    """Which keys each listener accepts; an empty tuple means the listener is open."""

    inference: tuple[str, ...]
    management: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        return bool(self.management)

    def for_listener(self, name: str) -> tuple[str, ...]:
        return {"inference": self.inference, "management": self.management,
                "metrics": self.metrics}[name]


def policy_for(settings: Settings) -> Policy:
    if settings.disable_token_authorization and settings.enable_token_authorization:
        raise ConfigError(
            "disable_token_authorization and enable_token_authorization are both set; "
            "choose one"
        )
    if settings.disable_token_authorization:
        return Policy((), (), ())
    forced = settings.enable_token_authorization
    inference = (INFERENCE,) if forced or not settings.inference_address.is_loopback else ()
    metrics_open = not forced and settings.metrics_address.is_loopback
    metrics = () if metrics_open else (INFERENCE, MANAGEMENT)
    return Policy(inference, (MANAGEMENT,), metrics)


def describe_policy(policy: Policy, settings: Settings, key_file: Path | None) -> None:
    """Log, once at start, which listeners need a key and where the keys are."""
    if not policy.enabled:
        log.warning(
            "token authorization is DISABLED: anyone who can reach the management API "
            "(%s) can register models, which runs their code", settings.management_address,
        )
        return
    for name in ("management", "inference", "metrics"):
        address = getattr(settings, f"{name}_address")
        kinds = policy.for_listener(name)
        if kinds:
            log.info("%s API (%s) requires a key: Authorization: Bearer <%s key>",
                     name, address, " or ".join(kinds))
        else:
            log.info("%s API (%s) is open (loopback address)", name, address)
    log.info("keys are in %s (mode 0600)", key_file)


def bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class TokenAuth:
    """ASGI middleware: a request without a right key gets a 400 before any route runs."""

    def __init__(self, app: ASGIApp, keys: KeyRing, kinds: tuple[str, ...],
                 per_path: Mapping[str, tuple[str, ...]] | None = None,
                 open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.keys = keys
        self.kinds = kinds
        self.per_path = dict(per_path or {})
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths:
            await self.app(scope, receive, send)
            return
        kinds = self.per_path.get(path, self.kinds)
        if self.keys.matches(kinds, bearer(scope)):
            # The key goes no further: handlers and logs never see it.
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            await self.app(scope, receive, send)
            return
        await self._refuse(path, send)

    async def _refuse(self, path: str, send: Send) -> None:
        err = InvalidKey(InvalidKey.TOKEN_API if path == "/token" else InvalidKey.TOKEN)
        body = json.dumps(err.to_json(), indent=2).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# Health RPCs stay open for probes, as /ping and /v2/health/* do over HTTP.
OPEN_RPCS = frozenset({
    "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
})


class GrpcKeyCheck:
    """Token authorization for gRPC calls, from the ``authorization`` metadata.

    The management service always needs the management key (unless auth is off); the
    inference service needs the inference key when its address is not loopback or
    auth is forced — the same rules as the HTTP listeners.
    """

    def __init__(self, keys: KeyRing, settings: Settings) -> None:
        self.keys = keys
        forced = settings.enable_token_authorization
        open_inference = not forced and settings.grpc_inference.is_loopback
        self.kinds = {"management": (MANAGEMENT,),
                      "inference": () if open_inference else (INFERENCE,)}

    def __call__(self, api: str, method: str, authorization: str | None) -> None:
        kinds = self.kinds.get(api, (MANAGEMENT,))
        if not kinds or method in OPEN_RPCS:
            return
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else None
        if not self.keys.matches(kinds, presented):
            raise InvalidKey(InvalidKey.TOKEN)
