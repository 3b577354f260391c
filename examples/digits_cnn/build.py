"""Train the digits CNN on scikit-learn's bundled digits and archive it for image_classifier.

Writes <out>/digits_cnn.mar (built-in handler ``image_classifier``, an
``index_to_name.json`` with the digits' names, a model-config.yaml for 8x8 grayscale
input) and PNG files of the held-out digits to <out>/samples/digits_cnn/. Seeded, a
few seconds on a CPU, no network.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import DigitsCNN  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MODEL_CONFIG = """\
# 8x8 grayscale digits, bright ink on black, scaled to [-1, 1]
handler:
  mode: L
  resize: 8
  crop: 8
  mean: [0.5]
  std: [0.5]
  topk: 3
"""
EPOCHS = 15


def as_input(images: np.ndarray) -> torch.Tensor:
    """Pixel values in [0, 1] to the handler's normalised tensor [N, 1, 8, 8]."""
    return torch.tensor((images - 0.5) / 0.5, dtype=torch.float32).unsqueeze(1)


def train(x: torch.Tensor, y: torch.Tensor) -> DigitsCNN:
    torch.set_num_threads(1)  # small ops: extra threads only spin, on a busy CPU badly
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            batch = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))  # shift by a pixel
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(batch), y[idx]).backward()
            opt.step()
    return model.eval()


def write_samples(images: np.ndarray, labels: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        png = Image.fromarray((pixels * 255).round().astype(np.uint8), "L")
        png.save(out / f"{i:03d}_label{label}.png")


def build(out: Path) -> Path:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images / 16.0, digits.target, test_size=0.25, random_state=0,
        stratify=digits.target)
    model = train(as_input(x_train), torch.tensor(y_train))
    with torch.no_grad():
        acc = (model(as_input(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"digits CNN held-out accuracy (in process): {acc:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels, config = (Path(tmp) / n for n in
                                   ("digits_cnn.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps(dict(enumerate(NAMES))))
        config.write_text(MODEL_CONFIG)
        manifest = Manifest(model_name="digits_cnn", model_version="1.0",
                            handler="image_classifier", serialized_file="digits_cnn.pt",
                            model_file="model.py", config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "digits_cnn.pt": weights,
                 "index_to_name.json": labels, "model-config.yaml": config}
        path = write_archive(manifest, files, out, force=True)
    write_samples(x_test, y_test, out / "samples" / "digits_cnn")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    out = Path(args.out)
    path = build(out)
    print(f"wrote {path} and held-out PNGs in {out / 'samples' / 'digits_cnn'}")


if __name__ == "__main__":
    main()
