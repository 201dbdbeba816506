"""Checkpoints: ``chainrule.save(obj, path)`` and ``chainrule.load(path)``.

A checkpoint is one safetensors file. Its tensors are the arrays found anywhere in ``obj``
(named by their path in it: ``model/fc1.weight``, ``optimizer/state/0/exp_avg``); everything
else (numbers, strings, lists, the nesting itself) is JSON kept in the file's metadata, with
the arrays' places marked. Nothing is ever pickled, so loading a file can only produce data,
never run code, and the file opens in any safetensors reader.

The JSON tree is plain JSON except for one-key objects that stand for what JSON lacks::

    {"__tensor__": name}   a chainrule Tensor        {"__ndarray__": name}  a NumPy array
    {"__scalar__": name}   a NumPy scalar            {"__tuple__": [...]}   a tuple
    {"__dict__": [[k, v], ...]}  a dict with non-string keys (or keys that look like these tags)
    {"__float__": "nan" | "inf" | "-inf"}           {"__dtype__": "float32"}

Every array's dtype, shape and CRC-32 and the JSON's own CRC-32 are stored too, so a
truncated or corrupted file is reported as such instead of loading wrong numbers. Writing goes
to a temporary file in the same folder, is flushed to disk (fsync) and then renamed over
``path``: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zlib

import numpy as np

from . import backend
from .tensor import Tensor

FORMAT = "chainrule-checkpoint"
VERSION = 1
_MAX_HEADER = 100_000_000  # the safetensors format's own limit on its JSON header
_TAGS = ("__tensor__", "__ndarray__", "__scalar__", "__tuple__", "__dict__", "__float__",
         "__dtype__")


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "chainrule.save/chainrule.load need the 'safetensors' package: "
            "pip install 'chainrule[train]'"
        ) from e
    return safetensors.numpy


# -- save -------------------------------------------------------------------------------------
def save(obj, path) -> None:
    """Write ``obj`` (nested dicts, lists and tuples of tensors, arrays, numbers, strings,
    booleans and None: state dicts, step counters, RNG states) to ``path`` atomically."""
    st = _safetensors_numpy()
    arrays: dict = {}
    tree = _encode(obj, arrays, "")
    checks = {name: [a.dtype.str, list(a.shape), zlib.crc32(_bytes_of(a))]
              for name, a in arrays.items()}
    text = json.dumps({"format": FORMAT, "version": VERSION, "arrays": checks, "tree": tree},
                      allow_nan=False, separators=(",", ":"))
    metadata = {"format": "np", FORMAT: text, f"{FORMAT}-crc32": str(zlib.crc32(text.encode()))}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"chainrule.save: {path}: the folder {folder} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb"):  # created with the user's umask; the writer below narrows it
            pass
        mode = os.stat(tmp).st_mode & 0o777
        st.save_file(arrays, tmp, metadata=metadata)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders that cannot be opened (some platforms)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _bytes_of(a):
    return memoryview(a).cast("B") if a.size else b""


def _store(arrays: dict, path: str, a) -> str:
    a = backend.to_numpy(a)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    name = path or "tensor"
    if name in arrays:
        i = 2
        while f"{name}#{i}" in arrays:
            i += 1
        name = f"{name}#{i}"
    arrays[name] = a
    return name


def _encode(x, arrays: dict, path: str):
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, Tensor):
        return {"__tensor__": _store(arrays, path, x.data)}
    if isinstance(x, np.ndarray) or (backend._cupy is not None
                                     and isinstance(x, backend._cupy.ndarray)):
        return {"__ndarray__": _store(arrays, path, x)}
    if isinstance(x, np.generic):
        return {"__scalar__": _store(arrays, path, np.asarray(x))}
    if isinstance(x, np.dtype):
        return {"__dtype__": x.str}
    if isinstance(x, (list, tuple)):
        items = [_encode(v, arrays, f"{path}/{i}" if path else str(i)) for i, v in enumerate(x)]
        return {"__tuple__": items} if isinstance(x, tuple) else items
    if isinstance(x, dict):
        def sub(k):
            return f"{path}/{k}" if path else str(k)

        if all(type(k) is str and k not in _TAGS for k in x):
            return {k: _encode(v, arrays, sub(k)) for k, v in x.items()}
        for k in x:
            if not (k is None or isinstance(k, (str, int, float, tuple))):
                raise TypeError(
                    f"chainrule.save: a dict at '{path or '<root>'}' has a key of type "
                    f"{type(k).__name__}; keys must be str, int, float, bool, None or tuples"
                )
        return {"__dict__": [[_encode(k, arrays, sub(k)), _encode(v, arrays, sub(k))]
                             for k, v in x.items()]}
    raise TypeError(
        f"chainrule.save: cannot store a {type(x).__name__} at '{path or '<root>'}'; checkpoints "
        "hold tensors, arrays, numbers, strings, booleans, None, and lists, tuples and dicts of "
        "them (functions and other objects are code, not state)"
    )


# -- load -------------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A file that is not a readable chainrule checkpoint (truncated, corrupted, foreign)."""


