"""Where an archive to register comes from: the model store, a local path, or a URL.

The ``url`` of ``POST /models`` is one of

- a name relative to the model store (``digits.mar``, ``sub/model.tar.gz``), never
  leaving it (no ``..``);
- an absolute path or a ``file://`` URL, allowed when ``file://<path>`` matches one
  of ``allowed_urls``;
- an ``http(s)://`` URL matching one of ``allowed_urls`` (as are the targets of its
  redirects), downloaded into the server's work folder.

``allowed_urls`` is TorchServe's list of regular expressions, each matched against
the whole URL. Anything else is a 400 that says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlparse, urlsplit

from torchwire.download import DownloadLimits, Downloads, download_to
from torchwire.errors import BadRequest, ModelNotFound

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalise_url(url: str) -> str:
    """``url`` decoded, with its dot segments resolved (``/a/../b`` is ``/b``), any scheme.

    ``allowed_urls`` is matched against this form, and this form is what is fetched or
    opened, so ``allowed/../elsewhere`` or ``allowed/%2e%2e/elsewhere`` cannot pass.
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    if "\x00" in path:
        raise BadRequest(f"url {url} holds a NUL character")
    if path:
        resolved = posixpath.normpath(path)
        resolved = "/" + resolved.lstrip("/") if path.startswith("/") else resolved
        if path.endswith("/") and not resolved.endswith("/"):
            resolved += "/"
        path = resolved
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc}{path}{query}"


def check_allowed(url: str, patterns: list[str]) -> str:
    """The normalised ``url`` when it matches one of ``patterns``; else TorchServe's 404.

    A ``..`` anywhere (also percent-encoded) is refused first, as TorchServe refuses it.
    """
    refuse_relative(url)
    normal = normalise_url(url)
    if not any(re.fullmatch(pattern, normal) for pattern in patterns):
        raise ModelNotFound(f"Given URL {url} does not match any allowed URL(s)")
    return normal


def refuse_relative(url: str) -> None:
    """TorchServe's 404 for a url holding ``..`` (decoded too: ``%2e%2e`` is no way round)."""
    if ".." in url or ".." in unquote(url):
        raise ModelNotFound(f"Relative path is not allowed in url: {url}")


def in_store(name: str, store: Path | None) -> Path:
    """``name`` inside the model store; refuses names that would leave it."""
    if store is None:
        raise BadRequest(
            f"url {name} names an archive in the model store, but no model store is "
            "configured (--model-store); give an absolute path or a URL"
        )
    refuse_relative(name)
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts:
        raise BadRequest("Parameter url is required.")
    return store / Path(*parts)


def local_path(url: str, store: Path | None, patterns: list[str]) -> Path:
    """The archive path for a store name, an absolute path or a file:// URL."""
    if url.startswith("file://"):
        if not urlsplit(url).path.startswith("/"):
            raise BadRequest(f"url {url} must be an absolute file:// URL")
        return Path(urlsplit(check_allowed(url, patterns)).path)
    if os.path.isabs(url):
        return Path(urlsplit(check_allowed(f"file://{quote(url)}", patterns)).path)
    return in_store(url, store)


def is_remote(url: str) -> bool:
    return urlparse(url).scheme.lower() in ("http", "https")


def unsupported_scheme(url: str) -> str | None:
    scheme = urlparse(url).scheme.lower()
    if len(scheme) > 1 and scheme not in ("http", "https", "file"):
        return scheme
    return None


def fetchable(normal: str) -> str:
    """A normalised (decoded) URL with its path quoted again, ready to request."""
    parts = urlsplit(normal)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{quote(parts.path)}{query}"


def _file_name(url: str) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    return name if _SAFE_NAME.fullmatch(name) else "archive"


def download(url: str, patterns: list[str], dest_root: Path, limits: DownloadLimits,
             downloads: Downloads) -> Path:
    """Fetch the allowed, normalised ``url`` into a new folder under ``dest_root``."""
    dest_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="download-", dir=dest_root))
    target = folder / _file_name(url)
    try:
        size = download_to(fetchable(url), target, limits, downloads,
                           lambda u: fetchable(check_allowed(u, patterns)))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    log.info("downloaded %s (%d bytes)", url, size)
    return target


async def fetch(url: str, store: Path | None, patterns: list[str], work_dir: Path,
                limits: DownloadLimits, downloads: Downloads) -> tuple[Path, bool]:
    """The local archive for ``url``, and whether it is a download to delete after use."""
    if not url.strip():
        raise BadRequest("Parameter url is required.")
    scheme = unsupported_scheme(url)
    if scheme is not None:
        raise BadRequest(
            f"url scheme {scheme}:// is not supported; give an archive name in the model "
            "store, an absolute path, a file:// URL or an http(s):// URL"
        )
    if is_remote(url):
        normal = check_allowed(url, patterns)
        path = await asyncio.to_thread(download, normal, patterns, work_dir / "downloads",
                                       limits, downloads)
        return path, True
    return local_path(url, store, patterns), False
