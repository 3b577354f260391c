"""Archive a ResNet-18 with RANDOM weights for the image_classifier handler.

Writes <out>/resnet18.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive is for timing and plumbing only,
its predictions are meaningless. Class names are torchvision's bundled ImageNet
category list.
"""

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from model import ResNet18  # noqa: E402
from random_weights import archive_random_model  # noqa: E402


def build(out: Path) -> Path:
    torch.manual_seed(0)
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    model = ResNet18().eval()
    return archive_random_model("resnet18", "image_classifier", model, categories, HERE, out,
                                None, fmt="default")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store", help="directory for resnet18.mar")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))} (random weights: for plumbing and timing only)")


if __name__ == "__main__":
    main()