def load(path):
    """Read a checkpoint written by :func:`save`; returns the same nesting with Tensors and
    arrays in place. Raises :class:`CheckpointError` (a ValueError) naming the file when it is
    truncated, corrupted or not a chainrule checkpoint; never unpickles anything."""
    path = os.fspath(path)

    def fail(why):
        return CheckpointError(f"chainrule.load: {path}: {why}")

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise fail(f"the file is {size} bytes, too short for a checkpoint (truncated?)")
        foreign = _foreign_format(head)
        if foreign:
            raise fail(f"this is {foreign}, not a chainrule checkpoint; chainrule.load reads only "
                       "safetensors files written by chainrule.save, and never unpickles (that "
                       "could run arbitrary code)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise fail(f"the header claims {n} bytes but the file has {size - 8} after the "
                       "length field: truncated, or not a safetensors file")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"the safetensors header is not valid JSON ({e}): corrupted") from None
    if not isinstance(header, dict):
        raise fail("the safetensors header is not a JSON object: corrupted")
    meta = header.get("__metadata__") or {}
    text = meta.get(FORMAT)
    if text is None:
        raise fail("a safetensors file without chainrule's metadata: it was not written by "
                   "chainrule.save (read raw tensors with safetensors.numpy.load_file)")
    if str(zlib.crc32(text.encode())) != meta.get(f"{FORMAT}-crc32"):
        raise fail("the checkpoint's metadata fails its checksum: corrupted")
    try:
        return _read_body(path, size, n, header, json.loads(text), fail)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise fail(f"the checkpoint's structure cannot be read ({e!r}): corrupted") from None


def _read_body(path, size, n, header, doc, fail):
    """Check the data section against the header and the metadata, then rebuild the object."""
    if doc.get("format") != FORMAT:
        raise fail(f"unknown checkpoint format {doc.get('format')!r}")
    if doc.get("version", 0) > VERSION:
        raise fail(f"written by a newer chainrule (checkpoint version {doc.get('version')}, this "
                   f"one reads up to {VERSION})")
    end = 0
    for name, info in header.items():
        if name != "__metadata__":
            try:
                end = max(end, int(info["data_offsets"][1]))
            except (KeyError, TypeError, IndexError, ValueError):
                raise fail(f"tensor '{name}' has no valid data_offsets: corrupted") from None
    expected = 8 + n + end
    if size < expected:
        raise fail(f"the file is {size} bytes but its header describes {expected}: truncated")
    if size > expected:
        raise fail(f"{size - expected} unexpected bytes after the data: corrupted")
    checks = doc["arrays"]
    if set(checks) != set(header) - {"__metadata__"}:
        raise fail("the tensors in the file differ from those its metadata lists: corrupted")
    arrays = _read_arrays(path, fail)
    for name, (dtype, shape, crc) in checks.items():
        a = arrays[name]
        if a.dtype.str != dtype or list(a.shape) != shape:
            raise fail(f"tensor '{name}' is {a.dtype}{list(a.shape)} but was saved as "
                       f"{dtype}{shape}: corrupted")
        if zlib.crc32(_bytes_of(a if a.flags.c_contiguous else a.copy(order="C"))) != crc:
            raise fail(f"tensor '{name}' fails its checksum: corrupted")
    return _decode(doc["tree"], arrays)


def _foreign_format(head: bytes) -> str | None:
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle file"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (PyTorch's torch.save format, which holds a pickle)"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    if head[:4] == b"GGUF":
        return "a GGUF file (see chainrule's pretrained loaders)"
    return None


def _read_arrays(path, fail) -> dict:
    _safetensors_numpy()
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # the reader's own errors (bad dtype, overlapping offsets, ...)
        raise fail(f"safetensors could not read the tensors ({e}): corrupted") from None


def _decode(x, arrays: dict):
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict):
        return x
    if len(x) == 1:
        ((tag, v),) = x.items()
        if tag == "__tensor__":
            return Tensor._wrap(arrays[v])
        if tag == "__ndarray__":
            return arrays[v]
        if tag == "__scalar__":
            return arrays[v][()]
        if tag == "__tuple__":
            return tuple(_decode(i, arrays) for i in v)
        if tag == "__dict__":
            return {_hashable(_decode(k, arrays)): _decode(val, arrays) for k, val in v}
        if tag == "__float__":
            return float(v)
        if tag == "__dtype__":
            return np.dtype(v)
    return {k: _decode(v, arrays) for k, v in x.items()}


def _hashable(k):
    if isinstance(k, (list, dict)) or isinstance(k, (Tensor, np.ndarray)):
        raise ValueError(f"a dict key decodes to an unhashable {type(k).__name__}")
    return k
