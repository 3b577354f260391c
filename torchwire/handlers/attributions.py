"""Integrated Gradients through Captum, imported only when an explanation is asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torchwire.errors import ExplanationsNotSupported

if TYPE_CHECKING:
    import torch

DEFAULT_STEPS = 15


def _integrated_gradients() -> Any:
    try:
        from captum.attr import IntegratedGradients
    except ImportError as exc:
        raise ExplanationsNotSupported(
            "explanations need Captum, which is not installed: pip install captum "
            "(or pip install 'torchwire[explain]')"
        ) from exc
    return IntegratedGradients


def integrated_gradients(
    forward: Callable[..., Any],
    inputs: torch.Tensor,
    targets: list[int],
    n_steps: int = DEFAULT_STEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attributions shaped like ``inputs`` (zero baseline) and their convergence deltas."""
    import torch

    ig = _integrated_gradients()(forward)
    with torch.inference_mode(False), torch.enable_grad():
        inputs = inputs.detach().clone().requires_grad_(True)
        attributions, delta = ig.attribute(
            inputs, target=targets, n_steps=n_steps, return_convergence_delta=True
        )
    return attributions.detach(), delta.detach()
