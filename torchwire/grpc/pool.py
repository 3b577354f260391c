"""torchwire's own protobuf descriptor pool, used by every generated module.

Other packages register messages with the same full names (tritonclient's
``inference.ModelInferRequest``, googleapis' ``google.rpc.Status``) in
protobuf's default pool; a second registration there would fail at import.
Our messages live here instead; on the wire they are the same bytes.
"""

from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pool, empty_pb2

POOL = descriptor_pool.DescriptorPool()
for _well_known in (any_pb2, empty_pb2):
    POOL.AddSerializedFile(_well_known.DESCRIPTOR.serialized_pb)
