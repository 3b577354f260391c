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
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlparse

from torchwire.errors import BadRequest, DownloadArchiveError

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK = 1 << 20


def check_allowed(url: str, patterns: list[str]) -> None:
    if not any(re.fullmatch(pattern, url) for pattern in patterns):
        raise BadRequest(
            f"url {url} is not allowed: it matches none of allowed_urls ({', '.join(patterns)})"
        )


def in_store(name: str, store: Path | None) -> Path:
    """``name`` inside the model store; refuses names that would leave it."""
    if store is None:
        raise BadRequest(
            f"url {name} names an archive in the model store, but no model store is "
            "configured (--model-store); give an absolute path or a URL"
        )
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or ".." in parts:
        raise BadRequest(f"url {name} must not contain '..': name an archive in the model store")
    return store / Path(*parts)


def local_path(url: str, store: Path | None, patterns: list[str]) -> Path:
    """The archive path for a store name, an absolute path or a file:// URL."""
    if url.startswith("file://"):
        check_allowed(url, patterns)
        path = Path(unquote(urlparse(url).path))
        if not path.is_absolute():
            raise BadRequest(f"url {url} must be an absolute file:// URL")
        return path
    if os.path.isabs(url):
        check_allowed(f"file://{url}", patterns)
        return Path(url)
    return in_store(url, store)


def is_remote(url: str) -> bool:
    return urlparse(url).scheme.lower() in ("http", "https")


def unsupported_scheme(url: str) -> str | None:
    scheme = urlparse(url).scheme.lower()
    if len(scheme) > 1 and scheme not in ("http", "https", "file"):
        return scheme
    return None


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL that allowed_urls allows too."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = patterns

    def redirect_request(self, req: Any, fp: IO[bytes], code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        check_allowed(newurl, self.patterns)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _file_name(url: str) -> str:
    name = PurePosixPath(unquote(urlparse(url).path)).name
    return name if _SAFE_NAME.fullmatch(name) else "archive"


def download(url: str, patterns: list[str], dest_root: Path, timeout: float) -> Path:
    """Fetch ``url`` into a new folder under ``dest_root``; the file's path."""
    dest_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="download-", dir=dest_root))
    target = folder / _file_name(url)
    opener = urllib.request.build_opener(_CheckedRedirects(patterns))
    try:
        with opener.open(url, timeout=timeout) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DownloadArchiveError(f"Failed to download archive from: {url} "
                                   f"(HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadArchiveError(f"Failed to download archive from: {url} ({reason})") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    log.info("downloaded %s (%d bytes)", url, target.stat().st_size)
    return target


async def fetch(url: str, store: Path | None, patterns: list[str], work_dir: Path,
                timeout: float) -> tuple[Path, bool]:
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
        check_allowed(url, patterns)
        path = await asyncio.to_thread(download, url, patterns, work_dir / "downloads", timeout)
        return path, True
    return local_path(url, store, patterns), False
