"""Gradients as diagnostic data: gradient checking, statistics, the training doctor."""

from .gradcheck import GradcheckError as GradcheckError
from .gradcheck import gradcheck as gradcheck
from .gradcheck import gradgradcheck as gradgradcheck
