"""TextHandler: the base for text models — UTF-8 text in, vocabulary ids out, per request.

A request's text is its raw body, the field ``data`` (or ``text``), a JSON string, a
JSON object with ``text`` or ``data``, or a KServe instance; a multipart request with
several files and no ``data`` field is answered with a list, one answer per file.
Each request is decoded and tokenised on its own: input that is not UTF-8 text (an
image, a binary file), or has no words, gets its own 400 while the rest of the batch
runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchwire.errors import InvalidInput
from torchwire.handlers.base import BaseHandler, input_fields
from torchwire.handlers.context import Context
from torchwire.handlers.tokens import Vocabulary, basic_english, clean, load_vocabulary, ngrams
from torchwire.handlers.transforms import handler_config, positive_int

if TYPE_CHECKING:
    import torch

TEXT_FIELDS = ("data", "body", "text")
BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
}


def _binary_kind(raw: bytes) -> str | None:
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "a WebP image"
    return next((kind for magic, kind in BINARY_MAGIC.items() if raw.startswith(magic)), None)


def _from_bytes(raw: bytes) -> str:
    kind = _binary_kind(raw)
    if kind is not None:
        raise InvalidInput(f"the input is {kind}, but this model expects UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the input is not valid UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); send the text UTF-8 encoded"
        ) from exc


def decode_text(value: Any) -> str:
    """One request value as text; InvalidInput for bytes that are not UTF-8 text."""
    if isinstance(value, dict):
        value = next((value[k] for k in TEXT_FIELDS if k in value), None)
    if isinstance(value, bytes | bytearray | memoryview):
        value = _from_bytes(bytes(value))
    if not isinstance(value, str):
        raise InvalidInput(f"expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput("the input contains NUL characters: it is binary data, not text")
    if not value.strip():
        raise InvalidInput("the input text is empty")
    return value


def text_fields(row: Any) -> tuple[list[tuple[str, Any]], bool]:
    """A request's texts as ``(field, value)`` pairs, and whether it sent several."""
    return input_fields(row, TEXT_FIELDS, "text")


@dataclass
class Tokens:
    """One request's text as vocabulary ids, with the tokens they stand for."""

    ids: torch.Tensor
    tokens: list[str]


class TextHandler(BaseHandler):
    """Base for text models: decode, clean, tokenise and look up each request's text.

    ``handler: {ngrams: N}`` in model-config.yaml adds the 2..N-grams to the tokens
    (torchtext's ``ngrams_iterator``). Override ``tokenize`` for another tokeniser,
    ``preprocess_text`` for per-request changes, or ``preprocess`` to take over.
    """

    ngrams: int = 1
    input_noun = "texts"

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.ngrams = positive_int(handler_config(context), "ngrams", self.ngrams) or 1
        self.source_vocab: Vocabulary = self.load_vocabulary(
            Path(context.system_properties["model_dir"])
        )

    def load_vocabulary(self, model_dir: Path) -> Vocabulary:
        return load_vocabulary(model_dir)

    def tokenize(self, text: str) -> list[str]:
        return ngrams(basic_english(clean(text)), self.ngrams)

    def preprocess_text(self, text: str) -> Tokens:
        import torch

        tokens = self.tokenize(text)
        if not tokens:
            raise InvalidInput("the input text has no words")
        ids = torch.as_tensor(self.source_vocab.ids(tokens), dtype=torch.long)
        return Tokens(ids, tokens)

    def prepare_row(self, row: dict[str, Any]) -> tuple[list[Any], bool]:
        fields, several = text_fields(row)
        items = []
        for name, value in fields:
            try:
                items.append(self.preprocess_text(decode_text(value)))
            except InvalidInput as exc:
                raise InvalidInput(f"field {name!r}: {exc}" if several else str(exc)) from exc
        return items, several

    def collate(self, items: list[Tokens]) -> Any:
        """The model input for a batch: by default the id tensors as a list."""
        return [item.ids for item in items]

    def explain_rows(self, items: list[Tokens], rows: list[dict[str, Any]]) -> list[Any]:
        return [self.get_insights(item, row, None) for item, row in zip(items, rows, strict=True)]

    def explain_inputs(self, batch: Any, inputs: list[Any],
                       rows: list[dict[str, Any]]) -> list[Any]:
        return self.explain_rows(inputs, rows)
