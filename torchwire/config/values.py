"""Value converters: each turns a raw value (text, or an already typed value) into its type.

A converter is called as ``convert(value, key)`` and raises
:class:`~torchwire.errors.ConfigError` naming the key, the value and what was expected.
:func:`setting` attaches one to a dataclass field, so each key declares its converter once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwire.errors import ConfigError

Converter = Callable[[Any, str], Any]
"""Turns a raw value (a string, or an already typed value) for ``key`` into its type."""


def setting(convert: Converter, default: Any = None, *, factory: Callable[[], Any] | None = None,
            aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field that declares its converter (and other accepted key spellings)."""
    metadata = {"convert": convert, "aliases": aliases}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def converters(cls: type) -> dict[str, Converter]:
    """Field name -> converter for each field of dataclass ``cls`` made with :func:`setting`."""
    return {
        f.name: f.metadata["convert"]
        for f in dataclasses.fields(cls)
        if "convert" in f.metadata
    }


def invalid(key: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid; expected {expected}")


def with_source(source: str, convert: Converter, value: Any, key: str) -> Any:
    try:
        return convert(value, key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def expect_str(value: Any, key: str, expected: str) -> str:
    if not isinstance(value, str):
        raise invalid(key, value, expected)
    return value.strip()


_BOOL_EXPECTED = "a boolean: true/false, 1/0 or yes/no"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = expect_str(value, key, _BOOL_EXPECTED).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid(key, value, _BOOL_EXPECTED)


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def parse_int(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}-{maximum}"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise invalid(key, value, expected)
    if number < minimum or (maximum is not None and number > maximum):
        raise invalid(key, value, expected)
    return number


def int_at_least(minimum: int) -> Converter:
    def convert(value: Any, key: str) -> int:
        return parse_int(value, key, minimum)

    return convert


def to_port(value: Any, key: str) -> int:
    return parse_int(value, key, 0, 65535)


def optional(convert: Converter) -> Converter:
    """Wrap ``convert`` so that ``None`` and blank text mean "not set" (``None``)."""

    def optional(value: Any, key: str) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return convert(value, key)

    return optional


def to_path(value: Any, key: str) -> Path:
    if isinstance(value, Path):
        path = value
    else:
        path = Path(expect_str(value, key, "a file system path"))
    return path.expanduser().absolute()


def to_key(value: Any, key: str) -> str:
    """A key (a secret): an error names the setting, never the value."""
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ConfigError(f"{key} is invalid; expected a key without blanks")
    return value.strip()


def to_text(value: Any, key: str) -> str:
    return expect_str(value, key, "text")


def choice(*choices: str) -> Converter:
    expected = "one of " + ", ".join(choices)

    def convert(value: Any, key: str) -> str:
        text = expect_str(value, key, expected).lower()
        if text not in choices:
            raise invalid(key, value, expected)
        return text

    return convert


def to_str_list(value: Any, key: str, expected: str) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise invalid(key, value, expected)
    return [item.strip() for item in items if item.strip()]


def to_int_list(value: Any, key: str) -> list[int]:
    expected = "a list of integers >= 0, e.g. [0, 1] or '0,1'"
    if isinstance(value, str):
        items: list[Any] = [item for item in value.split(",") if item.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise invalid(key, value, expected)
    try:
        return [parse_int(item, key, 0) for item in items]
    except ConfigError:
        raise invalid(key, value, expected) from None


_LOAD_MODELS_EXPECTED = "comma-separated entries: all, ARCHIVE or NAME=ARCHIVE"


def to_load_models(value: Any, key: str) -> list[str]:
    entries = to_str_list(value, key, _LOAD_MODELS_EXPECTED)
    return [_load_models_entry(entry, key) for entry in entries]


def _load_models_entry(entry: str, key: str) -> str:
    if entry.lower() == "all":
        return "all"
    name, sep, archive = entry.partition("=")
    if not sep:
        return entry
    if not name.strip() or not archive.strip():
        raise invalid(key, entry, _LOAD_MODELS_EXPECTED)
    return f"{name.strip()}={archive.strip()}"


_ALLOWED_URLS_EXPECTED = "a comma-separated list of regular expressions"


def to_allowed_urls(value: Any, key: str) -> list[str]:
    patterns = to_str_list(value, key, _ALLOWED_URLS_EXPECTED)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise invalid(key, pattern, f"{_ALLOWED_URLS_EXPECTED} ({exc})") from None
    return patterns


