"""``ts.metrics.unit``: TorchServe's short unit names and what they stand for."""

from __future__ import annotations


class Units:
    """``Units().units["ms"] == "Milliseconds"``; an unknown unit stands for itself."""

    def __init__(self) -> None:
        self.units: dict[str | None, str] = {
            "ms": "Milliseconds", "s": "Seconds", "percent": "Percent", "count": "Count",
            "MB": "Megabytes", "GB": "Gigabytes", "kB": "Kilobytes", "B": "Bytes",
            "": "unit", None: "unit",
        }


__all__ = ["Units"]
