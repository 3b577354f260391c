"""Archive the MTCNN face detector with facenet-pytorch's pretrained weights.

The weights are the three files facenet-pytorch's wheel carries (``data/pnet.pt``,
``rnet.pt``, ``onet.pt``, MIT licence). Only the wheel is fetched, with
``pip download --no-deps`` from the package index pip is configured for (its
dependencies would conflict with ours, and nothing else of it is used); it is kept
under examples/faces/artifacts/ so later builds need no network. The network
definitions are ours (model.py). Writes <out>/faces.mar for the built-in
``object_detector`` handler, and sample photos from scikit-image to
<out>/samples/faces/.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import MTCNN  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402

PACKAGE, VERSION = "facenet-pytorch", "2.6.0"
WHEEL = f"facenet_pytorch-{VERSION}-py3-none-any.whl"
NETS = ("pnet", "rnet", "onet")
CACHE = HERE / "artifacts"
MODEL_CONFIG = """\
handler:
  threshold: 0.9
"""


def wheel(cache: Path) -> Path:
    """facenet-pytorch's wheel, downloaded once into ``cache``."""
    path = cache / WHEEL
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", f"{PACKAGE}=={VERSION}",
                        "-d", str(cache)], check=True)
    return path


def pretrained_state(cache: Path) -> dict[str, torch.Tensor]:
    """The three nets' state dicts from the wheel, merged under pnet./rnet./onet."""
    state: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel(cache)) as whl, tempfile.TemporaryDirectory() as tmp:
        for net in NETS:
            member = f"facenet_pytorch/data/{net}.pt"
            target = Path(tmp) / f"{net}.pt"
            target.write_bytes(whl.read(member))
            weights = torch.load(str(target), map_location="cpu", weights_only=True)
            state.update({f"{net}.{k}": v for k, v in weights.items()})
    return state


def write_samples(out: Path) -> None:
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(out / "astronaut.png")
    Image.fromarray(data.coffee()).save(out / "coffee.png")  # no face


def build(out: Path, cache: Path = CACHE) -> Path:
    model = MTCNN()
    model.load_state_dict(pretrained_state(cache))
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels, config = (Path(tmp) / n for n in
                                   ("mtcnn.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps({"0": "background", "1": "face"}))
        config.write_text(MODEL_CONFIG)
        manifest = Manifest(model_name="faces", model_version="1.0", handler="object_detector",
                            serialized_file="mtcnn.pt", model_file="model.py",
                            config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "mtcnn.pt": weights,
                 "index_to_name.json": labels, "model-config.yaml": config}
        path = write_archive(manifest, files, out, force=True)
    write_samples(out / "samples" / "faces")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    ap.add_argument("--cache", default=str(CACHE), help="where the wheel is kept")
    args = ap.parse_args()
    path = build(Path(args.out), Path(args.cache))
    print(f"wrote {path} (pretrained MTCNN weights from {PACKAGE} {VERSION})")


if __name__ == "__main__":
    main()
