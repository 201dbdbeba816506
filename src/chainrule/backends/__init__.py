"""``torch.backends``'s switches, so scripts that set them run unchanged.

chainrule does not use cuDNN, TF32 or MPS: ``cudnn.benchmark``, ``cudnn.deterministic``,
``cudnn.enabled``, ``cudnn.allow_tf32``, ``cuda.matmul.allow_tf32`` and
``cuda.matmul.allow_fp16_reduced_precision_reduction`` are plain settable flags that change no
computation (NumPy's and CuPy's float32 matmuls are always full float32), and
``cudnn.is_available()``, ``mps.is_available()`` and ``mps.is_built()`` are False.
"""

from __future__ import annotations

from . import cuda as cuda
from . import cudnn as cudnn
from . import mps as mps

__all__ = ["cuda", "cudnn", "mps"]
