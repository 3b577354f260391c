"""A TorchServe-style custom handler, written the way TorchServe's MNIST example is.

It imports only TorchServe's names; torchwire serves it through its ``ts`` layer.
"""

import torch
from torchvision import transforms
from ts.handler_utils.timer import timed
from ts.torch_handler.image_classifier import ImageClassifier
from ts.utils.util import map_class_to_label


class DigitClassifier(ImageClassifier):
    """8x8 grayscale digits; the MLP takes the 64 pixels as one vector."""

    topk = 3
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda t: t.flatten()),
    ])

    @timed
    def postprocess(self, data):
        probs = torch.softmax(data, dim=1)
        top = torch.topk(probs, self.topk, dim=1)
        return map_class_to_label(top.values.tolist(), self.mapping, top.indices.tolist())
