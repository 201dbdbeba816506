"""Convolution and pooling ops on (N, C, H, W) arrays (conv1d runs as conv2d with H = 1;
the 3-d functions of :mod:`.conv3d` run on the 2-d ops).

Convolution is im2col plus GEMMs: the kh*kw shifted, strided views of the padded input are
copied into columns or patch rows, which the weight multiplies (:mod:`.conv2d`, one function
per strategy). Pooling walks the same kh*kw views elementwise (:mod:`.pool`). Both take their
sizes from one :class:`ConvGeometry` (:mod:`.geometry`), computed once per call.
"""

from __future__ import annotations

from .conv2d import Conv2dOp as Conv2dOp
from .conv3d import avg_pool3d as avg_pool3d
from .conv3d import conv3d as conv3d
from .conv3d import conv_transpose3d as conv_transpose3d
from .conv3d import max_pool3d as max_pool3d
from .geometry import ConvGeometry as ConvGeometry
from .geometry import out_size as out_size
from .pool import AvgPool2dOp as AvgPool2dOp
from .pool import MaxPool2dOp as MaxPool2dOp
from .pool import avg_divisor as avg_divisor
