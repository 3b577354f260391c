"""HTTP routers: inference, KServe, OpenAPI description and payload decoding."""
