"""The pattern of TorchServe's examples/micro_batching handler, on the 8x8 digits MLP."""

import logging

from torchvision import transforms
from ts.handler_utils.micro_batching import MicroBatching
from ts.torch_handler.image_classifier import ImageClassifier

logger = logging.getLogger(__name__)


class MicroBatchDigits(ImageClassifier):
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda t: t.flatten()),
    ])

    def __init__(self):
        self.handle = MicroBatching(self)  # no super().__init__(), as in the example

    def initialize(self, ctx):
        super().initialize(ctx)
        section = ctx.model_yaml_config.get("micro_batching", {})
        if section.get("parallelism"):
            self.handle.parallelism = section["parallelism"]
        self.handle.micro_batch_size = section.get("micro_batch_size", 1)

    def postprocess(self, data):
        results = super().postprocess(data)
        index = self.handle.get_micro_batch_idx()  # which micro-batch of the batch
        return [{**r, "micro_batch": index} for r in results]
