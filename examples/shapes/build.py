"""Train the shapes U-Net on generated scenes and archive it for image_segmenter.

Writes <out>/shapes.mar (built-in handler ``image_segmenter``, an
``index_to_name.json`` with the class names) and a few fresh scenes as PNG files with
their masks to <out>/samples/shapes/. Seeded; well under a minute on two CPU cores;
no network.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import ShapesUNet  # noqa: E402
from scenes import CLASSES, mean_iou, scenes  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402

TRAIN_SEED, CHECK_SEED, SAMPLE_SEED = 0, 1, 2
TRAIN_SCENES, EPOCHS, BATCH = 2000, 6, 32
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
MODEL_CONFIG = """\
# segment each image at its own size (TorchServe's default would resize and crop to 224)
handler:
  resize: null
  crop: null
"""


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] to the handler's input: ImageNet-normalised [N, 3, H, W]."""
    scaled = (images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.tensor(scaled.transpose(0, 3, 1, 2), dtype=torch.float32)


def train() -> ShapesUNet:
    images, masks = scenes(TRAIN_SEED, TRAIN_SCENES)
    x, y = as_input(images), torch.tensor(masks)
    torch.set_num_threads(1)  # small ops: extra threads only spin, on a busy CPU badly
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = ShapesUNet(len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    return model.eval()


def check(model: ShapesUNet) -> float:
    images, masks = scenes(CHECK_SEED, 200)
    with torch.no_grad():
        predicted = model(as_input(images)).argmax(1).numpy()
    return mean_iou(predicted, masks)


def write_samples(out: Path, count: int = 4) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images, masks = scenes(SAMPLE_SEED, count)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray(image, "RGB").save(out / f"scene{i}.png")
        Image.fromarray((mask * 80).astype(np.uint8), "L").save(out / f"scene{i}_mask.png")


def build(out: Path) -> Path:
    model = train()
    print(f"shapes U-Net mean IoU on fresh scenes (in process): {check(model):.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels, config = (Path(tmp) / n for n in
                                   ("shapes.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps(dict(enumerate(CLASSES))))
        config.write_text(MODEL_CONFIG)
        manifest = Manifest(model_name="shapes", model_version="1.0",
                            handler="image_segmenter", serialized_file="shapes.pt",
                            model_file="model.py", config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "shapes.pt": weights,
                 "index_to_name.json": labels, "model-config.yaml": config}
        path = write_archive(manifest, files, out, force=True)
    write_samples(out / "samples" / "shapes")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    path = build(Path(args.out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
