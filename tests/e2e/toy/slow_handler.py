"""A slow model-free handler that remembers what it computed.

A request ``LABEL:SECONDS`` is computed by sleeping SECONDS; the handler notes LABEL.
A request ``seen`` answers the labels this worker computed so far, in order.
"""

import os
import time


def _text(row):
    value = row.get("data", row.get("body"))
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


class SlowHandler:
    def initialize(self, context):
        self.seen = []

    def handle(self, data, context):
        return [self._one(_text(row), len(data)) for row in data]

    def _one(self, text, batch):
        if text == "seen":
            return {"seen": list(self.seen), "pid": os.getpid()}
        label, _, seconds = text.partition(":")
        self.seen.append(label)
        time.sleep(float(seconds or 0))
        return {"label": label, "batch": batch, "pid": os.getpid()}
