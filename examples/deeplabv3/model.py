"""torchvision's DeepLabV3 (MobileNetV3-Large) as an eager model file.

Built with ``weights=None, weights_backbone=None``: nothing is downloaded, and the
archive's state dict holds whatever weights build.py saved (random ones). Returns
torchvision's ``{"out": [N, 21, H, W]}`` dict.
"""

import torch
from torch import nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large


class DeepLabV3Mobile(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)
