"""MTCNN face detector (Zhang et al., 2016) as one module with a torchvision-style output.

The three cascade networks (P-Net, R-Net, O-Net) are defined here, as layer
dicts (an archive's model file may define only one ``nn.Module`` class); their pretrained
weights are the ones facenet-pytorch ships (``data/pnet.pt``, ``rnet.pt``, ``onet.pt``),
which ``build.py`` merges into one state dict. ``forward`` takes images as float
tensors ``[3, H, W]`` in ``[0, 1]`` (what ``ToTensor`` gives) and returns, per image,
``{"boxes": [K, 4], "labels": [K], "scores": [K]}`` in that image's pixels, like
torchvision's detection models, with label 1 meaning "face".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

FACE = 1
Net = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def pnet() -> nn.ModuleDict:
    """Proposal net: a 12x12 sliding window over each scale of the image pyramid."""
    return nn.ModuleDict({
        "conv1": nn.Conv2d(3, 10, 3), "prelu1": nn.PReLU(10),
        "pool1": nn.MaxPool2d(2, 2, ceil_mode=True),
        "conv2": nn.Conv2d(10, 16, 3), "prelu2": nn.PReLU(16),
        "conv3": nn.Conv2d(16, 32, 3), "prelu3": nn.PReLU(32),
        "conv4_1": nn.Conv2d(32, 2, 1), "conv4_2": nn.Conv2d(32, 4, 1),
    })


def rnet() -> nn.ModuleDict:
    """Refinement net on 24x24 crops."""
    return nn.ModuleDict({
        "conv1": nn.Conv2d(3, 28, 3), "prelu1": nn.PReLU(28),
        "pool1": nn.MaxPool2d(3, 2, ceil_mode=True),
        "conv2": nn.Conv2d(28, 48, 3), "prelu2": nn.PReLU(48),
        "pool2": nn.MaxPool2d(3, 2, ceil_mode=True),
        "conv3": nn.Conv2d(48, 64, 2), "prelu3": nn.PReLU(64),
        "dense4": nn.Linear(576, 128), "prelu4": nn.PReLU(128),
        "dense5_1": nn.Linear(128, 2), "dense5_2": nn.Linear(128, 4),
    })


def onet() -> nn.ModuleDict:
    """Output net on 48x48 crops: face score, box refinement (and landmarks, unused)."""
    return nn.ModuleDict({
        "conv1": nn.Conv2d(3, 32, 3), "prelu1": nn.PReLU(32),
        "pool1": nn.MaxPool2d(3, 2, ceil_mode=True),
        "conv2": nn.Conv2d(32, 64, 3), "prelu2": nn.PReLU(64),
        "pool2": nn.MaxPool2d(3, 2, ceil_mode=True),
        "conv3": nn.Conv2d(64, 64, 3), "prelu3": nn.PReLU(64),
        "pool3": nn.MaxPool2d(2, 2, ceil_mode=True),
        "conv4": nn.Conv2d(64, 128, 2), "prelu4": nn.PReLU(128),
        "dense5": nn.Linear(1152, 256), "prelu5": nn.PReLU(256),
        "dense6_1": nn.Linear(256, 2), "dense6_2": nn.Linear(256, 4),
        "dense6_3": nn.Linear(256, 10),
    })


def _layers(net: nn.ModuleDict, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    for name in names:
        x = net[name](x)
    return x


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """Features in (W, H, C) order, as the original Caffe/TensorFlow nets flatten them."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


