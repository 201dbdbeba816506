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
to a temporary file created exclusively in the same folder (never through a link), is flushed
to disk (fsync) and then renamed over ``path``: a crash mid-write leaves the previous
checkpoint intact. Reading opens the file once and checks every size, count and offset
against the file's length before allocating anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import struct
import zlib

import numpy as np

from . import backend
from .tensor import Tensor

FORMAT = "chainrule-checkpoint"
VERSION = 1
# The safetensors format's own limit on its JSON header. A header that large (millions of
# entries) parses in about the time and memory safetensors' own reader takes for it (about
# 10x its size in memory); anything larger is refused from the length field alone.
_MAX_HEADER = 100_000_000
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


# -- writing files safely ---------------------------------------------------------------------
# Every file chainrule writes (checkpoints, and through these helpers every file of a run) is
# written to a fresh temporary file created exclusively in the target's folder (never through
# a link: O_CREAT | O_EXCL | O_NOFOLLOW), flushed to disk and renamed over the target, which
# replaces a link planted there instead of writing through it.
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMP_SUFFIX = ".tmp"


def temporary_name(path: str) -> str:
    """A fresh, unguessable temporary name beside ``path``: ``.<name>.<12 hex>.tmp``."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")


def is_temporary_name(name: str) -> bool:
    """Whether a file name is one :func:`temporary_name` makes (for cleaning up after a kill)."""
    if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
        return False
    stem = name[1:-len(_TMP_SUFFIX)]
    head, _, tail = stem.rpartition(".")
    return bool(head) and len(tail) == 12 and all(c in "0123456789abcdef" for c in tail)


def _create_exclusive(path: str, mode: int = 0o666) -> tuple[str, int]:
    for _ in range(16):
        tmp = temporary_name(path)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW
                                | _O_CLOEXEC, mode)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    raise FileExistsError(f"{path}: cannot create a temporary file beside it")


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders that cannot be opened (some platforms)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _check_folder(path: str, who: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{who}: {path}: the folder {folder} does not exist")
    return folder


def _replace(tmp: str, fd: int, path: str) -> None:
    """fsync ``fd``, check ``tmp`` is still the file behind it, rename it over ``path``."""
    os.fsync(fd)
    st, now = os.fstat(fd), os.lstat(tmp)
    if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
        raise OSError(f"{tmp}: the temporary file was replaced while it was written")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8"):
    """``with atomic_open(path, "w" | "wb") as f: ...`` writes ``path`` atomically: into a
    temporary file created exclusively beside it (never through a link), fsynced and renamed
    over ``path`` when the block ends without an error; on an error (a full disk, a kill) the
    temporary file is removed and ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = _check_folder(path, "atomic_open")
    tmp, fd = _create_exclusive(path)
    try:
        with os.fdopen(os.dup(fd), mode, **({} if mode == "wb" else {"encoding": encoding})) as f:
            yield f
            f.flush()
        _replace(tmp, fd, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        os.close(fd)
    _fsync_folder(folder)


def atomic_write(path, data) -> None:
    """Replace ``path`` by ``data`` (str: UTF-8 text, or bytes) atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def open_append(path, encoding: str = "utf-8"):
    """A text file opened for appending, never through a link (O_NOFOLLOW), created if it does
    not exist; refused unless it is a regular file with a single name (not a link to, or a
    second name of, a file elsewhere)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC,
                     0o666)
    except OSError as e:
        if os.path.islink(path):
            raise OSError(e.errno, f"{path} is a symbolic link; refusing to write through "
                                   "it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{path} is not a plain file of its own (a device, or a hard link to "
                      "another file); refusing to append to it")
    return os.fdopen(fd, "a", encoding=encoding)


def _is_writer_temporary(name: str) -> bool:
    """The name the safetensors writer gives its own temporary file (``.tmp`` and six
    letters or digits, Rust's ``tempfile`` naming), left behind when it is killed mid-write."""
    return len(name) == 10 and name.startswith(".tmp") and name[4:].isascii() \
        and name[4:].isalnum()


