"""The functional op library: every differentiable op as a free function (``chainrule.exp``,
``chainrule.cat``...), with PyTorch's names and arguments. Tensor methods are these functions.

Each family is one module, holding its Op classes and, next to them, the public functions that
apply them; a function that is also a Tensor method says so with ``@tensor_method``
(:mod:`chainrule.ops._methods`):

==============  ===========================================================================
arithmetic      add sub mul div neg pow square reciprocal floor_divide remainder
math            exp expm1 log log1p log2 log10 sqrt rsqrt abs sin cos tanh
activation      sigmoid relu leaky_relu gelu silu softplus (rows of the elementwise table)
selection       maximum minimum clamp clamp_min clamp_max where
nograd          comparisons, logical ops, sign floor ceil round trunc, isnan..., argmax
                argmin argsort any all allclose equal
reduce          sum mean var std max min amax amin logsumexp prod cumsum norm softmax
                log_softmax
linalg          matmul mm bmm dot outer einsum
shape           reshape view flatten unflatten permute transpose t movedim expand squeeze
                unsqueeze broadcast_to expand_as
layout          pad tril triu flip roll repeat
index           getitem gather take_along_dim scatter_add index_select masked_fill
join            cat stack split chunk unbind
compose         tile narrow select lerp sort topk repeat_interleave (written with the others)
device          to_device cast clone clone_detach
misc            atan2 hypot nonzero meshgrid unique searchsorted bucketize nan_to_num
                masked_select var_mean std_mean median mode scatter scatter_reduce cdist
                diff ravel isclose
==============  ===========================================================================

This module only re-exports them; ``__all__`` is the families' ``__all__`` together.
"""

from __future__ import annotations

from . import (
    activation,
    arithmetic,
    compose,
    device,
    index,
    join,
    layout,
    linalg,
    misc,
    nograd,
    reduce,
    selection,
    shape,
)
from . import math as _math
from ._args import DimError as DimError
from .activation import *  # noqa: F403
from .arithmetic import *  # noqa: F403
from .compose import *  # noqa: F403
from .device import *  # noqa: F403
from .index import *  # noqa: F403
from .join import *  # noqa: F403
from .layout import *  # noqa: F403
from .linalg import *  # noqa: F403
from .math import *  # noqa: F403
from .misc import *  # noqa: F403
from .nograd import *  # noqa: F403
from .reduce import *  # noqa: F403
from .selection import *  # noqa: F403
from .shape import *  # noqa: F403

FAMILIES = (arithmetic, _math, activation, selection, nograd, reduce, linalg, shape, layout,
            index, join, compose, device, misc)
"""The op modules, in the order of the table above."""

__all__ = [name for family in FAMILIES for name in family.__all__]
