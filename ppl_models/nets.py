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


MNIST_SHAPE = (1, 28, 28)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}  # tanh: the IWAE paper's networks


def check_conv_shape(shape):
    """The convolutional networks take ``(C, H, W)`` with H and W even (the decoder doubles H/2 x W/2)
    and at least 8; anything else is refused with one line."""
    c, h, w = shape
    if h % 2 or w % 2 or min(h, w) < 8:
        raise ValueError(f"the conv networks take images of even height and width of at least 8 pixels "
                         f"(e.g. 28, 32, 64), got {h}x{w}")


def _quarter(n):
    return -(-(-(-n // 2)) // 2)  # two stride-2 convolutions with padding 1: ceil(ceil(n / 2) / 2)


class ConvEncoder(nn.Module):
    """Image -> features: four 3x3 convolutions with ReLU (two of them stride 2), then flatten.

    ``[B, C * H * W] -> [B, 64 * H/4 * W/4]`` (``[B, 784] -> [B, 64 * 7 * 7]`` for MNIST)."""

    def __init__(self, channels=(32, 32, 64, 64), shape=MNIST_SHAPE):
        super().__init__()
        check_conv_shape(shape)
        self.shape = tuple(shape)
        c1, c2, c3, c4 = channels
        self.net = nn.Sequential(
            nn.Conv2d(shape[0], c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),   # H/2 (14 for MNIST)
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, 3, stride=2, padding=1), nn.ReLU(),   # H/4 (7)
            nn.Flatten())
        self.out_features = c4 * _quarter(shape[1]) * _quarter(shape[2])

    def forward(self, x):
        return self.net(x.reshape(-1, *self.shape))


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
    """z -> logits of a C x H x W image: dense -> H/2 x W/2 x 64 -> ConvTranspose (to H x W x 32) ->
    conv to C channels (for MNIST: 14x14x64 -> 28x28x32 -> one 28x28 channel).

    Leading batch dimensions of ``z`` are kept: ``[..., z_dim] -> [..., C * H * W]``."""

    def __init__(self, z_dim, channels=64, shape=MNIST_SHAPE):
        super().__init__()
        check_conv_shape(shape)
        self.channels, self.shape = channels, tuple(shape)
        self.half = (shape[1] // 2, shape[2] // 2)
        self.dense = nn.Sequential(nn.Linear(z_dim, self.half[0] * self.half[1] * channels), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, 32, 4, stride=2, padding=1), nn.ReLU(),  # H x W
            nn.Conv2d(32, shape[0], 3, padding=1))

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, self.channels, *self.half)
        return self.deconv(h).reshape(*batch, self.shape[0] * self.shape[1] * self.shape[2])
