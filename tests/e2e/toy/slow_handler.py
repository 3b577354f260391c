"""A slow model-free handler that remembers what it computed.

A request ``LABEL:SECONDS`` asks its batch to take SECONDS (a batch sleeps once, for the
longest its requests ask); the handler notes LABEL.
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
        texts = [_text(row) for row in data]
        asked = [text.partition(":") for text in texts if text != "seen"]
        self.seen += [label for label, _, _ in asked]
        time.sleep(max((float(seconds or 0) for _, _, seconds in asked), default=0))
        return [self._one(text, len(data)) for text in texts]

    def _one(self, text, batch):
        if text == "seen":
            return {"seen": list(self.seen), "pid": os.getpid()}
        return {"label": text.partition(":")[0], "batch": batch, "pid": os.getpid()}
