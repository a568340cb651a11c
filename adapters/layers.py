"""Small building blocks shared by the adapter kinds."""

from __future__ import annotations

import torch.nn as nn


class ResidualFeedForward(nn.Module):
    """``x + MLP(LN(x))`` with a 4x hidden layer and GELU; tokens ``[..., width]``."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        return x + self.net(x)
