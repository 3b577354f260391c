"""The pattern of TorchServe's async worker test handler (``asyncCommunication: true``):
an ``ImageClassifier`` whose ``handle`` is ``async def``; the answer is the predicted
class index per image."""

import asyncio
import time

from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class AsyncDigits(ImageClassifier):
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda t: t.flatten()),
    ])

    async def handle(self, data, context):
        started = time.time()
        await asyncio.sleep(0)  # a real await: the handler runs on an event loop
        output = self.postprocess(self.inference(self.preprocess(data)))
        context.metrics.add_time("HandlerTime", round((time.time() - started) * 1000, 2),
                                 None, "ms")
        return output

    def postprocess(self, data):
        return data.argmax(1).tolist()
