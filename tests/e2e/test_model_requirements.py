"""Per-model requirements.txt (install_py_dep_per_model), offline: a wheel built in the test."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server, wait_until
from torchwire.cli import main as torchwire_main

HANDLER = Path(__file__).resolve().parent / "tshandlers" / "needs_dep.py"
WHEEL = "tinydep-0.1-py3-none-any.whl"


def make_wheel(folder: Path, value: int) -> Path:
    """A minimal pure-Python wheel for a package ``tinydep`` with ``VALUE = value``."""
    files = {
        "tinydep/__init__.py": f"VALUE = {value}\n".encode(),
        "tinydep-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 0.1\n",
        "tinydep-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }  # fmt: skip
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinydep-0.1.dist-info/RECORD,,")
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("tinydep-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def archive(store: Path, name: str, requirements: str | None, extra: Path | None) -> None:
    args = ["archive", "--model-name", name, "--version", "1.0", "--handler", str(HANDLER),
            "--export-path", str(store)]
    if requirements is not None:
        req = store.parent / f"{name}-requirements.txt"
        req.write_text(requirements)
        args += ["--requirements-file", str(req)]
    if extra is not None:
        args += ["--extra-files", str(extra)]
    assert torchwire_main(args) == 0


@pytest.fixture
def store(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, 42)
    store = tmp_path / "store"
    # PyYAML is already in the server's environment: it must be reused, not fetched
    archive(store, "withdep", f"PyYAML\n./{WHEEL}\n", wheel)
    archive(store, "nodep", None, None)
    archive(store, "baddep", "./missing-0.1-py3-none-any.whl\n", None)
    return store


def _ask(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/predictions/{model}", content=b"x", timeout=120)


def test_requirements_are_installed_for_that_model_only(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: nothing may come from an index
    server = start_server(tmp_path, store, ["withdep.mar", "nodep.mar", "baddep.mar"],
                          {"install_py_dep_per_model": "true"}, want_ping=500)
    try:
        withdep = _ask(server.url, "withdep")  # queued while pip runs, then answered
        nodep = _ask(server.url, "nodep")
        wait_until(lambda: _ask(server.url, "baddep").status_code == 503, 120, "baddep failing")
        bad = _ask(server.url, "baddep")
        ping = httpx.get(f"{server.url}/ping")
    finally:
        stop_server(server)
    assert withdep.status_code == 200, withdep.text
    assert withdep.json()["tinydep"] == 42
    site_packages = Path(withdep.json()["at"]).parent.parent
    assert "torchwire-models-" in str(site_packages)  # the server's per-model environment
    assert not (site_packages / "yaml").exists()  # satisfied by the server's own PyYAML
    assert nodep.status_code == 200 and nodep.json() == {"tinydep": None}
    message = bad.json()["message"]
    assert "baddep" in message and "failed to load" in message
    assert "pip install of baddep-requirements.txt failed" in message
    assert "missing-0.1-py3-none-any.whl" in message  # pip's own words say what was wrong
    assert ping.status_code == 500


def test_requirements_are_not_installed_by_default(tmp_path: Path, store: Path) -> None:
    server = start_server(tmp_path, store, ["withdep.mar"], {})
    try:
        r = _ask(server.url, "withdep")
    finally:
        stop_server(server)
    assert r.status_code == 200 and r.json() == {"tinydep": None}
