"""``torch.nn.parallel``: :class:`DataParallel` and the name ``DistributedDataParallel``.

chainrule runs a model on one device, so :class:`DataParallel` is a pass-through wrapper: it
holds the model as ``.module`` (state-dict keys start with ``module.``, as PyTorch's do) and its
forward calls the model on the whole batch. Data-parallel training over processes is
``chainrule.distributed.DistributedDataParallel``; the name here raises an error that points
there (``nn`` sits below ``distributed`` and does not import it).
"""

from __future__ import annotations

from ..module import Module


class DataParallel(Module):
    """``DataParallel(module, device_ids=None, output_device=None, dim=0)``: runs ``module`` on
    the whole batch on its one device (chainrule does not split a batch across GPUs), so a
    script written for several GPUs gives the same numbers on one."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: expected a chainrule.nn.Module, got "
                            f"{type(module).__name__}")
        self.module = module
        self.device_ids = list(device_ids) if device_ids is not None else []
        self.output_device = output_device
        self.dim = dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


class DistributedDataParallel:
    """Not here: use ``chainrule.distributed.DistributedDataParallel`` (data-parallel training
    over processes); constructing this name raises an error saying so."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "chainrule.nn.parallel.DistributedDataParallel: use "
            "chainrule.distributed.DistributedDataParallel (after "
            "chainrule.distributed.init_process_group); on one process, use the model itself"
        )


def data_parallel(module, inputs, device_ids=None, output_device=None, dim=0,
                  module_kwargs=None):
    """``module(inputs)`` on the one device (see :class:`DataParallel`)."""
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs, **(module_kwargs or {}))


__all__ = ["DataParallel", "DistributedDataParallel", "data_parallel"]
