"""The ops of the elementwise table (:mod:`chainrule.backend.elementwise`): one op class per
row, made here from the row, each running its namespace's ``pointwise_forward`` and
``pointwise_backward`` (the compiled one-pass kernels on the CPU, the row's expression
elsewhere and, under create_graph, as differentiable Tensor ops).

Each class is named as the op it is (``Relu``, ``Sigmoid``, ``Gelu``...): graphs, profiles
and the training doctor read that name.
"""

from __future__ import annotations

from ..autograd import Op
from ..backend.elementwise import ROWS, TABLE
from ..tensor import Tensor
from ._args import _float


class Pointwise(Op):
    """Base of the table's ops: ``forward(x, params=())`` and its gradient, from the row named
    by the class attribute ``kind``."""

    kind = ""
    keeps_output = False

    kept = None

    def forward(self, x, params=()):
        y, kept = self.xp.pointwise_forward(self.kind, x, params)
        self.params = params
        if kept is not None:
            self.kept = kept  # the row's kept value: an array outside the graph
        self.save(y if self.keeps_output else x)
        return y

    def backward(self, g):
        return (self.xp.pointwise_backward(self.kind, self.saved[0], g, self.params,
                                           self.kept),)


def _make(row):
    doc = f"y = {row.forward};  dx = {row.gradient} (from {row.reads}; the elementwise table)."
    return type(row.op, (Pointwise,), {"kind": row.name, "keeps_output": row.reads == "y",
                                       "__doc__": doc, "__module__": __name__})


OPS = {row.name: _make(row) for row in TABLE}
"""Row name -> its op class."""


def pointwise(name, x, *params, op_name=None):
    """Row ``name`` of the table applied to the tensor ``x`` with the row's parameters in
    order (integer and bool tensors become float32, as PyTorch's floating ops do)."""
    if not (type(x) is Tensor and x._data.dtype.kind == "f"):
        x = _float(x, op_name or name)
    if len(params) != len(ROWS[name].params):
        raise TypeError(f"{op_name or name}: expected parameters {ROWS[name].params}, "
                        f"got {len(params)} values")
    if params:
        return OPS[name].apply(x, params=tuple(float(p) for p in params))
    return OPS[name].apply(x)
