"""Train the AG_NEWS-shaped topic classifier on the news sentences in data/ and archive it.

The four topics are AG_NEWS's: World, Sports, Business, Sci/Tech; data/ holds a
hundred hand-written news sentences for each. Every fourth sentence of each topic is
held out. Tokens are the text_classifier handler's own (TorchServe's clean-up and
``basic_english``; single words, set by ``ngrams: 1`` in the archive's
model-config.yaml), so the vocabulary built here matches what the server sees.
Writes <out>/news.mar (built-in handler ``text_classifier``, ``source_vocab.pt``,
``index_to_name.json``) and the held-out sentences as text files in
<out>/samples/news/. Seeded, a few seconds on a CPU, no network.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import VOCAB_CAPACITY, TextSentiment  # noqa: E402

from torchwire.archive import Manifest, write_archive  # noqa: E402
from torchwire.handlers.tokens import UNKNOWN, basic_english, clean, ngrams  # noqa: E402

TOPICS = [("World", "world.txt"), ("Sports", "sports.txt"), ("Business", "business.txt"),
          ("Sci/Tech", "scitech.txt")]
NGRAMS = 1  # bigrams are mostly unique in a corpus this small and only add noise
EPOCHS, BATCH, UNKNOWN_RATE = 30, 16, 0.15

Example = tuple[str, int]


def tokenize(text: str) -> list[str]:
    return ngrams(basic_english(clean(text)), NGRAMS)


def load(data: Path = HERE / "data") -> tuple[list[Example], list[Example]]:
    """(train, held out): every fourth sentence of each topic is held out."""
    train, held_out = [], []
    for label, (_, name) in enumerate(TOPICS):
        lines = [t for t in (data / name).read_text(encoding="utf-8").splitlines() if t.strip()]
        for i, text in enumerate(lines):
            (held_out if i % 4 == 3 else train).append((text, label))
    return train, held_out


def vocabulary(examples: list[Example]) -> dict[str, int]:
    stoi = {UNKNOWN: 0}
    for text, _ in examples:
        for token in tokenize(text):
            stoi.setdefault(token, len(stoi))
    if len(stoi) > VOCAB_CAPACITY:
        raise SystemExit(f"{len(stoi)} tokens do not fit the model's {VOCAB_CAPACITY}")
    return stoi


def encode(texts: list[str], stoi: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [torch.tensor([stoi.get(t, 0) for t in tokenize(text)]) for text in texts]
    offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
    return torch.cat(ids), offsets


def train(examples: list[Example], stoi: dict[str, int]) -> TextSentiment:
    torch.set_num_threads(1)  # small ops: extra threads only spin, on a busy CPU badly
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = TextSentiment()
    opt = torch.optim.SGD(model.parameters(), lr=4.0)
    schedule = torch.optim.lr_scheduler.StepLR(opt, 10, gamma=0.5)
    for _ in range(EPOCHS):
        order = torch.randperm(len(examples), generator=gen).tolist()
        for start in range(0, len(order), BATCH):
            batch = [examples[i] for i in order[start:start + BATCH]]
            ids, offsets = encode([t for t, _ in batch], stoi)
            drop = torch.rand(ids.shape, generator=gen) < UNKNOWN_RATE  # teach <unk> to be neutral
            ids = ids.masked_fill(drop, 0)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(ids, offsets),
                                                     torch.tensor([y for _, y in batch]))
            loss.backward()
            opt.step()
        schedule.step()
    return model.eval()


def accuracy(model: TextSentiment, examples: list[Example], stoi: dict[str, int]) -> float:
    with torch.no_grad():
        predicted = model(*encode([t for t, _ in examples], stoi)).argmax(1).tolist()
    return sum(p == y for p, (_, y) in zip(predicted, examples, strict=True)) / len(examples)


def write_samples(examples: list[Example], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (text, label) in enumerate(examples):
        (out / f"{i:03d}_label{label}.txt").write_text(text + "\n", encoding="utf-8")


def build(out: Path) -> Path:
    train_set, held_out = load()
    stoi = vocabulary(train_set)
    model = train(train_set, stoi)
    print(f"news classifier held-out accuracy (in process): {accuracy(model, held_out, stoi):.3f}"
          f" ({len(stoi)} tokens)")
    with tempfile.TemporaryDirectory() as tmp:
        weights, vocab, labels, config = (
            Path(tmp) / n
            for n in ("news.pt", "source_vocab.pt", "index_to_name.json", "model-config.yaml"))
        torch.save(model.state_dict(), weights)
        torch.save(stoi, vocab)
        labels.write_text(json.dumps({str(i): name for i, (name, _) in enumerate(TOPICS)}))
        config.write_text(f"handler:\n  ngrams: {NGRAMS}\n")
        manifest = Manifest(model_name="news", model_version="1.0", handler="text_classifier",
                            serialized_file="news.pt", model_file="model.py",
                            config_file="model-config.yaml")
        files = {"model.py": HERE / "model.py", "news.pt": weights, "source_vocab.pt": vocab,
                 "index_to_name.json": labels, "model-config.yaml": config}
        path = write_archive(manifest, files, out, force=True)
    write_samples(held_out, out / "samples" / "news")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    print(f"wrote {build(Path(args.out))}")


if __name__ == "__main__":
    main()
