"""Read Llama-family GGUF files (llama.cpp's format) into float32 arrays in chainrule's layout.

The ``gguf`` package reads the file (memory-mapped) and dequantizes every tensor (Q4_0, Q4_1,
Q8_0, F16, ...) to float32. Weight matrices come out as ``(out, in)``, PyTorch's and
chainrule's ``Linear.weight`` layout.

Rotary layout. llama.cpp rotates *adjacent* pairs ``(x[2i], x[2i+1])`` of each head, while
chainrule's :class:`~chainrule.models.Llama` (like Hugging Face) rotates the two *halves*
``(x[i], x[i + d/2])`` (``rotate_half``). The converter from Hugging Face to GGUF therefore
permutes the rows of the Q and K projections within each head: GGUF row ``2i`` is HF row ``i``
and GGUF row ``2i+1`` is HF row ``i + d/2``. :func:`unpermute_qk` undoes it, so the loaded
weights are exactly the Hugging Face ones and the half-split rotary applies unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..models.llama import Llama, LlamaConfig
from .weights import load_weights

_EXTRA = "GGUF files need the 'gguf' package: pip install 'chainrule[gguf]'"


def _gguf():
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_EXTRA) from e
    return gguf


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo GGUF's per-head interleave of Q/K rows: ``(H, d/2, 2, in) -> (H, 2, d/2, in)``.

    ``w`` is ``(n_head * d, in)`` in GGUF order (rows ``2i, 2i+1`` of a head form one rotary
    pair); the result has the pair split across the head's halves (rows ``i, i + d/2``).
    """
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(
            f"unpermute_qk: {rows} rows do not split into {n_head} heads of even size"
        )
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`unpermute_qk` (Hugging Face order to GGUF order)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass
class GGUFModel:
    """What a GGUF file holds, converted: a config dict, float32 tensors and the metadata."""

    architecture: str
    config: dict
    tensors: dict = field(repr=False)
    metadata: dict = field(repr=False)


def read_metadata(reader) -> dict:
    """Every metadata field as a Python value (strings, numbers, lists)."""
    meta = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = f.contents()
        except Exception:  # a field type this gguf version cannot decode: keep going
            continue
    return meta


# GGUF tensor name (per block) -> chainrule Llama parameter name
_BLOCK_NAMES = {
    "attn_norm": "attn_norm",
    "attn_q": "attn.q_proj",
    "attn_k": "attn.k_proj",
    "attn_v": "attn.v_proj",
    "attn_output": "attn.o_proj",
    "ffn_norm": "mlp_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "embed", "output_norm": "norm", "output": "lm_head"}
# tensors some GGUF llamas carry that the model computes itself
_IGNORED: set = set()


def _chainrule_name(name: str) -> str | None:
    base, _, kind = name.rpartition(".")
    if base.startswith("blk."):
        _, i, part = base.split(".", 2)
        if part in _BLOCK_NAMES:
            return f"blocks.{i}.{_BLOCK_NAMES[part]}.{kind}"
        return None
    if base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{kind}"
    return None


def _llama_config(meta: dict, path) -> dict:
    arch = meta.get("general.architecture")

    def get(key, default=None):
        v = meta.get(f"{arch}.{key}", default)
        if v is None:
            raise ValueError(f"load_gguf({path}): metadata field '{arch}.{key}' is missing")
        return v

    n_embd = int(get("embedding_length"))
    n_head = int(get("attention.head_count"))
    vocab = meta.get(f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(meta.get("tokenizer.ggml.tokens", ()))
    return dict(
        vocab_size=int(vocab),
        n_layer=int(get("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=int(get("attention.head_count_kv", n_head)),
        n_hidden=int(get("feed_forward_length")),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        block_size=int(get("context_length", 2048)),
    )


SUPPORTED = ("llama",)


def load_gguf(path) -> GGUFModel:
    """Read a Llama-family GGUF file: config, float32 tensors (chainrule names), metadata.

    Q and K are un-permuted to the half-split rotary layout (see the module docstring). A file
    without ``output.weight`` ties the output head to the token embedding
    (``config['tie_embeddings']``).
    """
    gguf = _gguf()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_gguf: no such file: {path}")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:
        raise ValueError(f"load_gguf({path}): not a readable GGUF file ({e})") from e
    meta = read_metadata(reader)
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED:
        raise ValueError(
            f"load_gguf({path}): architecture '{arch}' is not supported; chainrule reads "
            f"{', '.join(SUPPORTED)} GGUF files"
        )
    config = _llama_config(meta, path)
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None) or any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise ValueError(f"load_gguf({path}): rotary scaling ({scaling}, or rope_freqs) is not "
                         "supported; chainrule's Llama uses plain rotary embeddings")
    tensors = {}
    for t in reader.tensors:
        if t.name in _IGNORED:
            continue
        name = _chainrule_name(t.name)
        if name is None:
            raise ValueError(
                f"load_gguf({path}): unexpected tensor '{t.name}' for architecture '{arch}'"
            )
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(shape)
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, config["n_head"])
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, config["n_kv_head"])
        tensors[name] = np.ascontiguousarray(w)
    config["tie_embeddings"] = "lm_head.weight" not in tensors
    return GGUFModel(arch, config, tensors, meta)


def load_llama_gguf(path, with_tokenizer: bool = False):
    """The :class:`~chainrule.models.Llama` of a Llama-family GGUF file, in float32, and with
    ``with_tokenizer`` its tokenizer too: ``model`` or ``(model, tokenizer)``.

    Every parameter must be in the file with its exact shape (the error names the file and
    every tensor that is missing, left over or mis-shaped); the model holds the dequantized
    arrays themselves, without a copy.
    """
    g = load_gguf(path)
    model = Llama(LlamaConfig(**g.config), init_weights=False)  # every weight is replaced
    load_weights(model, g.tensors, os.fspath(path))
    if with_tokenizer:
        return model, tokenizer_from_metadata(g.metadata, os.fspath(path))
    return model


def tokenizer_from_metadata(meta: dict, source: str = "GGUF"):
    """A byte-level BPE :class:`~chainrule.pretrained.tokenizer.PretrainedTokenizer` from the
    ``tokenizer.ggml.*`` fields (vocabulary, merges, special tokens, chat template)."""
    from .tokenizer import PretrainedTokenizer, byte_level_bpe

    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"{source}: tokenizer model '{model}' is not supported; chainrule builds byte-level "
            "BPE ('gpt2') tokenizers from GGUF metadata"
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = list(meta.get("tokenizer.ggml.merges", ()))
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    # token type 3 is llama.cpp's CONTROL: <|im_start|> and the like, matched whole in text
    special = [tok for tok, ty in zip(tokens, types) if ty == 3]
    pre = meta.get("tokenizer.ggml.pre", "default")
    tok = byte_level_bpe(tokens, merges, special, pre=pre)

    def tid(key):
        v = meta.get(key)
        return None if v is None else int(v)

    return PretrainedTokenizer(
        tok,
        bos_id=tid("tokenizer.ggml.bos_token_id"),
        eos_id=tid("tokenizer.ggml.eos_token_id"),
        chat_template=meta.get("tokenizer.chat_template"),
    )
