"""chainrule: a backpropagation engine and neural-network training toolkit on NumPy.

Record a computation on tensors, call ``loss.backward()``, and every leaf that requires grad
holds its exact gradient. Names and semantics follow PyTorch, so code ports by changing the
import.
"""

from . import accelerator as accelerator
from . import amp as amp
from . import autograd as autograd
from . import backends as backends
from . import cuda as cuda
from . import linalg as linalg
from . import nn as nn
from . import onnx as onnx
from . import ops as ops
from . import optim as optim
from . import utils as utils
from .amp import autocast as autocast
from .autograd import enable_grad as enable_grad
from .autograd import grad as grad
from .autograd import inference_mode as inference_mode
from .autograd import is_grad_enabled as is_grad_enabled
from .autograd import is_inference_mode_enabled as is_inference_mode_enabled
from .autograd import no_grad as no_grad
from .autograd import set_grad_enabled as set_grad_enabled
from .backend import cuda_is_available as cuda_is_available
from .backend import get_num_threads as get_num_threads
from .backend import set_num_threads as set_num_threads
from .creation import *  # noqa: F403  (tensor, zeros, ones, ... : see creation.__all__)
from .creation import BoolTensor as BoolTensor
from .creation import ByteTensor as ByteTensor
from .creation import CharTensor as CharTensor
from .creation import DoubleTensor as DoubleTensor
from .creation import FloatTensor as FloatTensor
from .creation import HalfTensor as HalfTensor
from .creation import IntTensor as IntTensor
from .creation import LongTensor as LongTensor
from .creation import ShortTensor as ShortTensor
from .creation import __all__ as _creation_all
from .dtypes import bfloat16 as bfloat16
from .dtypes import bool_ as bool  # noqa: F401  (chainrule.bool, as torch.bool)
from .dtypes import complex64 as complex64
from .dtypes import complex128 as complex128
from .dtypes import float16 as float16
from .dtypes import float32 as float32
from .dtypes import float64 as float64
from .dtypes import int8 as int8
from .dtypes import int16 as int16
from .dtypes import int32 as int32
from .dtypes import int64 as int64
from .dtypes import uint8 as uint8
from .ops import *  # noqa: F403  (the functional op library)
from .ops import __all__ as _ops_all
from .random import Generator as Generator
from .random import get_rng_state as get_rng_state
from .random import initial_seed as initial_seed
from .random import manual_seed as manual_seed
from .random import seed as seed
from .random import set_rng_state as set_rng_state
from .serialization import load as load
from .serialization import save as save
from .tensor import Device as device  # noqa: F401  (chainrule.device, as torch.device)
from .tensor import Size as Size
from .tensor import Tensor as Tensor

half, double, long, short, cfloat, cdouble = float16, float64, int64, int16, complex64, complex128
float_ = float32
float = float32  # noqa: A001  (chainrule.float, as torch.float)
int = int32  # noqa: A001  (chainrule.int, as torch.int)

# memory formats: every chainrule tensor is C-contiguous, so these are accepted and mean that
contiguous_format = "contiguous_format"
preserve_format = "preserve_format"
channels_last = "channels_last"

__version__ = "0.1.0"
__all__ = ["Tensor", "autograd", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "manual_seed", *_creation_all, *_ops_all]


def is_tensor(obj) -> bool:
    """True when ``obj`` is a chainrule Tensor."""
    return isinstance(obj, Tensor)


def compile(model=None, **kwargs):  # noqa: A001  (chainrule.compile, as torch.compile)
    """``torch.compile``'s name: chainrule has no compiler and runs ops eagerly, so this
    returns ``model`` (a module or function) unchanged; as a decorator too."""
    if model is None:
        return lambda fn: fn
    return model


def get_default_dtype():
    """float32: the dtype of tensors made from Python floats."""
    return float32


def set_default_dtype(dtype) -> None:
    """Only float32 is supported as the default floating dtype (pass ``dtype=`` to creation
    functions, or ``.double()``, for float64 tensors)."""
    if dtype != float32:
        raise NotImplementedError(f"set_default_dtype: chainrule's default floating dtype is "
                                  f"float32 only, got {dtype!r}; pass dtype= to the creation "
                                  "functions or convert with .double()")


_matmul_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """Accepted ('highest', 'high', 'medium'); float32 matmuls are always full float32 here."""
    global _matmul_precision
    if precision not in ("highest", "high", "medium"):
        raise ValueError(f"set_float32_matmul_precision: expected 'highest', 'high' or "
                         f"'medium', got {precision!r}")
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _matmul_precision


_deterministic = False


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Accepted: chainrule's ops are deterministic already (NumPy on one thread of control)."""
    global _deterministic
    _deterministic = bool(mode)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


# PyTorch names chainrule does not have, and what to use instead.
_PYTORCH_INSTEAD = {
    "jit": "TorchScript is not supported: run the model as it is (chainrule.compile returns "
           "it unchanged)",
    "fx": "graph capture is not supported: run the model as it is",
    "export": "graph export is not supported: save weights with chainrule.save(model."
              "state_dict(), path)",
    "sparse": "sparse tensors are not supported: use dense tensors",
    "quantization": "quantization is not supported",
    "ao": "quantization and pruning (torch.ao) are not supported",
    "hub": "torch.hub is not supported: chainrule.pretrained reads GGUF and Hugging Face files",
    "distributions": "import chainrule.distributions (a subpackage that import chainrule "
                     "does not load)",
    "set_num_threads": "NumPy's thread count is set by the OMP_NUM_THREADS environment "
                       "variable before the process starts",
    "get_num_threads": "NumPy's thread count is set by the OMP_NUM_THREADS environment "
                       "variable before the process starts",
    "bfloat16": "NumPy has no bfloat16; use float32",
    "float8_e4m3fn": "NumPy has no float8; use float32 or float16",
    "mps": "chainrule has no Apple-GPU device (chainrule.backends.mps.is_available() is False)",
}


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module 'chainrule' has no attribute {name!r}")
    hint = _PYTORCH_INSTEAD.get(name)
    msg = (f"module 'chainrule' has no attribute {name!r}: if you are porting PyTorch code, "
           f"torch.{name} is not supported by chainrule (yet)")
    raise AttributeError(msg + (f"; {hint}" if hint else ""))
