"""Tokenizers of pre-trained models, built with the ``tokenizers`` library.

A :class:`PretrainedTokenizer` wraps a ``tokenizers.Tokenizer`` with the ids a language model
needs (beginning and end of sequence) and its chat template. It saves to and loads from a
folder in the Hugging Face layout (``tokenizer.json`` and ``tokenizer_config.json``), so a
fine-tuned run folder and a downloaded checkpoint folder read the same way.
"""

from __future__ import annotations

import json
import os
import re

_EXTRA = "pre-trained tokenizers need the 'tokenizers' package: pip install 'chainrule[bpe]'"


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_EXTRA) from e
    return tokenizers


# Llama 3's split (llama.cpp's "llama-bpe"): digits in groups of up to three
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# pre-tokenizers (llama.cpp's names) that put every digit in its own piece, then split as GPT-2
_DIGITS_FIRST = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone")


def byte_level_bpe(tokens, merges, special=(), pre="default"):
    """A byte-level BPE ``tokenizers.Tokenizer`` from a vocabulary list and merge rules.

    ``merges`` are ``"left right"`` strings (GGUF and Hugging Face store them so); byte-level
    symbols never contain a plain space, so the split is unambiguous. ``pre`` names the
    pre-tokenizer as GGUF's ``tokenizer.ggml.pre`` does: SmolLM's and StarCoder's split every
    digit first, Llama 3's (``llama-bpe``) has its own pattern, anything else splits as GPT-2.
    """
    tk = _tokenizers()
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=pairs))
    P = tk.pre_tokenizers
    if pre == "llama-bpe":
        steps = [P.Split(tk.Regex(_LLAMA3_SPLIT), behavior="isolated"),
                 P.ByteLevel(add_prefix_space=False, use_regex=False)]
    else:
        steps = [P.Digits(individual_digits=True)] if pre in _DIGITS_FIRST else []
        steps.append(P.ByteLevel(add_prefix_space=False, use_regex=True))
    tok.pre_tokenizer = P.Sequence(steps)
    tok.decoder = tk.decoders.ByteLevel()
    if special:
        tok.add_special_tokens([tk.AddedToken(s, special=True, normalized=False) for s in special])
    return tok


_CHATML_SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.S)


class PretrainedTokenizer:
    """Text <-> token ids for a pre-trained model (``encode``, ``decode``, ``chat_prompt``)."""

    kind = "pretrained"

    def __init__(self, tokenizer, bos_id=None, eos_id=None, chat_template=None):
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str):
        return self.tokenizer.token_to_id(token)

    # -- chat ----------------------------------------------------------------------------
    def chat_prompt(self, messages, add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to ``messages`` (a str is one user message).

        Renders the template with jinja2 when it is installed; otherwise a ChatML template
        (``<|im_start|>role\\ncontent<|im_end|>``, SmolLM's and Qwen's) is written directly,
        with the default system message taken from the template text.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        template = self.chat_template
        if not template:
            raise ValueError("chat_prompt: this tokenizer has no chat template")
        try:
            import jinja2.sandbox
        except ImportError:
            return self._chatml(messages, add_generation_prompt)
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._tok(self.bos_id), eos_token=self._tok(self.eos_id),
        )

    def _tok(self, i):
        return "" if i is None else self.tokenizer.id_to_token(i)

    def _chatml(self, messages, add_generation_prompt):
        if "<|im_start|>" not in self.chat_template:
            raise ValueError(
                "chat_prompt: the chat template is not ChatML; install jinja2 to render it"
            )
        out = []
        default = _CHATML_SYSTEM.search(self.chat_template)
        if messages and messages[0]["role"] != "system" and default:
            out.append(f"<|im_start|>system\n{default.group(1)}<|im_end|>\n")
        for m in messages:
            out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
        if add_generation_prompt:
            out.append("<|im_start|>assistant\n")
        return "".join(out)

    # -- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything needed to rebuild the tokenizer (see :meth:`from_dict`), as JSON data."""
        return {"type": "pretrained", "tokenizer": json.loads(self.tokenizer.to_str()),
                "bos_id": self.bos_id, "eos_id": self.eos_id, "chat_template": self.chat_template}

    @classmethod
    def from_dict(cls, d: dict) -> PretrainedTokenizer:
        tk = _tokenizers()
        return cls(tk.Tokenizer.from_str(json.dumps(d["tokenizer"])), d.get("bos_id"),
                   d.get("eos_id"), d.get("chat_template"))

    def save(self, folder) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``."""
        from ..serialization import atomic_write  # each file replaced whole, never via a link

        os.makedirs(folder, exist_ok=True)
        atomic_write(os.path.join(folder, "tokenizer.json"), self.tokenizer.to_str(pretty=True))
        cfg = {"bos_token": self._tok(self.bos_id) or None,
               "eos_token": self._tok(self.eos_id) or None,
               "chat_template": self.chat_template}
        atomic_write(os.path.join(folder, "tokenizer_config.json"), json.dumps(cfg, indent=1))

    @classmethod
    def from_folder(cls, folder) -> PretrainedTokenizer:
        """Read a Hugging Face style tokenizer folder (``tokenizer.json`` [+ config])."""
        tk = _tokenizers()
        path = os.path.join(folder, "tokenizer.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"PretrainedTokenizer.from_folder: no tokenizer.json in {folder}")
        tok = _bounded(path, lambda text: tk.Tokenizer.from_str(text))
        cfg = {}
        cpath = os.path.join(folder, "tokenizer_config.json")
        if os.path.isfile(cpath):
            cfg = _bounded(cpath, json.loads)
            if not isinstance(cfg, dict):
                raise ValueError(f"{cpath}: not a JSON object")

        def tid(key):
            v = cfg.get(key)
            if isinstance(v, dict):  # Hugging Face writes AddedToken objects sometimes
                v = v.get("content")
            return None if v is None else tok.token_to_id(v)

        return cls(tok, tid("bos_token"), tid("eos_token"), cfg.get("chat_template"))


_MAX_TOKENIZER_FILE = 256 << 20  # the largest tokenizer.json files are tens of MB


def _bounded(path: str, parse):
    """``parse`` of a tokenizer file's text, its size capped; ValueError naming the file."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > _MAX_TOKENIZER_FILE:
            raise ValueError(f"{path}: larger than {_MAX_TOKENIZER_FILE >> 20} MiB; not a "
                             "tokenizer file")
        raw = f.read()
    try:
        return parse(raw.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - the tokenizers library's errors are its own types
        raise ValueError(f"{path}: not a readable tokenizer file ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None

