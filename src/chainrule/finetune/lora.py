"""LoRA: low-rank adapters beside frozen linear layers (Hu et al., 2021).

A frozen ``Linear`` with weight W (out, in) gains two small trainable matrices
A (r, in) and B (out, r):

    y = x W^T + b + (alpha / r) (x A^T) B^T

A starts uniform in +-1/sqrt(in) and B at zero, so the adapted model starts exactly equal to
the pre-trained one. Only A and B train (r (in + out) values instead of in * out), W gets no
gradient computed, and :func:`merge_lora` folds the update back, W' = W + (alpha / r) B A,
leaving an ordinary ``Linear`` with no extra cost at inference.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..nn import functional as F
from ..random import _rng
from .freeze import freeze


class LoRALinear(nn.Module):
    """``base(x) + scaling * lora_B(lora_A(x))`` with ``base`` frozen; see the module doc."""

    def __init__(self, base, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"LoRALinear: rank must be a positive int, got {rank!r}")
        out_f, in_f = base.weight.shape
        if rank > min(in_f, out_f):
            raise ValueError(f"LoRALinear: rank {rank} exceeds the layer's size ({out_f}, {in_f})")
        self.base = freeze(base)
        self.rank, self.alpha, self.dropout = rank, float(alpha), float(dropout)
        self.scaling = self.alpha / rank
        bound = 1.0 / math.sqrt(in_f)
        dtype = base.weight._data.dtype
        self.lora_A = nn.Parameter(_rng().uniform(-bound, bound, (rank, in_f)).astype(dtype))
        self.lora_B = nn.Parameter(np.zeros((out_f, rank), dtype=dtype))

    @property
    def weight(self):
        return self.base.weight

    def forward(self, x):
        h = F.dropout(x, self.dropout, self.training) if self.dropout else x
        return self.base(x) + F.linear(F.linear(h, self.lora_A), self.lora_B) * self.scaling

    def merged(self):
        """The base layer with ``scaling * B A`` added to its weight (in place)."""
        with no_grad():
            w = self.base.weight
            w._data = w._data + (self.scaling * (self.lora_B._data @ self.lora_A._data)).astype(
                w._data.dtype)
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, dropout={self.dropout}"


DEFAULT_TARGETS = ("q_proj", "v_proj")


def apply_lora(model, rank: int = 8, alpha: float = 16.0, targets=DEFAULT_TARGETS,
               dropout: float = 0.0) -> list[str]:
    """Freeze ``model`` and wrap every Linear whose attribute name is in ``targets`` (e.g.
    ``q_proj``, ``v_proj``, ``o_proj``, ``gate_proj``...) in a :class:`LoRALinear`.

    Returns the paths of the wrapped layers; raises ValueError when none matched.
    """
    targets = tuple(targets)
    freeze(model)
    found = []
    for path, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, alpha, dropout))
                found.append(f"{path}.{name}" if path else name)
    if not found:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, nn.Linear)})
        raise ValueError(f"apply_lora: no Linear layer named {list(targets)} in "
                         f"{type(model).__name__}; its Linear layers are named {names}")
    return found


def merge_lora(model) -> int:
    """Fold every adapter into its base weight and put the plain Linear back; returns how many.
    The merged weights stay frozen (call ``unfreeze`` to train them)."""
    n = 0
    for _path, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
                n += 1
    return n


def lora_state_dict(model) -> dict:
    """Only the adapter matrices (``...lora_A``/``...lora_B``), as arrays by name."""
    return {n: p._data for n, p in model.named_parameters() if ".lora_" in n}
