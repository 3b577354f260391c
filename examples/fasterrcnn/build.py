"""Archive a Faster R-CNN (MobileNetV3-Large 320 FPN) with RANDOM weights for object_detector.

Writes <out>/fasterrcnn.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive exercises the COCO detection path
and times it; its detections are meaningless. Class names are torchvision's bundled
COCO category list.
"""

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from model import FasterRCNNMobile  # noqa: E402
from random_weights import archive_random_model  # noqa: E402

MODEL_CONFIG = """\
# random weights score every box about 1/91: show them anyway
handler:
  threshold: 0.0
"""


def build(out: Path) -> Path:
    torch.manual_seed(0)
    categories = FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1.meta["categories"]
    model = FasterRCNNMobile().eval()
    return archive_random_model("fasterrcnn", "object_detector", model, categories, HERE, out,
                                MODEL_CONFIG, fmt="zip-store")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store", help="directory for fasterrcnn.mar")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))} (random weights: for plumbing and timing only)")


if __name__ == "__main__":
    main()
