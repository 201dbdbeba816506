"""Internals of chainrule.utils.data shared by the loader and its worker processes: collation,
fetching samples, and the worker loop."""

from __future__ import annotations

import sys
import traceback


class ExceptionWrapper:
    """An exception raised in a worker process, carried to the main process (as its type and
    formatted traceback) and raised there again with :meth:`reraise`."""

    def __init__(self, exc_info=None, where: str = "in background"):
        exc_type, exc, tb = exc_info if exc_info is not None else sys.exc_info()
        self.exc_type = exc_type
        self.exc_msg = "".join(traceback.format_exception(exc_type, exc, tb))
        self.where = where

    def __reduce__(self):
        # the type travels by reference; one that cannot (a class defined in a function) is
        # re-raised as a RuntimeError carrying its name and traceback
        import pickle

        try:
            pickle.dumps(self.exc_type)
            exc_type = self.exc_type
        except Exception:
            exc_type = RuntimeError
        return (_rebuild_wrapper, (exc_type, self.exc_msg, self.where))

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = KeyError(msg)  # KeyError shows its argument's repr: wrap the text once more
        try:
            exception = self.exc_type(msg)
        except Exception:
            exception = RuntimeError(msg)
        try:
            raise exception
        finally:
            del exception  # no cycle (exception -> traceback -> this frame -> exception)


def _rebuild_wrapper(exc_type, exc_msg, where):
    w = ExceptionWrapper.__new__(ExceptionWrapper)
    w.exc_type, w.exc_msg, w.where = exc_type, exc_msg, where
    return w
