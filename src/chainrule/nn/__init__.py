"""chainrule.nn: modules, layers, functional ops (``nn.functional``), initialization and
gradient utilities, with PyTorch's names."""

from . import functional as functional
from . import init as init
from . import parallel as parallel
from . import utils as utils
from .activation import CELU as CELU
from .activation import ELU as ELU
from .activation import GLU as GLU
from .activation import SELU as SELU
from .activation import Hardshrink as Hardshrink
from .activation import Hardsigmoid as Hardsigmoid
from .activation import Hardswish as Hardswish
from .activation import Hardtanh as Hardtanh
from .activation import LogSigmoid as LogSigmoid
from .activation import Mish as Mish
from .activation import PReLU as PReLU
from .activation import ReLU6 as ReLU6
from .activation import Softshrink as Softshrink
from .activation import Softsign as Softsign
from .activation import Tanhshrink as Tanhshrink
from .activation import Threshold as Threshold
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
from .loss import BCELoss as BCELoss
from .loss import BCEWithLogitsLoss as BCEWithLogitsLoss
from .loss import CrossEntropyLoss as CrossEntropyLoss
from .loss import CTCLoss as CTCLoss
from .loss import HuberLoss as HuberLoss
from .loss import KLDivLoss as KLDivLoss
from .loss import L1Loss as L1Loss
from .loss import MSELoss as MSELoss
from .loss import NLLLoss as NLLLoss
from .loss import SmoothL1Loss as SmoothL1Loss
from .module import Module as Module
from .module import StateDictError as StateDictError
from .norm import BatchNorm1d as BatchNorm1d
from .norm import BatchNorm2d as BatchNorm2d
from .norm import BatchNorm3d as BatchNorm3d
from .norm import GroupNorm as GroupNorm
from .norm import InstanceNorm1d as InstanceNorm1d
from .norm import InstanceNorm2d as InstanceNorm2d
from .norm import InstanceNorm3d as InstanceNorm3d
from .norm import LocalResponseNorm as LocalResponseNorm
from .parallel import DataParallel as DataParallel
from .parameter import Parameter as Parameter
from .resample import AdaptiveAvgPool1d as AdaptiveAvgPool1d
from .resample import AdaptiveMaxPool1d as AdaptiveMaxPool1d
from .resample import AdaptiveMaxPool2d as AdaptiveMaxPool2d
from .resample import AvgPool1d as AvgPool1d
from .resample import AvgPool3d as AvgPool3d
from .resample import Conv3d as Conv3d
from .resample import ConvTranspose1d as ConvTranspose1d
from .resample import ConvTranspose2d as ConvTranspose2d
from .resample import ConvTranspose3d as ConvTranspose3d
from .resample import Dropout1d as Dropout1d
from .resample import Dropout2d as Dropout2d
from .resample import Dropout3d as Dropout3d
from .resample import Fold as Fold
from .resample import MaxPool1d as MaxPool1d
from .resample import MaxPool3d as MaxPool3d
from .resample import PixelShuffle as PixelShuffle
from .resample import PixelUnshuffle as PixelUnshuffle
from .resample import Unfold as Unfold
from .resample import Upsample as Upsample
from .resample import UpsamplingBilinear2d as UpsamplingBilinear2d
from .resample import UpsamplingNearest2d as UpsamplingNearest2d
from .rnn import GRU as GRU
from .rnn import LSTM as LSTM
from .rnn import RNN as RNN
from .rnn import GRUCell as GRUCell
from .rnn import LSTMCell as LSTMCell
from .rnn import RNNBase as RNNBase
from .rnn import RNNCell as RNNCell
from .rnn import RNNCellBase as RNNCellBase
from .transformer import Transformer as Transformer
from .transformer import TransformerDecoder as TransformerDecoder
from .transformer import TransformerDecoderLayer as TransformerDecoderLayer
from .transformer import TransformerEncoder as TransformerEncoder
from .transformer import TransformerEncoderLayer as TransformerEncoderLayer

_PYTORCH_INSTEAD = {
    "DistributedDataParallel": "use chainrule.distributed.DistributedDataParallel",
    "SyncBatchNorm": "use nn.BatchNorm2d on one process",
}


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module 'chainrule.nn' has no attribute {name!r}")
    hint = _PYTORCH_INSTEAD.get(name)
    msg = (f"module 'chainrule.nn' has no attribute {name!r}: if you are porting PyTorch code, "
           f"torch.nn.{name} is not supported by chainrule (yet)")
    raise AttributeError(msg + (f"; {hint}" if hint else ""))
