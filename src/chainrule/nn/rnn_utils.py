"""``nn.utils.rnn``: pad_sequence (a batch from sequences of different lengths); packed
sequences are not supported, and their functions say so."""

from __future__ import annotations

from .. import ops as P
from ..tensor import Tensor

__all__ = ["pad_sequence", "pack_padded_sequence", "pack_sequence", "pad_packed_sequence",
           "PackedSequence"]

_PACKED = ("packed sequences are not supported: pad the batch with pad_sequence, pass the "
           "padded Tensor to the RNN, and mask or index the outputs by the lengths")


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors (L_i, *) into (L_max, B, *) (or (B, L_max, *)), padded with
    ``padding_value`` on the right (or the left)."""
    seqs = list(sequences)
    if not seqs or not all(isinstance(s, Tensor) for s in seqs):
        raise TypeError("pad_sequence: expected a non-empty sequence of Tensors")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got "
                         f"{padding_side!r}")
    trail = tuple(seqs[0].shape[1:])
    for s in seqs:
        if s.ndim == 0 or tuple(s.shape[1:]) != trail:
            raise ValueError(f"pad_sequence: sequences of shapes {[tuple(t.shape) for t in seqs]}"
                             " received, expected (L_i, *) with the same trailing dims")
    n = max(s.shape[0] for s in seqs)
    rows = []
    for s in seqs:
        extra = n - s.shape[0]
        widths = [0, 0] * len(trail) + ([0, extra] if padding_side == "right" else [extra, 0])
        rows.append(P.pad(s, tuple(widths), value=float(padding_value)) if extra else s)
    return P.stack(rows, 0 if batch_first else 1)


class PackedSequence:
    """Not supported (see :func:`pack_padded_sequence`)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"PackedSequence: {_PACKED}")


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    raise NotImplementedError(f"pack_padded_sequence: {_PACKED}")


def pack_sequence(sequences, enforce_sorted=True):
    raise NotImplementedError(f"pack_sequence: {_PACKED}")


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    raise NotImplementedError(f"pad_packed_sequence: {_PACKED}")
