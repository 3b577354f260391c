"""torchvision's Faster R-CNN (MobileNetV3-Large 320 FPN) as an eager model file.

Built with ``weights=None, weights_backbone=None``: nothing is downloaded, and the
archive's state dict holds whatever weights build.py saved (random ones).
``box_score_thresh`` is 0 so that even random weights give detections to look at.
"""

import torch
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn


class FasterRCNNMobile(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0,
            box_detections_per_img=10)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.net(images)
