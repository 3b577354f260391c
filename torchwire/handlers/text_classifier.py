"""TextClassifier: TorchServe's ``text_classifier`` built-in handler, batched.

The model is TorchServe's AG_NEWS shape: ``model(token_ids, offsets)``, an
``nn.EmbeddingBag`` over the concatenated ids of the batch's texts followed by a
classifier. Tokens are torchtext's ``basic_english`` plus bigrams (``ngrams: 2``),
looked up in the archive's vocabulary. Answers, per text, the classes with their
softmax probabilities, highest first (``{"Sports": 0.93, "World": 0.04, ...}``: the
first key is the predicted class); ``topk`` in model-config.yaml limits how many.

Explanations are Integrated Gradients over each token's embedding, summed per token:
``{"words": [...], "importances": [...], "delta": d}``, one importance per word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchwire.errors import ExplanationsNotSupported, InvalidInput
from torchwire.handlers.attributions import integrated_gradients
from torchwire.handlers.base import row_target
from torchwire.handlers.context import Context
from torchwire.handlers.labels import label_of
from torchwire.handlers.text import TextHandler, Tokens
from torchwire.handlers.transforms import handler_config, positive_int

if TYPE_CHECKING:
    import torch

EXPLAIN_STEPS = 50


def embedding_bag_of(model: Any) -> Any:
    """The model's ``nn.EmbeddingBag`` (its ``embedding`` attribute, else the first one)."""
    from torch import nn

    candidate = getattr(model, "embedding", None)
    if isinstance(candidate, nn.EmbeddingBag):
        return candidate
    bag = next((m for m in model.modules() if isinstance(m, nn.EmbeddingBag)), None)
    if bag is None:
        raise ExplanationsNotSupported(
            "text_classifier explains models built on an nn.EmbeddingBag; this model has "
            "none (override get_insights in a custom handler)"
        )
    return bag


def pool(embeddings: torch.Tensor, mode: str) -> torch.Tensor:
    """``[S, T, D]`` token embeddings reduced per sample as an EmbeddingBag would."""
    if mode == "sum":
        return embeddings.sum(dim=1)
    if mode == "max":
        return embeddings.amax(dim=1)
    return embeddings.mean(dim=1)


class TextClassifier(TextHandler):
    """Text classification: class names → probability per text, highest first."""

    ngrams: int = 2
    topk: int | None = None

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.topk = positive_int(handler_config(context), "topk", self.topk)

    def collate(self, items: list[Tokens]) -> Any:
        """All ids in one flat tensor, with each text's start offset."""
        import torch

        lengths = torch.as_tensor([0] + [len(i.ids) for i in items[:-1]])
        return torch.cat([i.ids for i in items]), torch.cumsum(lengths, dim=0)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        ids, offsets = data if isinstance(data, tuple) else (data, torch.zeros(1, dtype=torch.long))
        with torch.inference_mode():
            return self.model(ids.to(self.device), offsets.to(self.device), *args, **kwargs)

    def postprocess(self, data: Any) -> list[Any]:
        import torch

        probs = torch.softmax(data.detach().float().cpu(), dim=1)
        k = min(self.topk or probs.shape[1], probs.shape[1])
        top = torch.topk(probs, k, dim=1)
        return [
            {label_of(self.mapping, i): p for i, p in zip(idx, ps, strict=True)}
            for idx, ps in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        ]

    # -- explanations ------------------------------------------------------------
    def _target(self, item: Tokens, row: Any) -> int:
        logits = self.inference(self.collate([item]))
        classes = logits.shape[1]
        target = row_target(row)
        if target is None:
            return int(logits.argmax(1)[0])
        if not 0 <= target < classes:
            raise InvalidInput(f"target {target} is not a class of this model (0 to {classes - 1})")
        return target

    def get_insights(self, text_preprocess: Any, raw_data: Any, target: Any) -> Any:
        """Per-token Integrated Gradients for one text (needs Captum)."""
        import torch
        import torch.nn.functional as F

        item: Tokens = text_preprocess
        bag = embedding_bag_of(self.model)
        ids = item.ids.to(self.device)
        wanted = self._target(item, raw_data) if target is None else int(target)
        embedded = F.embedding(ids, bag.weight.detach()).unsqueeze(0)

        def forward(embeddings: torch.Tensor) -> torch.Tensor:
            samples, length = embeddings.shape[:2]
            pooled = pool(embeddings, bag.mode)
            hook = bag.register_forward_hook(lambda _m, _i, _o: pooled)
            try:
                offsets = torch.arange(samples, device=ids.device) * length
                return self.model(ids.repeat(samples), offsets)
            finally:
                hook.remove()

        attributions, delta = integrated_gradients(forward, embedded, [wanted], EXPLAIN_STEPS)
        importances = attributions.sum(dim=-1)[0].cpu().tolist()
        return {"words": item.tokens, "importances": importances, "target": wanted,
                "delta": float(delta[0])}
