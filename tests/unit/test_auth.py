"""Token authorization: which listener needs which key, the key file, the key check."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from torchwire.auth import (
    API,
    INFERENCE,
    MANAGEMENT,
    OPEN_PATHS,
    KeyRing,
    TokenAuth,
    bearer,
    policy_for,
)
from torchwire.config import load_settings
from torchwire.errors import ConfigError


def settings(**cli: Any) -> Any:
    return load_settings(cli, env={})


def test_default_policy_guards_management_only() -> None:
    policy = policy_for(settings())
    assert policy.management == (MANAGEMENT,)
    assert policy.inference == () and policy.metrics == ()


def test_non_loopback_listeners_need_keys() -> None:
    policy = policy_for(settings(inference_address="http://0.0.0.0:8080",
                                 metrics_address="http://10.1.2.3:8082"))
    assert policy.inference == (INFERENCE,)
    assert set(policy.metrics) == {INFERENCE, MANAGEMENT}


def test_forced_and_disabled() -> None:
    forced = policy_for(settings(enable_token_authorization=True))
    assert forced.inference and forced.metrics and forced.management
    disabled = policy_for(settings(disable_token_authorization=True,
                                   inference_address="http://0.0.0.0:8080"))
    assert not disabled.enabled and disabled.inference == ()
    with pytest.raises(ConfigError, match="choose one"):
        policy_for(settings(enable_token_authorization=True, disable_token_authorization=True))


def test_key_file_layout_and_mode(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "key_file.json")
    ring.write()
    data = json.loads((tmp_path / "key_file.json").read_text())
    assert set(data) == {"management", "inference", "API"}
    assert all(set(v) == {"key"} for v in data.values())
    assert stat.S_IMODE((tmp_path / "key_file.json").stat().st_mode) == 0o600
    assert len(data["management"]["key"]) >= 32


def test_rotation_changes_one_key_and_the_file(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "key_file.json")
    ring.write()
    before = json.loads(ring.path.read_text())
    new = ring.rotate(INFERENCE)
    after = json.loads(ring.path.read_text())
    assert after["inference"]["key"] == new.value != before["inference"]["key"]
    assert after["management"] == before["management"] and after["API"] == before["API"]


def test_matches_only_the_right_unexpired_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "k.json", expiry_min=5)
    management = ring.keys[MANAGEMENT].value.encode()
    assert ring.matches((MANAGEMENT,), management)
    assert not ring.matches((INFERENCE,), management)
    assert not ring.matches((MANAGEMENT,), None)
    assert not ring.matches((MANAGEMENT,), management + b"x")
    assert "expiration time" in ring.to_json()[MANAGEMENT]
    assert "expiration time" not in ring.to_json()[API]
    ring.keys[MANAGEMENT].expires = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert not ring.matches((MANAGEMENT,), management)


def test_bearer_parsing() -> None:
    assert bearer({"headers": [(b"authorization", b"Bearer abc")]}) == b"abc"
    assert bearer({"headers": [(b"authorization", b"bearer  abc ")]}) == b"abc"
    assert bearer({"headers": [(b"authorization", b"Basic abc")]}) is None
    assert bearer({"headers": []}) is None


def run_asgi(app: TokenAuth, path: str, token: bytes | None) -> tuple[int, Any, Any]:
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen["headers"] = scope["headers"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    headers = [(b"authorization", b"Bearer " + token)] if token else []
    app.app = inner
    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"], seen.get("headers")


def test_middleware_checks_and_strips_the_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "k.json")
    auth = TokenAuth(lambda s, r, w: None, ring, (MANAGEMENT,),  # type: ignore[arg-type]
                     per_path={"/token": (API,)}, open_paths=OPEN_PATHS)
    good = ring.keys[MANAGEMENT].value.encode()
    status, _, headers = run_asgi(auth, "/models", good)
    assert status == 200 and headers == []  # the handler never sees the key
    status, body, _ = run_asgi(auth, "/models", b"wrong")
    assert status == 400 and json.loads(body) == {  # TorchServe's answer, word for word
        "code": 400, "type": "InvalidKeyException",
        "message": "Token Authorization failed. Token either incorrect, expired, "
                   "or not provided correctly"}
    status, body, _ = run_asgi(auth, "/token", good)
    assert status == 400 and json.loads(body)["message"].startswith("Token Authentication failed")
    assert run_asgi(auth, "/token", ring.keys[API].value.encode())[0] == 200
    assert run_asgi(auth, "/ping", None)[0] == 200
