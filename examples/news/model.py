"""TorchServe's AG_NEWS text classifier shape: an EmbeddingBag over token ids, then a linear layer.

``forward(text, offsets)`` takes the ids of a batch's texts concatenated and each
text's start offset, as ``nn.EmbeddingBag`` does. The embedding table has room for
``VOCAB_CAPACITY`` tokens so that the class needs no constructor arguments; the
archive's ``source_vocab.pt`` uses the first ids of it.
"""

import torch
from torch import nn

VOCAB_CAPACITY = 16384
TOPICS = 4


class TextSentiment(nn.Module):
    def __init__(self, vocab_size: int = VOCAB_CAPACITY, embed_dim: int = 32,
                 num_class: int = TOPICS) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=True)
        self.fc = nn.Linear(embed_dim, num_class)
        nn.init.uniform_(self.embedding.weight, -0.5, 0.5)
        nn.init.uniform_(self.fc.weight, -0.5, 0.5)
        nn.init.zeros_(self.fc.bias)

    def forward(self, text: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(text, offsets))
