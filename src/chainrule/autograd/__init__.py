"""The engine: grad modes, the op base class, the reverse-mode backward pass, custom functions,
gradient checking and anomaly mode.

Every differentiable op is an :class:`Op` subclass with ``forward`` (raw arrays in, one array
out) and ``backward`` (the vector-Jacobian product: the gradient ``g`` of the op's output in,
one gradient per input out). Calling ``Op.apply`` runs the forward and, when some input needs a
gradient and grad mode is on, records the op instance as the output's ``grad_fn``.

The graph holds no reference cycles: an op points at its parents (the ``grad_fn`` of each input,
or the input tensor itself when it is a leaf) and never at its own output, so every tensor and
saved array is freed by reference counting alone.

Higher-order gradients: a ``backward`` rule is written against ``self.xp`` and ``self.saved``.
On the first-order path these are the array namespace and raw arrays; with
``create_graph=True`` the engine hands the rule the Tensor namespace and Tensors instead, so the
very same rule is recorded as a differentiable computation.

Files: ``grad_mode`` (no_grad and friends), ``op`` (Op, ``apply``, forward observers), ``graph``
(the one graph walk), ``engine`` (backward, grad), ``function`` (custom Functions),
``gradcheck`` and ``anomaly`` (NaN/Inf provenance).
"""

from __future__ import annotations

# Tensor and Op refer to each other. Op is bound on this package first, because loading
# tensor.py loads the ops, and they import Op from here; once the rest is loaded, op.py is
# given Tensor and its one internal constructor (the import order below is deliberate).
# ruff: noqa: I001
from .op import Op as Op
from . import op as _op
from ..tensor import Tensor as _Tensor
from .anomaly import NonFiniteError as NonFiniteError
from .anomaly import detect_anomaly as detect_anomaly
from .anomaly import is_anomaly_enabled as is_anomaly_enabled
from .anomaly import set_detect_anomaly as set_detect_anomaly
from .engine import backward as backward
from .engine import grad as grad
from .engine import unbroadcast as unbroadcast
from .function import Function as Function
from .function import FunctionCtx as FunctionCtx
from .grad_mode import _state as _state  # noqa: F401  (read by Tensor's in-place checks)
from .grad_mode import enable_grad as enable_grad
from .grad_mode import inference_mode as inference_mode
from .grad_mode import is_inference_mode_enabled as is_inference_mode_enabled
from .grad_mode import is_grad_enabled as is_grad_enabled
from .grad_mode import no_grad as no_grad
from .grad_mode import set_grad_enabled as set_grad_enabled
from .gradcheck import GradcheckError as GradcheckError
from .gradcheck import gradcheck as gradcheck
from .gradcheck import gradgradcheck as gradgradcheck
from .graph import count_consumers as count_consumers
from .graph import topological_order as topological_order
from .op import RemovableHandle as RemovableHandle
from .op import forward_observers as forward_observers
from .op import register_forward_observer as register_forward_observer

_op.Tensor, _op._wrap = _Tensor, _Tensor._wrap
