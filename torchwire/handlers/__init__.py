"""Handlers: the base class users derive from, the per-batch Context, and resolution."""
