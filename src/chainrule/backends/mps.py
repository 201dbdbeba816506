"""``torch.backends.mps``: chainrule has no Apple-GPU device; both answers are False."""


def is_available() -> bool:
    return False


def is_built() -> bool:
    return False
