"""gRPC: TorchServe's inference and management services and the Open Inference Protocol."""
