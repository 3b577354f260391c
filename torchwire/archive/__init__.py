"""Model archives: TorchServe's manifest, safe unpacking and writing of .mar/.tar.gz/dirs."""

from torchwire.archive.manifest import MANIFEST_PATH, Manifest, read_manifest, read_model_config
from torchwire.archive.pack import write_archive
from torchwire.archive.unpack import UnpackLimits, open_archive

__all__ = [
    "MANIFEST_PATH",
    "Manifest",
    "open_archive",
    "UnpackLimits",
    "read_manifest",
    "read_model_config",
    "write_archive",
]
