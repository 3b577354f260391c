"""JSON from clients, parsed with a nesting limit so no body can exhaust the stack.

Python's JSON decoder recurses once per ``[`` or ``{``; a 2 KB body of brackets
would raise ``RecursionError`` (and kill a worker, or escape as a 500). Bodies
that nest deeper than :data:`MAX_JSON_DEPTH` are refused before parsing, and any
decoding failure is a 400 that says what was wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from torchwire.errors import BadRequest

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects a JSON body may have (a tensor needs a handful)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth_exceeds(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``data`` nests arrays/objects deeper than ``limit`` (strings ignored).

    Each round removes the innermost bracket pairs, so a body of depth d takes d
    rounds of C-speed byte operations; the common case (few brackets) takes none.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    rest = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == rest:  # unbalanced: what cannot pair up is nested openings
            return rest.count(b"[") + rest.count(b"{") > limit
        rest = shorter
    return bool(rest)


def parse_json(data: bytes | str, what: str, error: type[BadRequest] = BadRequest) -> Any:
    """``data`` parsed; ``error`` (a 400) naming ``what`` when it is not acceptable JSON."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth_exceeds(raw):
        raise error(f"{what} nests arrays or objects deeper than {MAX_JSON_DEPTH} levels "
                    "(the JSON nesting limit)")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise error(f"{what} nests arrays or objects too deeply to decode") from None
