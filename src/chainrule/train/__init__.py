"""Training language models: the configuration, the loop, run folders and reports."""

from .config import ConfigError as ConfigError
from .config import TrainConfig as TrainConfig
from .config import make_config as make_config
from .config import parse_overrides as parse_overrides
from .loop import StopTraining as StopTraining
from .loop import Trainer as Trainer
from .loop import TrainResult as TrainResult
from .loop import get_lr as get_lr
from .loop import load_run as load_run
from .loop import train as train
from .run import RunDir as RunDir
from .run import RunError as RunError
from .run import read_metrics as read_metrics
