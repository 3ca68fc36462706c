"""Text conditioning that needs no download: a word-level encoder trained with the model.

Captions of the synthetic data are short ("a red circle moving left over stripes"), so words are the tokens: a
vocabulary built from the training captions, every unknown word mapped to ``<unk>``. Training replaces random words
by ``<unk>`` (``word_dropout``), so phrasings with filler words never seen in training still encode close to what
their known words say. A small transformer mixes the words (colour and shape must bind to each other).

Real checkpoints bring their own encoders (umT5 for Wan, CLIP for ModelScope); this one is for the defaults.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class TextConfig:
    vocab: list[str] = field(default_factory=list)  # index 0 <pad>, 1 <unk>
    dim: int = 64
    max_words: int = 16
    layers: int = 1
    heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TextConfig:
        return cls(**d)


def build_vocab(captions: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for c in captions:
        for w in words(c):
            seen.setdefault(w, None)
    return [PAD, UNK, *sorted(seen)]


class WordTextEncoder(nn.Module):
    """Text -> (1, max_words, dim) token features."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if len(cfg.vocab) < 2 or cfg.vocab[:2] != [PAD, UNK]:
            raise ValueError("the vocabulary must start with <pad>, <unk>")
        self.cfg = cfg
        self.index = {w: i for i, w in enumerate(cfg.vocab)}
        self.embed = nn.Embedding(len(cfg.vocab), cfg.dim)
        self.position = nn.Parameter(torch.randn(cfg.max_words, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, dim_feedforward=2 * cfg.dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def tokenize(
        self, texts: list[str], *, word_dropout: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        ids = torch.zeros(len(texts), self.cfg.max_words, dtype=torch.long)
        for row, text in enumerate(texts):
            toks = [self.index.get(w, 1) for w in words(text)][: self.cfg.max_words]
            if word_dropout > 0 and toks:
                drop = torch.rand(len(toks), generator=generator) < word_dropout
                toks = [1 if d else t for t, d in zip(toks, drop.tolist(), strict=True)]
            ids[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        return ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=None)
        return self.norm(x)

    def encode(self, texts: list[str], **kwargs) -> torch.Tensor:
        return self(self.tokenize(texts, **kwargs).to(self.position.device))


class PromptCache:
    """Encoded prompts by text (switching back and forth between prompts costs nothing)."""

    def __init__(self, encode, limit: int = 64) -> None:
        self.encode = encode
        self.limit = limit
        self.items: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def __call__(self, text: str) -> torch.Tensor:
        if text not in self.items:
            if len(self.items) >= self.limit:
                self.items.clear()
            self.items[text] = self.encode(text)
        return self.items[text]
