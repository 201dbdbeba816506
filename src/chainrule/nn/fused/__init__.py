"""Fused ops of the neural-network layers: one forward pass and a hand-derived gradient each,
one file per family (linear, embedding, dropout, normalization, losses, attention).

Each op's docstring gives its math. The passes that NumPy does slowly are kernels of the array
namespace (``self.xp.layer_norm_forward``, ``self.xp.attention_softmax``, ...: see
:mod:`chainrule.backend.numpy_kernels`), which choose the compiled code where it applies; the
ops never do. Ops whose backward reads intermediates define ``composite(...)``: the same
function written with chainrule's primitive ops, which the engine differentiates for
``create_graph=True`` and which the tests hold equal to the fused op.
"""

from __future__ import annotations

from .attention import AttentionOp as AttentionOp
from .attention import additive_mask as additive_mask
from .attention import causal_upper as causal_upper
from .batchnorm import BatchNormOp as BatchNormOp
from .dropout import DropoutOp as DropoutOp
from .embedding import EmbeddingOp as EmbeddingOp
from .linear import LinearOp as LinearOp
from .loss import CrossEntropyOp as CrossEntropyOp
from .loss import SoftCrossEntropyOp as SoftCrossEntropyOp
from .norm import LayerNormOp as LayerNormOp
from .norm import RMSNormOp as RMSNormOp
from .rnn import GRUCellOp as GRUCellOp
from .rnn import LSTMCellOp as LSTMCellOp


def apply_present(op, *inputs, **params):
    """``op.apply`` without the trailing optional inputs that are None (no bias, no mask), so
    the op's inputs are exactly the tensors it saves and differentiates."""
    n = len(inputs)
    while n and inputs[n - 1] is None:
        n -= 1
    return op.apply(*inputs[:n], **params)
