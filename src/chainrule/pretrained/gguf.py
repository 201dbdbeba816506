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

import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from ..models.llama import Llama, LlamaConfig
from .weights import check_fits, load_weights

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


# -- a bounded walk of the file's layout, before any reader allocates ------------------------
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_STRING = 1 << 26  # no key, token or template is near 64 MiB


def check_layout(path, buf, size: int) -> None:
    """Walk a GGUF file's header (key/value pairs and tensor descriptions) within its length:
    every count, string length, array length, dimension, tensor type and data range is checked
    against the bytes that are really there, so a few hostile bytes cannot make a reader
    allocate more than the file holds. ``buf``: the file's bytes (a memory map)."""
    def fail(why):
        return ValueError(f"load_gguf({path}): not a readable GGUF file ({why}: truncated or "
                          "corrupted)")

    pos = 0

    def take(n):
        nonlocal pos
        if n < 0 or pos + n > size:
            raise fail(f"{n} bytes needed at offset {pos}, past the end of the file ({size} bytes)")
        out = buf[pos:pos + n]
        pos += n
        return out

    def u32():
        return struct.unpack("<I", take(4))[0]

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def string():
        n = u64()
        if n > min(_MAX_STRING, size - pos):
            raise fail(f"a string of {n} bytes at offset {pos - 8}")
        return bytes(take(n))

    def value(vtype, depth=0):
        if vtype in _SCALAR:
            return take(_SCALAR[vtype])
        if vtype == _STRING:
            return string()
        if vtype == _ARRAY and depth == 0:
            etype, count = u32(), u64()
            least = _SCALAR.get(etype, 8) if etype != _ARRAY else 12
            if etype not in _SCALAR and etype not in (_STRING, _ARRAY):
                raise fail(f"an array of unknown type {etype}")
            if count * least > size - pos:
                raise fail(f"an array of {count} elements at offset {pos - 12}")
            if etype in _SCALAR:
                return take(count * _SCALAR[etype])
            for _ in range(count):
                value(etype, depth + 1)
            return None
        raise fail(f"unknown value type {vtype} at offset {pos - 4}")

    if size < 24 or bytes(take(4)) != b"GGUF":
        raise fail("no GGUF magic")
    version = u32()
    if version not in (2, 3):
        raise fail(f"GGUF version {version} (chainrule reads versions 2 and 3, little-endian)")
    n_tensors, n_kv = u64(), u64()
    if n_kv * 13 > size - pos or n_tensors * 25 > size - pos:  # the smallest entry of each
        raise fail(f"{n_kv} key/value pairs and {n_tensors} tensors claimed in {size} bytes")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        vtype = u32()
        v = value(vtype)
        if key == b"general.alignment" and vtype == 4:
            alignment = struct.unpack("<I", v)[0]
            if alignment == 0 or alignment & (alignment - 1):
                raise fail(f"general.alignment {alignment} is not a power of two")
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    spans = []
    for _ in range(n_tensors):
        name = string()
        n_dims = u32()
        if not 1 <= n_dims <= _MAX_DIMS:
            raise fail(f"tensor {name!r} has {n_dims} dimensions (1 to {_MAX_DIMS})")
        dims = [u64() for _ in range(n_dims)]
        ttype, offset = u32(), u64()
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise fail(f"tensor {name!r} has unknown type {ttype}") from None
        count = math.prod(dims)
        if dims[0] % block or count > size * max(block, 1):
            raise fail(f"tensor {name!r} has impossible dimensions {dims}")
        spans.append((name, offset, count // block * type_size))
    start = pos + (-pos) % alignment
    for name, offset, nbytes in spans:
        if offset % alignment or start + offset + nbytes > size:
            raise fail(f"tensor {name!r}: {nbytes} bytes at data offset {offset} lie outside "
                       f"the file ({size} bytes, data from {start})")


def _read_checked(gguf, path):
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"load_gguf({path}): the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            check_layout(path, buf, size)
    return gguf.GGUFReader(path)


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

    def get(key, default=None, kind=int):
        v = meta.get(f"{arch}.{key}", default)
        if v is None:
            raise ValueError(f"load_gguf({path}): metadata field '{arch}.{key}' is missing")
        try:
            v = kind(v)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"load_gguf({path}): metadata field '{arch}.{key}' is {v!r}, not "
                             f"a {kind.__name__}") from None
        if kind is int and not 0 < v < 2**40:
            raise ValueError(f"load_gguf({path}): metadata field '{arch}.{key}' is {v}; "
                             "expected a positive integer")
        if kind is float and not (math.isfinite(v) and v > 0):
            raise ValueError(f"load_gguf({path}): metadata field '{arch}.{key}' is {v}; "
                             "expected a positive number")
        return v

    n_embd = get("embedding_length")
    n_head = get("attention.head_count")
    vocab = meta.get(f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(meta.get("tokenizer.ggml.tokens", ()))
    if not isinstance(vocab, int) or vocab <= 0:
        raise ValueError(f"load_gguf({path}): the vocabulary size is {vocab!r}; expected a "
                         "positive integer")
    return dict(
        vocab_size=int(vocab),
        n_layer=get("block_count"),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=get("attention.head_count_kv", n_head),
        n_hidden=get("feed_forward_length"),
        rope_theta=get("rope.freq_base", 10000.0, float),
        norm_eps=get("attention.layer_norm_rms_epsilon", 1e-5, float),
        block_size=get("context_length", 2048),
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
        reader = _read_checked(gguf, path)
    except ValueError as e:
        if str(e).startswith(f"load_gguf({path})"):
            raise
        raise ValueError(f"load_gguf({path}): not a readable GGUF file ({e})") from None
    except Exception as e:
        raise ValueError(f"load_gguf({path}): not a readable GGUF file ({e})") from None
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
        try:
            w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            w = w.reshape(shape)
        except Exception as e:  # noqa: BLE001 - the reader's errors on a malformed tensor
            raise ValueError(f"load_gguf({path}): tensor '{t.name}' cannot be read "
                             f"({type(e).__name__}: {e})") from None
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
    config = LlamaConfig(**g.config)
    check_fits(config, g.tensors, os.fspath(path))
    model = Llama(config, init_weights=False)  # every weight is replaced
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
