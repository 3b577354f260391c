"""torchwire: a pure-Python model server for PyTorch that speaks TorchServe's APIs."""

__version__ = "0.1.0"
