"""Workflows (.war): a DAG of models and handler functions, TorchServe's format and APIs."""
