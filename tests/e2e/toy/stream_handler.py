"""A model-free streaming handler: tokens as intermediate responses, steered by the request text.

Each request of a batch gets ``<text>0|``, ``<text>1|``, ``<text>2|`` as intermediate
responses, sent for the whole batch in step, then ``<text>-end/<batch size>`` as the
final answer. Texts with a meaning:

- ``gate:<path>``: after the first token, wait until ``<path>`` exists (the test
  creates it once it has read that token);
- ``boom``: raise after the first token;
- ``tick:<seconds>:<n>``: n tokens, ``seconds`` apart (a slow generator);
- ``plain``: no intermediate responses at all.
"""

import os
import time


def _text(row):
    value = row.get("data", row.get("body"))
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _wait_for(path, limit=60.0):
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class StreamHandler:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        texts = [_text(row) for row in data]
        if texts == ["plain"]:
            return [{"plain": True, "batch": 1}]
        if texts[0].startswith("tick:"):
            return [self._tick(texts[0], context)]
        for step in range(3):
            for idx, text in enumerate(texts):
                context.send_intermediate(idx, f"{text}{step}|")
            if step == 0:
                self._after_first(texts)
        return [f"{text}-end/{len(texts)}" for text in texts]

    def _after_first(self, texts):
        if "boom" in texts:
            raise ValueError("the stream exploded")
        for text in texts:
            if text.startswith("gate:"):
                _wait_for(text.split(":", 1)[1])

    def _tick(self, text, context):
        _, seconds, count = text.split(":")
        for step in range(int(count)):
            context.send_intermediate(0, f"t{step}|")
            time.sleep(float(seconds))
        return "t-end"
