"""Train the digits MLP on scikit-learn's bundled digits and archive it.

Writes <out>/digits.mar and PNG samples of held-out digits to <out>/samples/.
Takes a few seconds on a CPU; needs no network.
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

from model import DigitsMLP  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402


def train(x: np.ndarray, y: np.ndarray) -> DigitsMLP:
    torch.manual_seed(0)
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


def write_samples(x: np.ndarray, y: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (pixels, label) in enumerate(zip(x, y, strict=True)):
        image = Image.fromarray((pixels.reshape(8, 8) * 255).round().astype(np.uint8), "L")
        image.save(out / f"{i:03d}_label{label}.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    out = Path(args.out)
    digits = load_digits()
    x = digits.data / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    model = train(x_train, y_train)
    with torch.no_grad():
        acc = (model(torch.tensor(x_test, dtype=torch.float32)).argmax(1).numpy() == y_test).mean()
    print(f"digits MLP held-out accuracy: {acc:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "digits.pt"
        torch.save(model.state_dict(), weights)
        labels = Path(tmp) / "index_to_name.json"
        labels.write_text(json.dumps({str(i): str(i) for i in range(10)}))
        manifest = Manifest(model_name="digits", model_version="1.0", handler="handler.py",
                            serialized_file="digits.pt", model_file="model.py")
        files = {"model.py": HERE / "model.py", "handler.py": HERE / "handler.py",
                 "digits.pt": weights, "index_to_name.json": labels}
        path = write_archive(manifest, files, out, force=True)
    write_samples(x_test, y_test, out / "samples" / "digits")
    print(f"wrote {path} and {len(y_test)} samples in {out / 'samples' / 'digits'}")


if __name__ == "__main__":
    main()
