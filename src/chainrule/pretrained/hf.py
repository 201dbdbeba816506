"""Hugging Face checkpoint folders (``config.json`` + ``model.safetensors``) as chainrule models.

Two layouts are mapped:

- ``model_type: llama`` (also SmolLM, TinyLlama...) onto :class:`chainrule.models.Llama`; the
  Hugging Face Q/K layout is already the half-split rotary one, so weights copy unchanged.
- ``model_type: gpt2`` onto :class:`chainrule.models.GPT` (same module names); GPT-2's
  ``Conv1D`` layers store their weight as ``(in, out)``, so each is transposed to ``Linear``'s
  ``(out, in)``. chainrule's GPT uses the exact (erf) GELU where GPT-2 was trained with the
  tanh approximation: the two differ by under 1e-3 per activation, so logits differ slightly
  from the original implementation's.

Sharded checkpoints (``model.safetensors.index.json``) are read too. A tokenizer saved beside
the weights (``tokenizer.json``) is loaded with the model.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..models.gpt import GPT, GPTConfig
from ..models.llama import Llama, LlamaConfig
from .weights import check_fits, load_weights

_MAX_JSON = 64 << 20  # a config or an index of a few KB; the cap keeps a hostile one bounded


def _read_json(path: str, who: str):
    """A JSON file of a checkpoint folder, bounded in size; ValueError naming it otherwise."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > _MAX_JSON:
                raise ValueError(f"{who}: {path} is larger than {_MAX_JSON >> 20} MiB")
            return json.loads(f.read())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{who}: {path} is not valid JSON ({type(e).__name__}: {e})") from None


def _get(cfg: dict, key: str, kind, folder, default=None):
    v = cfg.get(key, default)
    if v is None:
        raise ValueError(f"load_hf({folder}): config.json lacks '{key}'")
    if kind is bool:
        return bool(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"load_hf({folder}): config.json '{key}' is {v!r}, not a number")
    if kind is int:
        if v != int(v) or not 0 < v < 2**40:
            raise ValueError(f"load_hf({folder}): config.json '{key}' is {v!r}; expected a "
                             "positive integer")
        return int(v)
    if not (v == v and abs(v) != float("inf")) or v <= 0:
        raise ValueError(f"load_hf({folder}): config.json '{key}' is {v!r}; expected a "
                         "positive number")
    return float(v)

_EXTRA = "Hugging Face checkpoints need the 'safetensors' package: pip install 'chainrule[train]'"


def read_safetensors(folder) -> dict:
    """Every tensor of ``model.safetensors`` (or the shards an index names) as NumPy arrays."""
    try:
        from safetensors.numpy import load_file
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_EXTRA) from e
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        doc = _read_json(index, "load_hf")
        wmap = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
            raise ValueError(f"load_hf: {index} has no valid 'weight_map'")
        shards = sorted(set(wmap.values()))
        for s in shards:  # shards are files of the folder itself
            if s != os.path.basename(s) or s in ("", ".", ".."):
                raise ValueError(f"load_hf: {index} names a shard outside the folder: {s!r}")
        files = [os.path.join(folder, s) for s in shards]
    else:
        raise FileNotFoundError(
            f"load_hf({folder}): no model.safetensors (or model.safetensors.index.json) there"
        )
    out = {}
    for path in files:
        try:
            out.update(load_file(path))
        except Exception as e:
            raise ValueError(f"load_hf: cannot read {path} ({e}); bfloat16 checkpoints must be "
                             "converted to float32 or float16 first") from e
    return out


def read_config(folder) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_hf({folder}): no config.json there")
    cfg = _read_json(path, f"load_hf({folder})")
    if not isinstance(cfg, dict):
        raise ValueError(f"load_hf({folder}): config.json is not a JSON object")
    return cfg


# -- Llama ---------------------------------------------------------------------------------
_LLAMA_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn.q_proj",
    "self_attn.k_proj": "attn.k_proj",
    "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.o_proj",
    "post_attention_layernorm": "mlp_norm",
    "mlp.gate_proj": "mlp.gate_proj",
    "mlp.up_proj": "mlp.up_proj",
    "mlp.down_proj": "mlp.down_proj",
}


