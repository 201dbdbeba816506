"""A small convolutional classifier (the classic two-block LeNet-style network)::

    x (N, C, H, W)
    -> conv3x3(32, pad 1) -> relu -> maxpool 2      (N, 32, H/2, W/2)
    -> conv3x3(64, pad 1) -> relu -> maxpool 2      (N, 64, H/4, W/4)
    -> flatten -> linear(64 (H/4)(W/4), classes)    logits

For 28x28 inputs the classifier is linear(3136, 10); for scikit-learn's 8x8 digits it is
linear(256, 10).
"""

from __future__ import annotations

from chainrule import nn


class CNN(nn.Module):
    """``CNN(in_channels=1, num_classes=10, image_size=28)``; ``image_size`` is an int or an
    (H, W) pair, each divisible by 4. Parameter names: ``features.0``, ``features.3`` (the two
    convolutions) and ``classifier``."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size=28,
                 channels=(32, 64)):
        super().__init__()
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if H % 4 or W % 4:
            raise ValueError(f"CNN: image_size must be divisible by 4 (two 2x2 poolings), got "
                             f"{(H, W)}")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(c2 * (H // 4) * (W // 4), num_classes)

    def forward(self, x):
        x = self.features(x)  # (N, c2, H/4, W/4)
        return self.classifier(x.reshape(x.shape[0], -1))
