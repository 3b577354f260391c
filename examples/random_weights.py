"""Shared by the random-weight examples: archive a torchvision architecture as it is built.

The weights come from torch.manual_seed(0), not from training, and nothing is
downloaded; the class names come from torchvision's bundled category lists.
"""

import json
import tempfile
from pathlib import Path

import torch

from torchwire.archive import Manifest, write_archive


def archive_random_model(name: str, handler: str, model: torch.nn.Module, categories: list[str],
                         model_dir: Path, out: Path, model_config: str | None = None,
                         fmt: str = "default") -> Path:
    """Write ``<out>/<name>.mar`` with ``model``'s state dict, its model.py and labels."""
    with tempfile.TemporaryDirectory() as tmp:
        weights, labels = Path(tmp) / f"{name}.pt", Path(tmp) / "index_to_name.json"
        torch.save(model.state_dict(), weights)
        labels.write_text(json.dumps({str(i): c for i, c in enumerate(categories)}))
        files = {"model.py": model_dir / "model.py", weights.name: weights,
                 "index_to_name.json": labels}
        config_file = None
        if model_config is not None:
            config = Path(tmp) / "model-config.yaml"
            config.write_text(model_config)
            files[config.name] = config
            config_file = config.name
        manifest = Manifest(model_name=name, model_version="1.0", handler=handler,
                            serialized_file=weights.name, model_file="model.py",
                            config_file=config_file)
        return write_archive(manifest, files, out, fmt=fmt, force=True)
