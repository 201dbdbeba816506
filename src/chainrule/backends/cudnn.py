"""``torch.backends.cudnn``: settable flags that change nothing (chainrule does not use
cuDNN); ``is_available()`` is False."""

benchmark = False
deterministic = False
enabled = True
allow_tf32 = True


def is_available() -> bool:
    return False


def version():
    return None
