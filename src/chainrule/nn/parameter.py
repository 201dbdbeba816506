"""Parameter: a leaf tensor that a Module registers as trainable state."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that requires grad by default and that a :class:`Module` lists in
    ``parameters()`` when assigned as one of its attributes.

    ``Parameter(t)`` shares ``t``'s array (no copy), as in PyTorch.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            arr = np.empty((0,), dtype=np.float32)
            vc = None
        elif isinstance(data, Tensor):
            if data._vc is None:
                data._vc = [0]
            arr, vc = data._data, data._vc  # shared: an in-place change through either is seen
        elif backend.is_device_array(data):
            arr, vc = data, None  # a device array stays where it is (wrapped, not copied)
        else:
            arr = np.asarray(data)
            if arr.dtype == np.float64 and not isinstance(data, np.ndarray):
                arr = arr.astype(np.float32)  # Python floats default to float32, as tensor()
            vc = None
        self._data = arr
        self.grad = None
        self.grad_fn = None
        self._vc = vc
        self._hooks = self._post_hooks = None
        self.name = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # copy.deepcopy / pickle of a Module: rebuild from a copy of the array
        return (Parameter, (self._data, self.requires_grad))

    def __deepcopy__(self, memo):
        p = Parameter(self._data.copy(), self.requires_grad)
        if self.grad is not None:
            p.grad = Tensor._wrap(self.grad._data.copy())
        memo[id(self)] = p
        return p
