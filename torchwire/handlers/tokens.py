"""Text to tokens to vocabulary ids: TorchServe's text clean-up and torchtext's tokeniser.

``basic_english`` is torchtext's tokeniser of that name (lower case, punctuation split
off); ``ngrams`` is torchtext's ``ngrams_iterator`` as a list. The clean-up steps are
those TorchServe's ``TextHandler`` applies before tokenising. A :class:`Vocabulary` is
read from the archive: ``source_vocab.pt`` (a ``torch.save``d dict token → id or list
of tokens), ``vocab.json`` (the same as JSON) or ``vocab.txt`` (one token per line).
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from pathlib import Path
from typing import Any

from torchwire.errors import HandlerError

VOCAB_FILES = ("source_vocab.pt", "vocab.json", "vocab.txt")
UNKNOWN = "<unk>"

_BASIC_ENGLISH = [
    (re.compile(r"\'"), " '  "),
    (re.compile(r"\""), ""),
    (re.compile(r"\."), " . "),
    (re.compile(r"<br \/>"), " "),
    (re.compile(r","), " , "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\!"), " ! "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\;"), " "),
    (re.compile(r"\:"), " "),
    (re.compile(r"\s+"), " "),
]
_IRREGULAR = {"won't": "will not", "can't": "cannot", "shan't": "shall not", "ain't": "is not",
              "let's": "let us", "it's": "it is", "that's": "that is", "there's": "there is",
              "he's": "he is", "she's": "she is", "what's": "what is", "who's": "who is"}
_SUFFIXES = [(re.compile(r"n't\b"), " not"), (re.compile(r"'re\b"), " are"),
             (re.compile(r"'ve\b"), " have"), (re.compile(r"'ll\b"), " will"),
             (re.compile(r"'d\b"), " would"), (re.compile(r"'m\b"), " am")]
_IRREGULAR_RE = re.compile(r"\b(" + "|".join(re.escape(k) for k in _IRREGULAR) + r")\b")
_HTML_TAG = re.compile(r"<[^>]*>")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def basic_english(line: str) -> list[str]:
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(tokens: list[str], n: int) -> list[str]:
    """The tokens, then every run of 2..n consecutive tokens joined by a space."""
    out = list(tokens)
    for size in range(2, n + 1):
        out += [" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)]
    return out


def remove_accents(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def expand_contractions(text: str) -> str:
    text = text.replace("\u2019", "'")
    text = _IRREGULAR_RE.sub(lambda m: _IRREGULAR[m.group(1)], text.lower())
    for pattern, replacement in _SUFFIXES:
        text = pattern.sub(replacement, text)
    return text


def remove_html_tags(text: str) -> str:
    return _HTML_TAG.sub(" ", text)


def remove_punctuation(text: str) -> str:
    return text.translate(_PUNCTUATION)


def clean(text: str) -> str:
    """TorchServe's clean-up: accents, contractions, HTML tags, punctuation."""
    return remove_punctuation(remove_html_tags(expand_contractions(remove_accents(text))))


class Vocabulary:
    """Token → id, with unknown tokens mapped to ``<unk>``'s id (0 if it has none)."""

    def __init__(self, stoi: dict[str, int]) -> None:
        self.stoi = stoi
        self.unknown = stoi.get(UNKNOWN, 0)

    def __len__(self) -> int:
        return len(self.stoi)

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.unknown)

    def ids(self, tokens: list[str]) -> list[int]:
        return [self[t] for t in tokens]


def _stoi(value: Any, source: str) -> dict[str, int]:
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return {token: i for i, token in enumerate(value)}
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        return dict(value)
    raise HandlerError(f"{source} must hold a mapping token -> id or a list of tokens")


def _read_pt(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ModuleNotFoundError) as exc:
        raise HandlerError(
            f"{path.name} could not be read as a dict or list of tokens ({exc}); a torchtext "
            "Vocab can be converted with torch.save(vocab.get_stoi(), 'source_vocab.pt')"
        ) from exc


def load_vocabulary(model_dir: Path) -> Vocabulary:
    """The archive's vocabulary, from the first of :data:`VOCAB_FILES` present."""
    for name in VOCAB_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        if name.endswith(".pt"):
            return Vocabulary(_stoi(_read_pt(path), name))
        text = path.read_text(encoding="utf-8")
        if name.endswith(".json"):
            return Vocabulary(_stoi(json.loads(text), name))
        return Vocabulary({token: i for i, token in enumerate(text.splitlines())})
    raise HandlerError(f"text handlers need a vocabulary in the archive: one of "
                       f"{', '.join(VOCAB_FILES)}")
