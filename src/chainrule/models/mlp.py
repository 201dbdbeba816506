"""A multilayer perceptron: affine layers with an activation between each pair.

    h_0 = x (flattened to (B, in_features))
    h_i = act(h_{i-1} W_i^T + b_i)      for each hidden width
    y   = h_L W^T + b                   (logits; no activation on the output)
"""

from __future__ import annotations

from chainrule import nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
                "sigmoid": nn.Sigmoid}


class MLP(nn.Sequential):
    """``MLP(784, (512, 512), 10)`` is ``Sequential(Linear(784, 512), ReLU(), Linear(512, 512),
    ReLU(), Linear(512, 10))``, with the same parameter names (``0.weight``, ``2.weight``, ...)
    as that PyTorch Sequential, so state dicts move between the two unchanged. Inputs with more
    than two dims (images) are flattened after the batch dim. ``dropout > 0`` adds a Dropout
    after each activation (shifting the indices after it)."""

    def __init__(self, in_features: int, hidden_features=(512, 512), out_features: int = 10,
                 activation: str = "relu", dropout: float = 0.0):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: unknown activation {activation!r}; expected one of "
                             f"{sorted(_ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout!r}")
        widths = [int(in_features), *(int(h) for h in hidden_features), int(out_features)]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        super().__init__(*layers)
        self.in_features, self.out_features = widths[0], widths[-1]

    def forward(self, x):
        if x.ndim > 2:  # (B, C, H, W) images -> (B, C*H*W)
            x = x.reshape(x.shape[0], -1)
        return super().forward(x)
