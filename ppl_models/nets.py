"""Small networks shared by the models and guides. No Pyro in here: the generative story and the
variational families live in their own files and only call these."""
import torch
from torch import nn


def concat(*tensors):
    """Concatenate along the last dimension, broadcasting the leading (batch) dimensions, e.g.
    ``[B, d1]`` with ``[S, B, d2]`` (S particles) gives ``[S, B, d1 + d2]``."""
    shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*shape, t.shape[-1]) for t in tensors], -1)


def mlp(sizes, activation=nn.ReLU, out_activation=None):
    """``sizes = (in, h1, ..., out)``: Linear layers with ``activation`` between them."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out_activation is not None:
        layers.append(out_activation())
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """28x28 image -> features: four 3x3 convolutions with ReLU (two of them stride 2), then flatten.

    ``[B, 784] -> [B, 64 * 7 * 7]``."""

    out_features = 64 * 7 * 7

    def __init__(self, channels=(32, 32, 64, 64)):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),   # 14x14
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, 3, stride=2, padding=1), nn.ReLU(),   # 7x7
            nn.Flatten())
        self.out_features = c4 * 7 * 7

    def forward(self, x):
        return self.net(x.reshape(-1, 1, 28, 28))


class StridedConvEncoder(nn.Module):
    """28x28 image -> features, cheaply: a stride-2 3x3 convolution first (to 14x14), a second one
    (to 7x7), then a 3x3 convolution at 7x7; ReLU between. About four times faster than
    :class:`ConvEncoder` on a CPU, as the expensive full-resolution layers are skipped.

    ``[B, 784] -> [B, 64 * 7 * 7]``."""

    def __init__(self, channels=(32, 64, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(),    # 14x14
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),   # 7x7
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Flatten())
        self.out_features = c3 * 7 * 7

    def forward(self, x):
        return self.net(x.reshape(-1, 1, 28, 28))


class ConvDecoder(nn.Module):
    """z -> 784 logits: dense -> 14x14x64 -> ConvTranspose (to 28x28x32) -> conv to one 28x28 channel.

    Leading batch dimensions of ``z`` are kept: ``[..., z_dim] -> [..., 784]``."""

    def __init__(self, z_dim, channels=64):
        super().__init__()
        self.channels = channels
        self.dense = nn.Sequential(nn.Linear(z_dim, 14 * 14 * channels), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, 32, 4, stride=2, padding=1), nn.ReLU(),  # 28x28
            nn.Conv2d(32, 1, 3, padding=1))

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, self.channels, 14, 14)
        return self.deconv(h).reshape(*batch, 784)
