"""Archive a Faster R-CNN (MobileNetV3-Large 320 FPN) with RANDOM weights for object_detector.

Writes <out>/fasterrcnn.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive exercises the COCO detection path
and times it; its detections are meaningless. Class names are torchvision's bundled
COCO category list.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import FasterRCNNMobile  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402

MODEL_CONFIG = """\
# random weights score every box about 1/91: show them anyway
handler:
  threshold: 0.0
"""


def class_names() -> dict[str, str]:
    categories = FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1.meta["categories"]
    return {str(i): name for i, name in enumerate(categories)}


def build(out: Path) -> Path:
    torch.manual_seed(0)
    model = FasterRCNNMobile().eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels, config = (Path(tmp) / n for n in
                                   ("fasterrcnn.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps(class_names()))
        config.write_text(MODEL_CONFIG)
        manifest = Manifest(model_name="fasterrcnn", model_version="1.0",
                            handler="object_detector", serialized_file="fasterrcnn.pt",
                            model_file="model.py", config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "fasterrcnn.pt": weights,
                 "index_to_name.json": labels, "model-config.yaml": config}
        return write_archive(manifest, files, out, fmt="zip-store", force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))} (random weights: for plumbing and timing only)")


if __name__ == "__main__":
    main()
