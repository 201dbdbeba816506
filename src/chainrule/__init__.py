"""chainrule: a backpropagation engine and neural-network training toolkit on NumPy.

Record a computation on tensors, call ``loss.backward()``, and every leaf that requires grad
holds its exact gradient. Names and semantics follow PyTorch, so code ports by changing the
import.
"""

from . import autograd as autograd
from . import nn as nn
from . import ops as ops
from . import optim as optim
from . import utils as utils
from .autograd import enable_grad as enable_grad
from .autograd import grad as grad
from .autograd import is_grad_enabled as is_grad_enabled
from .autograd import no_grad as no_grad
from .autograd import set_grad_enabled as set_grad_enabled
from .backend import cuda_is_available as cuda_is_available
from .creation import *  # noqa: F403  (tensor, zeros, ones, ... : see creation.__all__)
from .creation import __all__ as _creation_all
from .dtypes import bool_ as bool  # noqa: F401  (chainrule.bool, as torch.bool)
from .dtypes import float16 as float16
from .dtypes import float32 as float32
from .dtypes import float64 as float64
from .dtypes import int32 as int32
from .dtypes import int64 as int64
from .dtypes import uint8 as uint8
from .ops import *  # noqa: F403  (the functional op library)
from .ops import __all__ as _ops_all
from .random import Generator as Generator
from .random import get_rng_state as get_rng_state
from .random import manual_seed as manual_seed
from .random import seed as seed
from .random import set_rng_state as set_rng_state
from .serialization import load as load
from .serialization import save as save
from .tensor import Size as Size
from .tensor import Tensor as Tensor

half, double, long = float16, float64, int64
float_ = float32

__version__ = "0.1.0"
__all__ = ["Tensor", "autograd", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "manual_seed", *_creation_all, *_ops_all]
