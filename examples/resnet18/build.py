"""Archive a ResNet-18 with RANDOM weights for the image_classifier handler.

Writes <out>/resnet18.mar. The weights come from torch.manual_seed(0), not from
training, and nothing is downloaded: the archive is for timing and plumbing only,
its predictions are meaningless. Class names are torchvision's bundled ImageNet
category list.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import ResNet18  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402


def random_model() -> ResNet18:
    torch.manual_seed(0)
    return ResNet18().eval()


def class_names() -> dict[str, str]:
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    return {str(i): name for i, name in enumerate(categories)}


def build(out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "resnet18.pt"
        torch.save(random_model().state_dict(), weights)
        labels = Path(tmp) / "index_to_name.json"
        labels.write_text(json.dumps(class_names()))
        manifest = Manifest(model_name="resnet18", model_version="1.0",
                            handler="image_classifier", serialized_file="resnet18.pt",
                            model_file="model.py")
        files = {"model.py": HERE / "model.py", "resnet18.pt": weights,
                 "index_to_name.json": labels}
        return write_archive(manifest, files, out, force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store", help="directory for resnet18.mar")
    args = ap.parse_args()
    path = build(Path(args.out))
    print(f"wrote {path} (random weights: for timing only)")


if __name__ == "__main__":
    main()