def run_pnet(net: nn.ModuleDict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _layers(net, x, ("conv1", "prelu1", "pool1", "conv2", "prelu2", "conv3", "prelu3"))
    return net["conv4_2"](x), torch.softmax(net["conv4_1"](x), dim=1)


def run_rnet(net: nn.ModuleDict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _layers(net, x, ("conv1", "prelu1", "pool1", "conv2", "prelu2", "pool2", "conv3",
                         "prelu3"))
    x = net["prelu4"](net["dense4"](_flatten(x)))
    return net["dense5_2"](x), torch.softmax(net["dense5_1"](x), dim=1)


def run_onet(net: nn.ModuleDict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _layers(net, x, ("conv1", "prelu1", "pool1", "conv2", "prelu2", "pool2", "conv3",
                         "prelu3", "pool3", "conv4", "prelu4"))
    x = net["prelu5"](net["dense5"](_flatten(x)))
    return net["dense6_2"](x), torch.softmax(net["dense6_1"](x), dim=1)


# -- box helpers -------------------------------------------------------------------------
def square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes ``[x1, y1, x2, y2, ...]`` grown to squares around the same centre."""
    out = boxes.clone()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def refine(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Apply a net's box regression (offsets as fractions of the box size)."""
    out = boxes.clone()
    extra = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out[:, :4] = boxes[:, :4] + offsets * torch.stack([w, h, w, h], dim=1)
    return out


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS where overlap is intersection over the smaller box (MTCNN's last stage)."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep: list[int] = []
    while order.numel():
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
        rb = torch.minimum(boxes[i, 2:4], boxes[rest, 2:4])
        inter = (rb - lt + 1).clamp(min=0).prod(dim=1)
        order = rest[inter / torch.minimum(area[i], area[rest]) <= threshold]
    return torch.tensor(keep, dtype=torch.long)


def crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each box cut out of ``image`` ([3, H, W], 0..255) and resized to ``size``, normalised."""
    _, h, w = image.shape
    out = []
    for x1, y1, x2, y2 in boxes[:, :4].trunc().int().tolist():
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if x2 < x1 or y2 < y1:
            out.append(torch.zeros(3, size, size))
            continue
        patch = image[:, y1 - 1:y2, x1 - 1:x2].unsqueeze(0)
        out.append(F.interpolate(patch, size=(size, size), mode="area")[0])
    return (torch.stack(out) - 127.5) * 0.0078125


class MTCNN(nn.Module):
    """The three-stage cascade; thresholds and pyramid settings as in the paper's code."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = pnet(), rnet(), onet()
        self.min_face_size = 20
        self.thresholds = (0.6, 0.7, 0.7)
        self.factor = 0.709

    def forward(self, images: list[torch.Tensor] | torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [self.detect(image * 255.0) for image in images]

    def detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes = self.propose(image)
        if len(boxes):
            boxes = self.stage(image, boxes, self.refine_net, 24, self.thresholds[1])
        if len(boxes):
            boxes = self.stage(image, boxes, self.output_net, 48, self.thresholds[2], last=True)
        return {
            "boxes": boxes[:, :4].reshape(-1, 4),
            "labels": torch.full((len(boxes),), FACE, dtype=torch.long),
            "scores": boxes[:, 4].reshape(-1),
        }

    def scales(self, height: int, width: int) -> list[float]:
        m = 12.0 / self.min_face_size
        side = min(height, width) * m
        out = []
        while side >= 12:
            out.append(m * self.factor ** len(out))
            side *= self.factor
        return out

    def propose(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1: P-Net over the pyramid; candidate boxes ``[x1, y1, x2, y2, score]``."""
        _, h, w = image.shape
        found = []
        for scale in self.scales(h, w):
            size = (int(h * scale + 1), int(w * scale + 1))
            scaled = F.interpolate(image.unsqueeze(0), size=size, mode="area")
            offsets, probs = run_pnet(self.pnet, (scaled - 127.5) * 0.0078125)
            boxes = self.windows(offsets[0], probs[0, 1], scale)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return torch.zeros(0, 9)
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return square(refine(boxes[:, :5], boxes[:, 5:], plus_one=False))

    def windows(self, offsets: torch.Tensor, probs: torch.Tensor, scale: float) -> torch.Tensor:
        """P-Net's output map cells above threshold, as boxes in image pixels."""
        ys, xs = torch.nonzero(probs >= self.thresholds[0], as_tuple=True)
        cells = torch.stack([xs, ys], dim=1).float()
        top_left = torch.floor((2 * cells + 1) / scale)
        bottom_right = torch.floor((2 * cells + 12) / scale)
        return torch.cat(
            [top_left, bottom_right, probs[ys, xs].unsqueeze(1), offsets[:, ys, xs].T], dim=1
        )

    def refine_net(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return run_rnet(self.rnet, x)

    def output_net(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return run_onet(self.onet, x)

    def stage(self, image: torch.Tensor, boxes: torch.Tensor, net: Net, size: int,
              threshold: float, last: bool = False) -> torch.Tensor:
        """Stages 2 and 3: re-score crops of the candidates, refine and de-duplicate."""
        offsets, probs = net(crops(image, boxes, size))
        keep = probs[:, 1] > threshold
        boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], dim=1)
        offsets = offsets[keep]
        if last:
            boxes = refine(boxes, offsets)
            return boxes[nms_min(boxes, boxes[:, 4], 0.7)]
        chosen = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return square(refine(boxes[chosen], offsets[chosen]))
