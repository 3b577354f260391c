"""A small U-Net that labels each pixel background, circle, square or triangle."""

import torch
from torch import nn


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class ShapesUNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.down1, self.down2, self.down3 = block(3, 12), block(12, 24), block(24, 48)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(48, 24, 2, stride=2)
        self.merge2 = block(48, 24)
        self.up1 = nn.ConvTranspose2d(24, 12, 2, stride=2)
        self.merge1 = block(24, 12)
        self.head = nn.Conv2d(12, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        d3 = self.down3(self.pool(d2))
        u2 = self.merge2(torch.cat([self.up2(d3), d2], dim=1))
        u1 = self.merge1(torch.cat([self.up1(u2), d1], dim=1))
        return self.head(u1)
