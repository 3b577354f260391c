"""Reports which ``ts`` package a handler sees."""

import ts


def handle(data, context):
    if data is None:
        return None
    return [{"ts": ts.__file__, "fake": getattr(ts, "FAKE_TORCHSERVE", False)} for _ in data]
