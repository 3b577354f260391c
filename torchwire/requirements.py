"""Per-model ``requirements.txt`` (``install_py_dep_per_model=true``).

Each model version gets its own virtual environment, created with
``--system-site-packages`` and a ``.pth`` file that adds the server's own
site-packages, so that pip counts what the server already has (torch, numpy, ...)
as installed and fetches only what is missing or pinned differently. pip runs in the
model's directory, so a line like ``./wheels/x.whl`` names a file in the archive.
Only that model's workers put the environment's site-packages on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from torchwire.archive.manifest import Manifest
from torchwire.archive.paths import unsafe_member_reason
from torchwire.errors import ArchiveError, DependencyInstallError

log = logging.getLogger(__name__)

MIN_INSTALL_TIMEOUT = 600.0  # seconds; pip may have to download large wheels
OUTPUT_TAIL_LINES = 15
PARENT_PTH = "_torchwire_server_packages.pth"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ModelRequirements:
    """A model's requirements.txt and the environment it is installed into."""

    model: str  # "name version", for messages
    requirements: Path
    model_dir: Path
    env_dir: Path

    @property
    def site_packages(self) -> Path:
        env = str(self.env_dir)
        return Path(sysconfig.get_path("purelib", vars={"base": env, "platbase": env}))

    @property
    def python(self) -> Path:
        if os.name == "nt":
            return self.env_dir / "Scripts" / "python.exe"
        return self.env_dir / "bin" / "python"

    async def install(self, timeout: float) -> None:
        """Create the environment and pip-install into it; DependencyInstallError if not."""
        limit = max(timeout, MIN_INSTALL_TIMEOUT)
        log.info("%s: installing %s into %s", self.model, self.requirements.name, self.env_dir)
        await self._run([sys.executable, "-m", "venv", "--without-pip",
                         "--system-site-packages", str(self.env_dir)], limit, "venv")
        self._link_server_packages()
        await self._run([sys.executable, "-m", "pip", "--python", str(self.python), "install",
                         "--disable-pip-version-check", "--no-input", "-r",
                         str(self.requirements)], limit, "pip install")
        log.info("%s: %s installed", self.model, self.requirements.name)

    def _link_server_packages(self) -> None:
        dirs = [*site.getsitepackages(), site.getusersitepackages()]
        self.site_packages.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{d}\n" for d in dirs if os.path.isdir(d))
        (self.site_packages / PARENT_PTH).write_text(text, encoding="utf-8")

    async def _run(self, cmd: list[str], timeout: float, what: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=self.model_dir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout):
                output, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DependencyInstallError(
                f"{self.model}: {what} of {self.requirements.name} took over {timeout:g} s"
            ) from None
        text = output.decode(errors="replace")
        log.debug("%s: %s output:\n%s", self.model, what, text)
        if proc.returncode != 0:
            tail = "\n".join(text.strip().splitlines()[-OUTPUT_TAIL_LINES:])
            raise DependencyInstallError(
                f"{self.model}: {what} of {self.requirements.name} failed "
                f"(exit {proc.returncode}):\n{tail}"
            )


def model_requirements(model_dir: Path, manifest: Manifest, envs_root: Path) -> ModelRequirements:
    """The manifest's requirementsFile, checked, with a fresh environment path under envs_root."""
    name = manifest.requirements_file
    if name is None:
        raise ArchiveError(f"{model_dir}: the manifest names no requirementsFile")
    reason = unsafe_member_reason(name)
    if reason is not None:
        raise ArchiveError(f"{model_dir}: requirementsFile {name!r} is unsafe ({reason})")
    path = model_dir / name
    if not path.is_file():
        raise ArchiveError(f"{model_dir}: requirementsFile {name!r} is missing")
    label = _UNSAFE.sub("_", f"{manifest.model_name}-{manifest.model_version}")
    env_dir = envs_root / f"{label}-{secrets.token_hex(4)}"
    return ModelRequirements(
        f"{manifest.model_name} {manifest.model_version}", path, model_dir, env_dir
    )
