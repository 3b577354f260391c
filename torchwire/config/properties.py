"""Java ``.properties`` text, read the way TorchServe reads ``config.properties``."""

from __future__ import annotations

import re
from collections.abc import Iterator

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLANKS = " \t\f"
_ENTRY = re.compile(r"(?P<key>(?:\\.|[^\\=: \t\f])*)[ \t\f]*[=:]?[ \t\f]*(?P<value>.*)", re.DOTALL)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPED_CHARS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text the way TorchServe reads ``config.properties``.

    ``key=value``, ``key: value`` and ``key value``; ``#``/``!`` comment lines; leading
    blanks ignored; a line ending in an odd number of backslashes continues on the
    next one (with that line's leading blanks dropped); later keys win.
    """
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        match = _ENTRY.match(line)
        assert match is not None  # every group may be empty, so it always matches
        result[_unescape(match["key"])] = _unescape(match["value"])
    return result


def _logical_lines(text: str) -> Iterator[str]:
    parts: list[str] = []
    for natural in _LINE_BREAK.split(text):
        line = natural.lstrip(_BLANKS)
        if not parts and (not line or line[0] in "#!"):
            continue
        if _continues(line):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield "".join(parts)
        parts = []
    if parts:
        yield "".join(parts)


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _unescape(raw: str) -> str:
    return _ESCAPE.sub(_unescape_one, raw)


def _unescape_one(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if len(escaped) == 5:
        return chr(int(escaped[1:], 16))
    return _ESCAPED_CHARS.get(escaped, escaped)


