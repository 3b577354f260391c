"""``ts.torch_handler``: TorchServe's handler classes, backed by torchwire's."""
