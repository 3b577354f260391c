"""``ts.torch_handler.request_envelope``: see :mod:`torchwire.compat.envelopes`."""
