"""A TorchServe-style streaming handler, as TorchServe's docs write one."""

from ts.handler_utils.utils import send_intermediate_predict_response as send_from_utils
from ts.protocol.otf_message_handler import send_intermediate_predict_response


def _text(row):
    value = row.get("data", row.get("body"))
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def handle(data, context):
    if data is None:
        return None
    texts = [_text(row) for row in data]
    send_intermediate_predict_response([f"{t}: hello " for t in texts], context.request_ids,
                                       "Intermediate Prediction success", 200, context)
    send_from_utils([{"word": "world", "for": t} for t in texts], context.request_ids,
                    "Intermediate Prediction success", 200, context)
    return [f" {t}: done" for t in texts]
