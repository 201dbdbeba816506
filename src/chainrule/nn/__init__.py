"""chainrule.nn: modules, layers, functional ops (``nn.functional``), initialization and
gradient utilities, with PyTorch's names."""

from . import functional as functional
from . import init as init
from . import utils as utils
from .attention import MultiheadAttention as MultiheadAttention
from .containers import ModuleDict as ModuleDict
from .containers import ModuleList as ModuleList
from .containers import ParameterDict as ParameterDict
from .containers import ParameterList as ParameterList
from .containers import Sequential as Sequential
from .layers import GELU as GELU
from .layers import AdaptiveAvgPool2d as AdaptiveAvgPool2d
from .layers import AvgPool2d as AvgPool2d
from .layers import Conv1d as Conv1d
from .layers import Conv2d as Conv2d
from .layers import Dropout as Dropout
from .layers import Embedding as Embedding
from .layers import Flatten as Flatten
from .layers import Identity as Identity
from .layers import LayerNorm as LayerNorm
from .layers import LeakyReLU as LeakyReLU
from .layers import Linear as Linear
from .layers import LogSoftmax as LogSoftmax
from .layers import MaxPool2d as MaxPool2d
from .layers import ReLU as ReLU
from .layers import RMSNorm as RMSNorm
from .layers import Sigmoid as Sigmoid
from .layers import SiLU as SiLU
from .layers import Softmax as Softmax
from .layers import Softplus as Softplus
from .layers import Tanh as Tanh
from .layers import Unflatten as Unflatten
from .module import Module as Module
from .module import StateDictError as StateDictError
from .parameter import Parameter as Parameter
