"""Archive a DeepLabV3 (MobileNetV3-Large) with RANDOM weights for image_segmenter.

Writes <out>/deeplabv3.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive exercises the VOC segmentation path
(torchvision's ``{"out": ...}`` dict) and times it; its masks are meaningless. Class
names are torchvision's bundled VOC category list. Images are resized to 96 pixels
on the shorter side (and not cropped) so that the [21, H, W] answer stays well under
max_response_size.
"""

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from model import DeepLabV3Mobile  # noqa: E402
from random_weights import archive_random_model  # noqa: E402

MODEL_CONFIG = """\
handler:
  resize: 96
  crop: null
"""


def build(out: Path) -> Path:
    torch.manual_seed(0)
    categories = DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"]
    model = DeepLabV3Mobile().eval()
    return archive_random_model("deeplabv3", "image_segmenter", model, categories, HERE, out,
                                MODEL_CONFIG, fmt="zip-store")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store", help="directory for deeplabv3.mar")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))} (random weights: for plumbing and timing only)")


if __name__ == "__main__":
    main()
