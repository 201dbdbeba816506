"""``torch.backends.cuda``: ``matmul.allow_tf32`` and friends as settable flags that change
nothing (chainrule's float32 matmuls are full float32)."""


class _MatmulFlags:
    """``torch.backends.cuda.matmul``: settable flags."""

    def __init__(self):
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    def __repr__(self):
        return (f"chainrule.backends.cuda.matmul(allow_tf32={self.allow_tf32}, "
                f"allow_fp16_reduced_precision_reduction="
                f"{self.allow_fp16_reduced_precision_reduction})")


matmul = _MatmulFlags()


def is_built() -> bool:
    return False


def flash_sdp_enabled() -> bool:
    return False


def enable_flash_sdp(enabled: bool) -> None:
    return None


def enable_mem_efficient_sdp(enabled: bool) -> None:
    return None


def enable_math_sdp(enabled: bool) -> None:
    return None
