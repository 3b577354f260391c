"""``ts.torch_handler.unit_tests``: only the helpers examples' tests import."""
