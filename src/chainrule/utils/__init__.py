"""chainrule.utils: PyTorch's ``torch.utils`` names that training scripts use (``data``)."""

from . import data as data