def remove_temporaries(folder) -> list[str]:
    """Remove the temporary files :func:`atomic_open` and :func:`save` (and the safetensors
    writer inside it) leave behind when a process is killed mid-write; returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if is_temporary_name(name) or _is_writer_temporary(name) or name.endswith(
                ".tmp.png") or name in (
                "tokens.bin.tmp", "metrics.jsonl.tmp", "report.html.tmp"):
            p = os.path.join(folder, name)
            if os.path.islink(p) or os.path.isfile(p):
                _unlink_quietly(p)
                removed.append(name)
    return removed


def _as_os_error(e: Exception, path: str) -> Exception:
    import re

    m = re.search(r"os error (\d+)", str(e))
    if m is None:
        return e
    code = int(m.group(1))
    return OSError(code, os.strerror(code), path)


def _unlink_quietly(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


# -- save -------------------------------------------------------------------------------------
def save(obj, f, pickle_module=None, pickle_protocol=None, **kwargs) -> None:
    """Write ``obj`` (nested dicts, lists and tuples of tensors, arrays, numbers, strings,
    booleans and None: state dicts, step counters, RNG states) to ``f``: a path (written
    atomically) or a file object open for binary writing (``io.BytesIO``, ``open(p, 'wb')``).
    ``pickle_module`` and ``pickle_protocol`` are accepted, as PyTorch's, and unused (nothing
    is pickled)."""
    path = f
    st = _safetensors_numpy()
    arrays: dict = {}
    tree = _encode(obj, arrays, "")
    checks = {name: [a.dtype.str, list(a.shape), zlib.crc32(_bytes_of(a))]
              for name, a in arrays.items()}
    text = json.dumps({"format": FORMAT, "version": VERSION, "arrays": checks, "tree": tree},
                      allow_nan=False, separators=(",", ":"))
    metadata = {"format": "np", FORMAT: text, f"{FORMAT}-crc32": str(zlib.crc32(text.encode()))}
    if hasattr(path, "write") and not isinstance(path, (str, bytes, os.PathLike)):
        path.write(st.save(arrays, metadata=metadata))  # a file object: one write
        return
    path = os.fspath(path)
    folder = _check_folder(path, "chainrule.save")
    tmp, fd = _create_exclusive(path)  # created with the user's umask, never through a link
    try:
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        fd = -1
        try:
            st.save_file(arrays, tmp, metadata=metadata)  # the fresh, unguessable name just made
        except (OSError, KeyboardInterrupt):
            raise
        except Exception as e:  # safetensors reports a failed write (a full disk) as its own
            raise _as_os_error(e, path) from None
        fd = os.open(tmp, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{tmp}: the temporary file was replaced while it was written")
        os.fchmod(fd, mode)
        _replace(tmp, fd, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_folder(folder)


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
        return {"__tensor__": _store(arrays, path, x._data)}
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


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None,
         **kwargs):
    """Read a checkpoint written by :func:`save` from ``f``, a path or a binary file object;
    returns the same nesting with Tensors and
    arrays in place. Raises :class:`CheckpointError` (a ValueError) naming the file when it is
    truncated, corrupted or not a chainrule checkpoint; never unpickles anything.

    The file is opened once and read within its length: the header's size is capped (as
    safetensors caps it), every tensor's offsets, dtype and shape are checked against the
    header and the file's size before any array is made, and the bytes read are those of
    that one open file even if the path is replaced meanwhile.

    As PyTorch's: ``weights_only`` is accepted (chainrule never unpickles, so every load is
    weights-only), and ``map_location`` ('cpu', 'cuda', a device, a ``{'cuda:0': 'cpu'}``
    dict or a function ``(tensor, location) -> tensor``) moves every tensor read."""
    out = _load(f)
    return out if map_location is None else _map_location(out, map_location)


def _map_location(obj, loc):
    if isinstance(obj, Tensor):
        if callable(loc) and not isinstance(loc, str):
            r = loc(obj, "cpu")
            return obj if r is None else r
        if isinstance(loc, dict):
            loc = loc.get("cpu", loc.get(str(obj.device), None))
            if loc is None:
                return obj
        return obj.to(backend.normalize_device(loc))
    if isinstance(obj, dict):
        return {k: _map_location(v, loc) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_location(v, loc) for v in obj)
    return obj


def _load(path):
    if hasattr(path, "read") and not isinstance(path, (str, bytes, os.PathLike)):
        fobj = path
        name = getattr(fobj, "name", type(fobj).__name__)

        def fail(why):
            return CheckpointError(f"chainrule.load: {name}: {why}")

        start = fobj.tell()
        fobj.seek(0, os.SEEK_END)
        size = fobj.tell() - start
        fobj.seek(start)
        try:
            return _load_open(fobj, size, fail)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError,
                OverflowError, UnicodeError) as e:
            raise fail(f"the checkpoint's structure cannot be read ({type(e).__name__}: "
                       f"{e}): corrupted") from None
    path = os.fspath(path)

    def fail(why):
        return CheckpointError(f"chainrule.load: {path}: {why}")

    with open(path, "rb") as f:
        st_ = os.fstat(f.fileno())
        if not stat.S_ISREG(st_.st_mode):
            raise fail("not a regular file")
        try:
            return _load_open(f, st_.st_size, fail)
        except CheckpointError:
            raise
        except MemoryError:
            raise fail("the checkpoint does not fit in memory") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError,
                OverflowError, UnicodeError) as e:
            raise fail(f"the checkpoint's structure cannot be read ({type(e).__name__}: "
                       f"{e}): corrupted") from None


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "|i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "|u1",
              "BOOL": "|b1"}


def _load_open(f, size, fail):
    head = f.read(8)
    if len(head) < 8:
        raise fail(f"the file is {size} bytes, too short for a checkpoint (truncated?)")
    foreign = _foreign_format(head)
    if foreign:
        raise fail(f"this is {foreign}, not a chainrule checkpoint; chainrule.load reads only "
                   "safetensors files written by chainrule.save, and never unpickles (that "
                   "could run arbitrary code)")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        raise fail(f"the header claims {n} bytes but the file has {size - 8} after the "
                   "length field: truncated, or not a safetensors file")
    if n > _MAX_HEADER:
        raise fail(f"the header claims {n} bytes, more than the {_MAX_HEADER} a safetensors "
                   "header may have: corrupted, or not a safetensors file")
    raw = f.read(n)
    if len(raw) != n:
        raise fail("the file ended inside its header: truncated")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise fail(f"the safetensors header is not valid JSON ({type(e).__name__}: {e}): "
                   "corrupted") from None
    if not isinstance(header, dict):
        raise fail("the safetensors header is not a JSON object: corrupted")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise fail("the safetensors metadata is not a JSON object: corrupted")
    text = meta.get(FORMAT)
    if text is None:
        raise fail("a safetensors file without chainrule's metadata: it was not written by "
                   "chainrule.save (read raw tensors with safetensors.numpy.load_file)")
    if not isinstance(text, str) or str(zlib.crc32(text.encode())) != meta.get(
            f"{FORMAT}-crc32"):
        raise fail("the checkpoint's metadata fails its checksum: corrupted")
    layout = _tensor_layout(header, size - 8 - n, fail)
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise fail("the checkpoint's metadata is not a JSON object: corrupted")
    if doc.get("format") != FORMAT:
        raise fail(f"unknown checkpoint format {doc.get('format')!r}")
    version = doc.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise fail(f"written by a newer chainrule (checkpoint version {version!r}, this "
                   f"one reads up to {VERSION})")
    checks = doc["arrays"]
    if not isinstance(checks, dict) or set(checks) != set(layout):
        raise fail("the tensors in the file differ from those its metadata lists: corrupted")
    for name, (dtype, shape, _, _) in layout.items():
        want = checks[name]
        if not (isinstance(want, list) and len(want) == 3):
            raise fail(f"the metadata of tensor '{name}' is malformed: corrupted")
        if dtype.str != want[0] or list(shape) != want[1]:
            raise fail(f"tensor '{name}' is {dtype}{list(shape)} but was saved as "
                       f"{want[0]}{want[1]}: corrupted")
    data = bytearray(size - 8 - n)  # the data section, read once (bounded by the file size)
    got = f.readinto(data) if data else 0
    if got != len(data):
        raise fail(f"the file shrank while it was read ({got} of {len(data)} data bytes): "
                   "truncated")
    arrays = {}
    for name, (dtype, shape, begin, end) in layout.items():
        if zlib.crc32(memoryview(data)[begin:end]) != checks[name][2]:
            raise fail(f"tensor '{name}' fails its checksum: corrupted")
        arrays[name] = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                                     offset=begin).reshape(shape)
        if not arrays[name].flags.aligned:
            arrays[name] = arrays[name].copy()
    return _decode(doc["tree"], arrays)


def _tensor_layout(header: dict, data_len: int, fail) -> dict:
    """``{name: (dtype, shape, begin, end)}`` from a safetensors header, every entry checked:
    a known dtype, a shape of non-negative ints whose byte size is ``end - begin``, and
    offsets that tile the data section exactly (as safetensors' own reader requires)."""
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise fail(f"tensor '{name}' has no valid description: corrupted")
        dt, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dt not in _ST_DTYPES:
            raise fail(f"tensor '{name}' has an unknown dtype {dt!r}: corrupted")
        if not (isinstance(shape, list) and len(shape) <= 64 and all(
                type(d) is int and 0 <= d < 2**62 for d in shape)):
            raise fail(f"tensor '{name}' has an invalid shape {shape!r}: corrupted")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= data_len):
            raise fail(f"tensor '{name}' has no valid data_offsets ({offs!r} in a data section "
                       f"of {data_len} bytes): truncated or corrupted")
        dtype = np.dtype(_ST_DTYPES[dt])
        count = math.prod(shape)
        if count * dtype.itemsize != offs[1] - offs[0]:
            raise fail(f"tensor '{name}' is {dt}{shape} ({count * dtype.itemsize} bytes) but "
                       f"its data_offsets span {offs[1] - offs[0]}: corrupted")
        out[name] = (dtype, tuple(shape), offs[0], offs[1])
        spans.append((offs[0], offs[1]))
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise fail("the tensors' data_offsets overlap or leave gaps: corrupted")
        pos = end
    if pos != data_len:
        expected = pos - data_len
        raise fail(f"the header describes {pos} data bytes but the file holds {data_len}: "
                   + ("truncated" if expected > 0 else "unexpected bytes after the data, "
                      "corrupted"))
    return out


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
