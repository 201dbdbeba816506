"""Token arrays and random training windows.

Text is encoded once into a flat array of token ids. For a run it is written to
``<run>/data/tokens.bin`` and memory-mapped (``numpy.memmap``), so a corpus larger than memory
trains without loading it: a batch reads only its ``batch_size`` windows. The first
``1 - val_fraction`` of the tokens train, the rest validate (a contiguous tail, as nanoGPT).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator

import numpy as np

from ..serialization import atomic_open, atomic_write
from .corpus import DataError, TextSource


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_to_array(tokenizer, text: str) -> np.ndarray:
    """``tokenizer.encode(text)`` as an int array (vectorised for the character tokenizer)."""
    dtype = token_dtype(tokenizer.vocab_size)
    if tokenizer.kind == "char":
        # code points via UTF-32, then a binary search in the sorted vocabulary
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab = np.frombuffer("".join(tokenizer.chars).encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(vocab, cps)
        ok = ids < len(vocab)
        ok[ok] = vocab[ids[ok]] == cps[ok]
        if not ok.all():
            tokenizer.encode(text)  # raises the error that names the unknown characters
        return ids.astype(dtype)
    return np.asarray(tokenizer.encode(text), dtype=dtype)


def _line_aligned(chunks: Iterable[str], size: int = 1 << 20) -> Iterator[str]:
    """Re-cut a stream of text at newlines (so no word is split between two encode calls)."""
    carry = ""
    for c in chunks:
        buf = carry + c
        cut = buf.rfind("\n", 0, len(buf))
        if cut < 0 or len(buf) < size:
            carry = buf
            continue
        yield buf[: cut + 1]
        carry = buf[cut + 1:]
    if carry:
        yield carry


class TokenData:
    """Train and validation token arrays with random-window batches.

    ``tokens`` may be an in-memory array or a ``numpy.memmap``; the split is by position.
    """

    def __init__(self, tokens: np.ndarray, val_fraction: float = 0.1):
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.tokens = tokens
        self.val_fraction = val_fraction
        n_train = int(round(len(tokens) * (1.0 - val_fraction)))
        self.splits = {"train": tokens[:n_train], "val": tokens[n_train:]}

    @classmethod
    def from_text(cls, text: str, tokenizer, val_fraction: float = 0.1) -> TokenData:
        return cls(encode_to_array(tokenizer, text), val_fraction)

    @classmethod
    def build(cls, source: TextSource, tokenizer, cache_dir: str,
              val_fraction: float = 0.1) -> TokenData:
        """Encode ``source`` into ``cache_dir/tokens.bin`` (reused when the text and tokenizer
        are unchanged) and memory-map it."""
        os.makedirs(cache_dir, exist_ok=True)
        bin_path = os.path.join(cache_dir, "tokens.bin")
        meta_path = os.path.join(cache_dir, "tokens.json")
        tok_hash = hashlib.sha256(
            json.dumps(tokenizer.to_dict(), sort_keys=True).encode()).hexdigest()
        dtype = token_dtype(tokenizer.vocab_size)
        meta = _read_json(meta_path)
        fingerprint = source.fingerprint()
        if not (meta and meta.get("fingerprint") == fingerprint
                and meta.get("tokenizer") == tok_hash and os.path.exists(bin_path)
                and os.path.getsize(bin_path) == meta.get("n_tokens", -1) * dtype.itemsize):
            n = 0
            with atomic_open(bin_path, "wb") as f:  # never through a link, never half there
                for piece in _line_aligned(source.chunks()):
                    ids = encode_to_array(tokenizer, piece)
                    f.write(ids.tobytes())
                    n += len(ids)
            meta = {"fingerprint": fingerprint, "tokenizer": tok_hash, "n_tokens": n,
                    "dtype": dtype.name, "source": source.name}
            atomic_write(meta_path, json.dumps(meta))
        n = meta["n_tokens"]
        if n == 0:
            raise DataError(f"data: {source.name!r} holds no text")
        tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,))
        return cls(tokens, val_fraction)

    def __len__(self) -> int:
        return len(self.tokens)

    def check_block_size(self, block_size: int, name: str = "data") -> None:
        """Raise DataError unless each split holds at least one window of ``block_size + 1``."""
        for split, arr in self.splits.items():
            if split == "val" and self.val_fraction == 0:
                continue
            if len(arr) < block_size + 1:
                raise DataError(
                    f"{name}: the text is too short for block_size {block_size}: {len(self)} "
                    f"tokens in all, {len(arr)} in the {split} split, which needs at least "
                    f"{block_size + 1} (one window and its next-token target). Use more text or "
                    "a smaller block_size"
                )

    def batch(self, split: str, batch_size: int, block_size: int, rng=None):
        """``(x, y)``, int64 arrays of shape (batch_size, block_size): random windows of the
        split and the same windows shifted by one token (the next-token targets).

        Offsets are drawn from ``rng`` (default: chainrule's global generator, so a seeded run
        sees the same batches)."""
        if rng is None:
            from ..random import _rng

            rng = _rng()
        data = self.splits[split]
        hi = len(data) - block_size
        if hi <= 0:
            self.check_block_size(block_size)
        ix = rng.integers(0, hi, size=batch_size)
        idx = ix[:, None] + np.arange(block_size + 1)  # (B, T+1)
        win = np.asarray(data[idx], dtype=np.int64)
        return win[:, :-1], win[:, 1:]


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
