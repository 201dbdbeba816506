"""Tokenizers: character-level, and byte-level BPE trained on the user's text.

Both turn text into integer ids and back, and serialise to a JSON-able dict
(``to_dict`` / :func:`tokenizer_from_dict`) that is saved with every checkpoint, so a run can
always be sampled with the exact vocabulary it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np


class TokenizerError(ValueError):
    """Text the tokenizer cannot encode, or a serialised tokenizer it cannot read."""


class CharTokenizer:
    """One id per distinct character of the training text (ids in sorted character order)."""

    kind = "char"

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        if not chars:
            raise TokenizerError("CharTokenizer: the vocabulary is empty (no characters given)")
        if any(len(c) != 1 for c in chars):
            raise TokenizerError("CharTokenizer: every vocabulary entry must be one character")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self._itos = np.array(chars, dtype=object)

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The vocabulary of every character in ``texts`` (an iterable of strings)."""
        seen = np.zeros(0, dtype=np.uint32)
        for t in texts:  # distinct code points per chunk, vectorised (fast on a GB of text)
            cps = np.unique(np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32))
            seen = np.union1d(seen, cps)
        return cls(chr(c) for c in seen.tolist())

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            missing = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise TokenizerError(
                f"the text has {len(missing)} character(s) outside the tokenizer's vocabulary of "
                f"{self.vocab_size}: {shown}{more}. A character-level model can only read "
                "characters it saw in training"
            ) from None

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise TokenizerError(f"decode: ids must be in [0, {self.vocab_size}), got "
                                 f"[{ids.min()}, {ids.max()}]")
        return "".join(self._itos[ids].tolist())

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": "".join(self.chars)}


class BPETokenizer:
    """Byte-level BPE (as GPT-2's): any text encodes, with no unknown token.

    Trained on the user's text by the ``tokenizers`` library (``pip install 'chainrule[bpe]'``).
    """

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @staticmethod
    def _lib():
        try:
            import tokenizers
        except ImportError as e:
            raise TokenizerError(
                "the BPE tokenizer needs the 'tokenizers' library: pip install 'chainrule[bpe]' "
                "(or use tokenizer = 'char')"
            ) from e
        return tokenizers

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024) -> BPETokenizer:
        """Learn ``vocab_size`` tokens (at least the 256 byte symbols) from ``texts``."""
        tk = cls._lib()
        if vocab_size < 257:
            raise TokenizerError(f"BPE vocab_size must be at least 257 (256 bytes + merges), "
                                 f"got {vocab_size}")
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=2, show_progress=False,
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
        )
        tok.train_from_iterator(_pieces(texts), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def to_dict(self) -> dict:
        return {"type": self.kind, "tokenizer": json.loads(self._tok.to_str())}


def _pieces(texts: Iterable[str], size: int = 1 << 16):
    """Split long strings into line-aligned pieces the BPE trainer can batch."""
    for t in texts:
        start = 0
        while start < len(t):
            end = t.find("\n", start + size)
            end = len(t) if end < 0 else end + 1
            yield t[start:end]
            start = end


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 1024):
    """A new tokenizer of ``kind`` ('char' or 'bpe') trained on ``texts``."""
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size)
    raise TokenizerError(f"tokenizer: unknown kind {kind!r}; expected 'char' or 'bpe'")


def tokenizer_from_dict(d: dict):
    """Rebuild a tokenizer from its ``to_dict()``."""
    if not isinstance(d, dict) or "type" not in d:
        raise TokenizerError("tokenizer JSON must be an object with a 'type' field")
    if d["type"] == "char":
        return CharTokenizer(d["chars"])
    if d["type"] == "bpe":
        tk = BPETokenizer._lib()
        return BPETokenizer(tk.Tokenizer.from_str(json.dumps(d["tokenizer"])))
    raise TokenizerError(f"tokenizer JSON: unknown type {d['type']!r}; expected 'char' or 'bpe'")


def save_tokenizer(tokenizer, path: str) -> None:
    """Write the tokenizer's JSON atomically (never through a link)."""
    from ..serialization import atomic_write

    atomic_write(path, json.dumps(tokenizer.to_dict(), ensure_ascii=False))


def load_tokenizer(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise TokenizerError(f"tokenizer file {path!r} is not valid JSON: {e}") from None
    return tokenizer_from_dict(d)
