"""Ready-made models: ``MLP`` and ``CNN`` (small classifiers), ``GPT`` (a decoder-only
transformer) and ``Llama`` (the Llama family's architecture, for pre-trained weights)."""

from .cnn import CNN as CNN
from .gpt import GPT as GPT
from .gpt import GPTConfig as GPTConfig
from .llama import Llama as Llama
from .llama import LlamaConfig as LlamaConfig
from .mlp import MLP as MLP

__all__ = ["MLP", "CNN", "GPT", "GPTConfig", "Llama", "LlamaConfig"]
