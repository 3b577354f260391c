"""Archive a DeepLabV3 (MobileNetV3-Large) with RANDOM weights for image_segmenter.

Writes <out>/deeplabv3.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive exercises the VOC segmentation path
(torchvision's ``{"out": ...}`` dict) and times it; its masks are meaningless. Class
names are torchvision's bundled VOC category list. Images are resized to 96 pixels
on the shorter side (and not cropped) so that the [21, H, W] answer stays well under
max_response_size.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import DeepLabV3Mobile  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402

MODEL_CONFIG = """\
handler:
  resize: 96
  crop: null
"""


def class_names() -> dict[str, str]:
    categories = DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"]
    return {str(i): name for i, name in enumerate(categories)}


def build(out: Path) -> Path:
    torch.manual_seed(0)
    model = DeepLabV3Mobile().eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels, config = (Path(tmp) / n for n in
                                   ("deeplabv3.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps(class_names()))
        config.write_text(MODEL_CONFIG)
        manifest = Manifest(model_name="deeplabv3", model_version="1.0",
                            handler="image_segmenter", serialized_file="deeplabv3.pt",
                            model_file="model.py", config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "deeplabv3.pt": weights,
                 "index_to_name.json": labels, "model-config.yaml": config}
        return write_archive(manifest, files, out, fmt="zip-store", force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))} (random weights: for plumbing and timing only)")


if __name__ == "__main__":
    main()
