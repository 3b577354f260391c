"""ResNet-18 as an eager model file: the archive holds this class plus a state dict."""

from torchvision.models.resnet import BasicBlock, ResNet


class ResNet18(ResNet):
    def __init__(self) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=1000)
