"""The Open Inference Protocol (KServe v2) core shared by its REST and gRPC front ends.

Tensors travel from the front to the worker as :class:`~torchwire.oip.tensor.Tensor`
values (raw little-endian bytes, datatype, shape); numpy is used only in the
worker (:mod:`torchwire.oip.arrays`).
"""
