"""Gradients as diagnostic data: gradient checking, statistics, the training doctor, NaN/Inf
provenance and pictures of the graph. See docs/diagnostics.md."""

from ..autograd.anomaly import NonFiniteError as NonFiniteError
from ..autograd.anomaly import detect_anomaly as detect_anomaly
from ..autograd.anomaly import is_anomaly_enabled as is_anomaly_enabled
from ..autograd.anomaly import set_detect_anomaly as set_detect_anomaly
from ..autograd.gradcheck import GradcheckError as GradcheckError
from ..autograd.gradcheck import gradcheck as gradcheck
from ..autograd.gradcheck import gradgradcheck as gradgradcheck
from .doctor import Finding as Finding
from .doctor import diagnose as diagnose
from .graph import draw_graph as draw_graph
from .graph import explain_backward as explain_backward
from .graph import render as render
from .stats import activation_stats as activation_stats
from .stats import grad_stats as grad_stats
from .stats import update_ratio as update_ratio
from .watcher import Watcher as Watcher
from .watcher import diagnose_run as diagnose_run
from .watcher import load_run as load_run
from .watcher import watch as watch
