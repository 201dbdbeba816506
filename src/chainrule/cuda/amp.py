"""``torch.cuda.amp``'s names: :class:`chainrule.amp.autocast` (for device 'cuda') and
:class:`chainrule.amp.GradScaler`, which run code unchanged in full precision (see
:mod:`chainrule.amp`)."""

from __future__ import annotations

from .. import amp as _amp
from ..amp import GradScaler as GradScaler


class autocast(_amp.autocast):
    """``torch.cuda.amp.autocast(dtype=..., enabled=...)``: :class:`chainrule.amp.autocast`
    for device 'cuda' (runs the block unchanged)."""

    def __init__(self, enabled=True, dtype=None, cache_enabled=None):
        super().__init__("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


__all__ = ["autocast", "GradScaler"]
