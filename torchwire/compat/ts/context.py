"""``ts.context``: the Context a handler receives."""

from torchwire.handlers.context import Context, RequestProcessor

__all__ = ["Context", "RequestProcessor"]
