"""``torch.onnx``: importable, so scripts that import it at the top run; exporting is not
supported. chainrule records no static graph to export: :func:`export` and
:func:`dynamo_export` raise a clear error. To move a trained model elsewhere, save its
weights with ``chainrule.save(model.state_dict(), path)`` (a plain ``.npz``-style file of
arrays and numbers) and load them into the other framework's model."""

from __future__ import annotations


class OnnxExporterError(RuntimeError):
    """Raised by chainrule.onnx's export functions (ONNX export is not supported)."""


def _unsupported(name):
    return OnnxExporterError(
        f"chainrule.onnx.{name}: ONNX export is not supported (chainrule runs ops eagerly and "
        "records no exportable graph); save the weights with "
        "chainrule.save(model.state_dict(), path) and load them into the target framework"
    )


def export(model, args=(), f=None, *rest, **kwargs):
    raise _unsupported("export")


def dynamo_export(model, *args, **kwargs):
    raise _unsupported("dynamo_export")


def is_in_onnx_export() -> bool:
    """False: chainrule never exports."""
    return False


__all__ = ["export", "dynamo_export", "is_in_onnx_export", "OnnxExporterError"]
