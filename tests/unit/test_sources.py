"""Where a registered archive may come from: model store names, paths, allowed URLs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from torchwire.download import DownloadLimits, Downloads
from torchwire.errors import BadRequest, ModelNotFound
from torchwire.sources import check_allowed, fetch, in_store, local_path

DEFAULT = ["file://.*|http(s)?://.*"]


def test_allowed_urls_match_the_whole_url() -> None:
    check_allowed("https://models.example/x.mar", DEFAULT)
    check_allowed("http://h/x.mar", [r"http://h/.*"])
    with pytest.raises(ModelNotFound, match="does not match any allowed URL"):
        check_allowed("http://h/x.mar?to=http://evil/", [r"http://evil/.*"])
    with pytest.raises(ModelNotFound, match="does not match any allowed URL"):
        check_allowed("http://h.evil/x.mar", [r"http://h"])


def test_store_names_stay_in_the_store(tmp_path: Path) -> None:
    assert in_store("sub/a.mar", tmp_path) == tmp_path / "sub" / "a.mar"
    for name in ("../a.mar", "sub/../../a.mar", "..\\a.mar"):
        with pytest.raises(ModelNotFound, match="^Relative path is not allowed in url: "):
            in_store(name, tmp_path)
    with pytest.raises(BadRequest, match="no model store"):
        in_store("a.mar", None)


def test_paths_and_file_urls_obey_allowed_urls(tmp_path: Path) -> None:
    assert local_path(f"file://{tmp_path}/a.mar", None, DEFAULT) == tmp_path / "a.mar"
    assert local_path(f"{tmp_path}/a.mar", None, DEFAULT) == tmp_path / "a.mar"
    with pytest.raises(ModelNotFound, match="does not match any allowed URL"):
        local_path(f"{tmp_path}/a.mar", None, [r"http://.*"])
    with pytest.raises(ModelNotFound, match="does not match any allowed URL"):
        local_path("file:///etc/passwd", None, [r"file:///models/.*"])


@pytest.mark.parametrize(("url", "message"), [
    ("", "url is required"),
    ("s3://bucket/x.mar", "s3"),
    ("ftp://host/x.mar", "ftp"),
    ("http://blocked/x.mar", "does not match any allowed URL"),
])
def test_fetch_refuses_with_a_reason(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises((BadRequest, ModelNotFound), match=message):
        asyncio.run(fetch(url, tmp_path, [r"file://.*"], tmp_path, DownloadLimits(timeout=5),
                              Downloads()))
