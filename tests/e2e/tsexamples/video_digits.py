"""The pattern of TorchServe's near_real_time_video handler: one request carries a
JSON object of base64 frames, answered with one top-k mapping per frame."""

import base64
import io

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier
from ts.utils.util import map_class_to_label


class VideoDigits(ImageClassifier):
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda t: t.flatten()),
    ])

    def __init__(self):
        super().__init__()

    def preprocess(self, data):
        images = []
        for row in data:
            frames = list((row.get("data") or row.get("body")).values())
            for image in frames:
                if isinstance(image, str):
                    image = base64.b64decode(image)
                if isinstance(image, (bytearray, bytes)):
                    image = self.image_processing(Image.open(io.BytesIO(image)))
                else:
                    image = torch.FloatTensor(image)
                images.append(image)
        return torch.stack(images).to(self.device)

    def postprocess(self, data):
        ps = F.softmax(data, dim=1)
        probs, classes = torch.topk(ps, self.topk, dim=1)
        return [map_class_to_label(probs.tolist(), self.mapping, classes.tolist())]
