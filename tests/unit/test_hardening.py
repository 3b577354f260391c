"""The pure parts of issue 15's limits: JSON nesting, URL normalising, archive kinds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from torchwire.archive import UnpackLimits, open_archive
from torchwire.errors import ArchiveError, BadRequest, ModelNotFound
from torchwire.jsondoc import MAX_JSON_DEPTH, nesting_depth_exceeds, parse_json
from torchwire.sources import check_allowed, normalise_url


@pytest.mark.parametrize(("body", "deep"), [
    (b"[" * 1000 + b"]" * 1000, True),
    (b"[" * 100_000, True),  # unbalanced: still refused before the decoder recurses
    (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), True),
    (b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH, False),
    (json.dumps([[[0.5] * 3] * 224] * 224).encode(), False),  # many brackets, depth 3
    (b'["' + b"[" * 500 + b'"]', False),  # brackets inside a string do not nest
])
def test_nesting_depth(body: bytes, deep: bool) -> None:
    assert nesting_depth_exceeds(body) is deep


def test_parse_json_says_what_was_wrong() -> None:
    with pytest.raises(BadRequest, match="nests arrays or objects deeper than 100 levels"):
        parse_json(b"[" * 1000 + b"]" * 1000, "the body")
    with pytest.raises(BadRequest, match="is not valid JSON"):
        parse_json(b"{", "the body")
    assert parse_json(b'{"a": [1, [2]]}', "the body") == {"a": [1, [2]]}


@pytest.mark.parametrize(("url", "normal"), [
    ("file:///a/allowed/../store/x.mar", "file:///a/store/x.mar"),
    ("file:///a/allowed/%2e%2e/%2E%2E/etc/passwd", "file:///etc/passwd"),
    ("http://h:1/allowed/../../../x.mar", "http://h:1/x.mar"),
    ("https://h/allowed/./a//b.mar", "https://h/allowed/a/b.mar"),
    ("HTTP://h/x.mar?v=1", "http://h/x.mar?v=1"),
])
def test_urls_are_normalised_before_matching(url: str, normal: str) -> None:
    assert normalise_url(url) == normal


def test_dot_segments_do_not_pass_allowed_urls() -> None:
    patterns = [r"file:///srv/allowed/.*", r"http://h/allowed/.*"]
    assert check_allowed("file:///srv/allowed/./m.mar", patterns) == "file:///srv/allowed/m.mar"
    for url in ("file:///srv/allowed/../store/m.mar", "http://h/allowed/%2e%2e/x/m.mar"):
        with pytest.raises(ModelNotFound, match="^Relative path is not allowed in url: "):
            check_allowed(url, patterns)
    with pytest.raises(ModelNotFound, match=r"^Given URL http://h/x.mar does not match any "):
        check_allowed("http://h/x.mar", patterns)


def test_archive_kind_comes_from_the_header_only(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.mar"
    with zeros.open("wb") as out:
        out.truncate(200 * 1024 * 1024)  # sparse: reading it through would take a while
    with pytest.raises(ArchiveError, match="unknown kind"):
        open_archive(zeros, tmp_path / "out")


def test_an_archive_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.mar"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", '{"model": {"modelName": "b", "handler": "h"}}')
        zf.writestr("zeros.bin", bytes(10_000_000))
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=r"max_compression_ratio \(100\)"):
        open_archive(archive, out)
    with pytest.raises(ArchiveError, match=r"max_extracted_size \(1000 bytes\)"):
        open_archive(archive, out, UnpackLimits(max_extracted_size=1000))
    assert not out.exists() or not any(out.iterdir())
