"""MTCNN face detector (Zhang et al., 2016) as one module with a torchvision-style output.

The three cascade networks (P-Net, R-Net, O-Net) are defined here; their pretrained
weights are the ones facenet-pytorch ships (``data/pnet.pt``, ``rnet.pt``, ``onet.pt``),
which ``build.py`` merges into one state dict. ``forward`` takes images as float
tensors ``[3, H, W]`` in ``[0, 1]`` (what ``ToTensor`` gives) and returns, per image,
``{"boxes": [K, 4], "labels": [K], "scores": [K]}`` in that image's pixels, like
torchvision's detection models, with label 1 meaning "face".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

FACE = 1


class PNet(nn.Module):
    """Proposal net: a 12x12 sliding window over each scale of the image pyramid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: face score, box refinement (and landmarks, unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)


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
        self.pnet = PNet()
        self.rnet = RNet()
        self.onet = ONet()
        self.min_face_size = 20
        self.thresholds = (0.6, 0.7, 0.7)
        self.factor = 0.709

    def forward(self, images: list[torch.Tensor] | torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [self.detect(image * 255.0) for image in images]

    def detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes = self.propose(image)
        if len(boxes):
            boxes = self.stage(image, boxes, self.rnet, 24, self.thresholds[1])
        if len(boxes):
            boxes = self.stage(image, boxes, self.onet, 48, self.thresholds[2], last=True)
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
            offsets, probs = self.pnet((scaled - 127.5) * 0.0078125)
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

    def stage(self, image: torch.Tensor, boxes: torch.Tensor, net: nn.Module, size: int,
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
