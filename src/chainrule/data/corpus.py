"""Text sources: the embedded default corpus, a UTF-8 file, or a folder of .txt files.

The default corpus is Python's own reference documentation, ``pydoc_data.topics``, which ships
with every CPython, so training needs no download. Everything else is read from the user's
files, validated as UTF-8 with an error that says which file and which byte is wrong.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_CORPUS = "pydoc"  # the name the default corpus goes by in configs and messages
_CHUNK_BYTES = 1 << 22  # read files 4 MiB at a time, so huge corpora never sit in memory whole


class DataError(ValueError):
    """The training text is missing, empty, not UTF-8 or too short."""


def default_corpus_text() -> str:
    """The embedded corpus: every topic of ``pydoc_data.topics``, in key order, joined."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # pragma: no cover - some stripped Python builds drop it
        raise DataError(
            "the embedded corpus needs the standard library module pydoc_data.topics, which "
            "this Python lacks; pass --data FILE (a UTF-8 text file) instead"
        ) from e
    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


@dataclass(frozen=True)
class TextSource:
    """Where the training text comes from: the embedded corpus or a list of UTF-8 files.

    ``files`` is empty for the embedded corpus. Iterating with :meth:`chunks` yields the text
    piece by piece (files are joined by a blank line), validated as UTF-8.
    """

    name: str
    files: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return not self.files

    def chunks(self) -> Iterator[str]:
        if self.is_default:
            yield default_corpus_text()
            return
        for i, path in enumerate(self.files):
            if i:
                yield "\n\n"
            yield from _read_utf8_chunks(path)

    def read(self) -> str:
        return "".join(self.chunks())

    def num_bytes(self) -> int:
        if self.is_default:
            return len(default_corpus_text().encode("utf-8"))
        return sum(os.path.getsize(p) for p in self.files)

    def fingerprint(self) -> str:
        """SHA-256 of the content (so a resumed run can tell the text has not changed)."""
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk.encode("utf-8"))
        return h.hexdigest()


def resolve_source(data: str | None) -> TextSource:
    """The text source for ``--data``: '' / None / 'pydoc' is the embedded corpus, a file is
    read as UTF-8, a folder contributes its ``*.txt`` files (recursively, sorted by path)."""
    if not data or data == DEFAULT_CORPUS:
        return TextSource(DEFAULT_CORPUS)
    path = os.path.expanduser(str(data))
    if not os.path.exists(path):
        raise DataError(f"data: {data!r} does not exist; pass a UTF-8 text file or a folder of "
                        ".txt files (or leave --data out to use the embedded corpus)")
    if os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(".txt")]
        if not files:
            raise DataError(f"data: folder {data!r} holds no .txt files")
    else:
        files = [path]
    for f in files:
        if not os.access(f, os.R_OK):
            raise DataError(f"data: cannot read {f!r} (permission denied)")
    if sum(os.path.getsize(f) for f in files) == 0:
        what = "file" if len(files) == 1 else f"{len(files)} .txt files in the folder"
        raise DataError(f"data: {data!r} is empty ({what} with 0 bytes); it must hold text")
    return TextSource(os.path.abspath(path), tuple(os.path.abspath(f) for f in files))


def _read_utf8_chunks(path: str) -> Iterator[str]:
    """Decode ``path`` incrementally; a bad byte raises DataError naming file, line and offset."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes consumed before the current chunk
    lines = 1  # line number at the start of the current chunk
    with open(path, "rb") as f:
        while True:
            raw = f.read(_CHUNK_BYTES)
            final = not raw
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                start = max(e.start - pending, 0)  # e.start counts the pending bytes too
                pos = offset - pending + e.start
                line = lines + raw[:start].count(b"\n")
                bad = e.object[e.start:e.start + 1]
                raise DataError(
                    f"data: {path!r} is not valid UTF-8: byte {pos} (line {line}) is "
                    f"0x{bad.hex()} ({e.reason}). Convert the file to UTF-8 first, e.g. "
                    f"iconv -f latin1 -t utf-8"
                ) from None
            if text:
                if offset == 0 and text.startswith("\ufeff"):
                    text = text[1:]  # a byte-order mark is not part of the text
                yield text
            if final:
                return
            offset += len(raw)
            lines += raw.count(b"\n")
