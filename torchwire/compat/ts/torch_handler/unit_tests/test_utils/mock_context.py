"""``ts.torch_handler.unit_tests.test_utils.mock_context``."""

from torchwire.compat.mock_context import MockContext

__all__ = ["MockContext"]