def llama_config(cfg: dict, folder="") -> dict:
    if cfg.get("rope_scaling"):
        raise ValueError(f"load_hf({folder}): rope_scaling {cfg['rope_scaling']} is not supported")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ValueError(f"load_hf({folder}): Llama with biases is not supported")
    n_head = _get(cfg, "num_attention_heads", int, folder)
    return dict(
        vocab_size=_get(cfg, "vocab_size", int, folder),
        n_layer=_get(cfg, "num_hidden_layers", int, folder),
        n_embd=_get(cfg, "hidden_size", int, folder),
        n_head=n_head,
        n_kv_head=_get(cfg, "num_key_value_heads", int, folder, n_head),
        n_hidden=_get(cfg, "intermediate_size", int, folder),
        rope_theta=_get(cfg, "rope_theta", float, folder, 10000.0),
        norm_eps=_get(cfg, "rms_norm_eps", float, folder, 1e-6),
        block_size=_get(cfg, "max_position_embeddings", int, folder, 2048),
        tie_embeddings=_get(cfg, "tie_word_embeddings", bool, folder, False),
    )


def llama_tensors(raw: dict, tied: bool) -> dict:
    """Hugging Face Llama names -> chainrule Llama names (the arrays are not copied)."""
    out = {}
    for name, w in raw.items():
        key = name.removeprefix("model.")
        if key == "embed_tokens.weight":
            out["embed.weight"] = w
        elif key == "norm.weight":
            out["norm.weight"] = w
        elif key == "lm_head.weight":
            if not tied:  # a tied checkpoint may still carry the (identical) head
                out["lm_head.weight"] = w
        elif key.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope_theta
        elif m := re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", key):
            part = _LLAMA_BLOCK.get(m.group(2))
            out[f"blocks.{m.group(1)}.{part or m.group(2)}.{m.group(3)}"] = w
        else:
            out[name] = w  # reported as unexpected when loaded
    return out


# -- GPT-2 ---------------------------------------------------------------------------------
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_config(cfg: dict, folder="") -> dict:
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu", "gelu_pytorch_tanh"):
        raise ValueError(f"load_hf({folder}): GPT-2 activation '{act}' is not supported")
    return dict(vocab_size=_get(cfg, "vocab_size", int, folder),
                block_size=_get(cfg, "n_positions", int, folder, 1024),
                n_layer=_get(cfg, "n_layer", int, folder), n_head=_get(cfg, "n_head", int, folder),
                n_embd=_get(cfg, "n_embd", int, folder), dropout=0.0, bias=True)


def gpt2_tensors(raw: dict) -> dict:
    """Hugging Face GPT-2 names -> chainrule GPT names (the same module names, without the
    ``transformer.`` prefix), with the Conv1D weights (in, out) transposed to (out, in)."""
    out = {}
    for name, w in raw.items():
        key = name.removeprefix("transformer.")
        if re.fullmatch(r"h\.\d+\.attn\.(masked_)?bias", key) or key == "lm_head.weight":
            continue  # causal-mask buffers of older checkpoints; the head is tied to wte
        if key.startswith("h.") and key.endswith(_CONV1D):
            w = np.ascontiguousarray(w.T)
        out[key] = w
    return out


def load_hf(folder):
    """``(architecture, config dict, tensors in chainrule names)`` of a checkpoint folder."""
    folder = os.fspath(folder)
    cfg = read_config(folder)
    arch = cfg.get("model_type")
    if arch == "llama":
        c = llama_config(cfg, folder)
        return arch, c, llama_tensors(read_safetensors(folder), c["tie_embeddings"])
    if arch == "gpt2":
        return arch, gpt2_config(cfg, folder), gpt2_tensors(read_safetensors(folder))
    raise ValueError(
        f"load_hf({folder}): model_type '{arch}' is not supported; chainrule maps 'llama' and "
        "'gpt2' checkpoints"
    )


def load_hf_model(folder, with_tokenizer: bool = True):
    """The chainrule model of a Hugging Face folder, and its tokenizer (None if absent)."""
    arch, cfg, tensors = load_hf(folder)
    config = LlamaConfig(**cfg) if arch == "llama" else GPTConfig(**cfg)
    check_fits(config, tensors, str(folder))  # before the model is built
    if arch == "llama":
        model = Llama(config, init_weights=False)  # every weight is replaced
    else:
        model = GPT(config)
    load_weights(model, tensors, str(folder))
    if not with_tokenizer:
        return model
    tok = None
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        from .tokenizer import PretrainedTokenizer

        tok = PretrainedTokenizer.from_folder(folder)
    return model, tok
