"""The fused embedding lookup."""

from __future__ import annotations

from ...autograd import Op
from ...tensor import Tensor


class EmbeddingOp(Op):
    """y = W[idx]   (W: (V, D), idx: integer array of any shape -> y: idx.shape + (D,)).

    dW = zeros(V, D) with row g_k added at idx_k for every position k (repeats accumulate);
    rows at padding_idx get no gradient. idx gets none.
    """

    def forward(self, w, idx, padding_idx=None):
        self.idx, self.wshape, self.padding_idx = idx, w.shape, padding_idx
        return self.xp.take(w, idx, axis=0)

    def backward(self, g):
        flat = self.idx.reshape(-1)
        g2 = g.reshape((-1, self.wshape[1]))
        if self.padding_idx is not None:
            g2 = g2 * (flat != self.padding_idx)[:, None].astype(g2.dtype)
        if isinstance(g2, Tensor):  # a recorded backward (create_graph): a differentiable add
            return self.xp.index_put_add(self.wshape, (flat,), g2), None
        return self.xp.embedding_backward(self.wshape, flat, g2), None
