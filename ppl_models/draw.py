"""DRAW (Gregor, Danihelka, Graves, Rezende & Wierstra 2015): a recurrent VAE that draws a digit on a
canvas, glimpse by glimpse.

Generative story for each image in the batch, over T glimpses::

    z_t ~ N(0, I)                                   t = 1..T, site "z_{t}", shape [z_dim]
    h_t = LSTM(h_{t-1}, [z_t, onehot(label)])       decoder state (label only with conditioning)
    c_t = c_{t-1} + write(h_t)                      canvas; h_0, c_0 learned (zero at start)
    x  ~ Bernoulli(sigmoid(c_T))                    site "x", shape [784]

Dependencies (the z_t are independent a priori; the canvas accumulates)::

    z_1      z_2      ...  z_T
     |        |             |
     v        v             v
    h_1 ---> h_2 ---> ... -> h_T
     |        |             |
     v        v             v
    c_1 ---> c_2 ---> ... -> c_T ---> x

``write`` without attention is a dense update of the whole canvas; with attention it is an
N_w x N_w patch placed by a Gaussian filterbank, ``write(h) = (1/gamma) F_Y^T w F_X``, whose
centre, stride, width and intensity come from ``h`` (:func:`filterbank`). The guide (the paper's
encoder, in ``guides/draw.py``) reads the image and the error image ``x - sigmoid(c_{t-1})``.
"""
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import one_hot

from ppl_models.checks import check_images, validating

SIDE = 28


def filterbank(params, n, side=SIDE):
    """Gaussian filterbanks from unconstrained ``params`` ``[B, 5]`` = (g~x, g~y, log sigma^2,
    log delta~, log gamma), as in the paper's section 3.2:

        g_x = (side + 1) / 2 (g~x + 1),  delta = (side - 1) / (n - 1) delta~,
        mu_x^i = g_x + (i - n/2 - 1/2) delta,  F_X[i, a] = exp(-(a - mu_x^i)^2 / (2 sigma^2)) / Z,

    pixels a = 1..side; the normalisation Z is a softmax over a (exact even where every
    exp(...) underflows, e.g. a narrow filter centred off the image). Returns ``F_X, F_Y`` ``[B, n, side]`` and ``gamma`` ``[B]``."""
    gx, gy, delta = window(params, n, side)
    log_var, log_gamma = params[..., 2], params[..., 4]
    grid = torch.arange(1, n + 1, device=params.device, dtype=params.dtype) - n / 2 - 0.5   # [n]
    pixels = torch.arange(1, side + 1, device=params.device, dtype=params.dtype)          # [side]

    def bank(g):
        mu = g[:, None] + grid * delta[:, None]                                           # [B, n]
        return torch.softmax(-(pixels - mu[..., None]) ** 2 / (2 * log_var.exp()[:, None, None]), -1)

    return bank(gx), bank(gy), log_gamma.exp()


def window(params, n, side=SIDE):
    """Centre ``(g_x, g_y)`` and stride ``delta`` of the filterbank in pixels (1-based), each ``[B]``."""
    gx, gy, _, log_delta, _ = params.unbind(-1)
    return (side + 1) / 2 * (gx + 1), (side + 1) / 2 * (gy + 1), (side - 1) / max(n - 1, 1) * log_delta.exp()


def attention_layer(hidden, n, mode, span=12.0, side=SIDE):
    """The linear map ``h -> params`` of a filterbank for ``mode`` "read" or "write", its bias set
    so that the initial window is centred, its n x n grid spans the central ``span`` pixels, each
    filter's width is half the stride, and the intensity gamma gives the glimpse the scale of the
    dense read/write it replaces (weights keep PyTorch's small default init, so every window starts
    near this one). The paper gives no initialisation; ours, and why:

    - position: a zero bias (stride delta~ = 1, sigma = 1) puts a 2 x 2 read on the four corner
      pixels, which are blank in MNIST, so the encoder would see nothing of the digit and get no
      gradient through the read to move it (``tests/test_draw.py``);
    - read gamma = side / n: the n*n glimpse values are blurred pixel averages in [0, 1]; scaling
      them by sqrt(784 / n^2) gives the encoder LSTM the input drive of the whole image;
    - write gamma = 1 / (2 pi sigma^2): each patch value then adds about its own size to the pixels
      at its filter's peak, as a dense write does; with gamma = 1 it adds only 1 / (2 pi sigma^2)
      (0.07 for the 5 x 5 write), and the model sat at the mean image (-ELBO ~206) for its whole
      first epoch (the README's DRAW section).
    """
    if mode not in ("read", "write"):
        raise ValueError(f"mode must be 'read' or 'write', got {mode!r}")
    layer = nn.Linear(hidden, 5)
    stride = span / max(n - 1, 1)
    sigma = stride / 2
    gamma = side / n if mode == "read" else 1 / (2 * math.pi * sigma ** 2)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.0, 0.0, 2 * math.log(sigma), math.log(span / (side - 1)), math.log(gamma)]))
    return layer


def read_patch(image, fx, fy, gamma):
    """``gamma F_Y x F_X^T``: the n x n glimpse of ``image`` ``[B, 784]``, flattened ``[B, n*n]``."""
    patch = fy @ image.reshape(-1, SIDE, SIDE) @ fx.transpose(-1, -2)
    return gamma[:, None] * patch.flatten(1)


def write_patch(patch, fx, fy, gamma):
    """``(1/gamma) F_Y^T w F_X``: an n x n patch ``[B, n*n]`` placed on the canvas, ``[B, 784]``."""
    n = fx.shape[1]
    image = fy.transpose(-1, -2) @ patch.reshape(-1, n, n) @ fx
    return image.flatten(1) / gamma[:, None]


class Writer(nn.Module):
    """write(h): a dense 784-pixel update (``n=None``) or an n x n patch through a filterbank."""

    def __init__(self, hidden, n=None):
        super().__init__()
        self.n = n
        self.patch = nn.Linear(hidden, n * n if n else SIDE * SIDE)
        self.where = attention_layer(hidden, n, "write") if n else None

    def forward(self, h):
        if self.n is None:
            return self.patch(h)
        fx, fy, gamma = filterbank(self.where(h), self.n)
        return write_patch(self.patch(h), fx, fy, gamma)


class DRAW(nn.Module):
    def __init__(self, glimpses=64, z_dim=100, hidden=256, write_n=None, n_classes=0):
        super().__init__()
        self.glimpses, self.z_dim, self.hidden, self.n_classes = glimpses, z_dim, hidden, n_classes
        self.decoder = nn.LSTMCell(z_dim + n_classes, hidden)
        self.write = Writer(hidden, write_n)
        # learned initial decoder state (h_0, cell_0) and canvas c_0, as in the paper (zero at start)
        self.h0, self.cell0 = nn.Parameter(torch.zeros(hidden)), nn.Parameter(torch.zeros(hidden))
        self.canvas0 = nn.Parameter(torch.zeros(SIDE * SIDE))

    def condition(self, y, batch, like):
        """The label as a one-hot ``[B, n_classes]`` (an empty ``[B, 0]`` without conditioning)."""
        if self.n_classes == 0:
            return like.new_zeros(batch, 0)
        if y is None:
            raise ValueError("this DRAW is conditioned on the label: pass labels y")
        if y.shape != (batch,) or (validating() and (y.min() < 0 or y.max() >= self.n_classes)):
            raise ValueError(f"labels must be integers in 0..{self.n_classes - 1} of shape [{batch}]")
        return one_hot(y, self.n_classes).to(like.dtype)

    def prior(self, like):
        """p(z_t) = N(0, I) over ``[z_dim]`` for every glimpse, on ``like``'s device and dtype."""
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def initial_state(self, batch, like):
        """``((h_0, cell_0), c_0)`` for a batch: the learned initial decoder state and canvas."""
        return (self.h0.expand(batch, -1), self.cell0.expand(batch, -1)), self.canvas0.expand(batch, -1)

    def step(self, z, label, state, canvas):
        """One glimpse of the decoder: ``h_t = LSTM(h_{t-1}, [z_t, label])``, ``c_t = c_{t-1} + write(h_t)``."""
        state = self.decoder(torch.cat([z, label], -1), state)
        return state, canvas + self.write(state[0])

    def model(self, x, y=None):
        """``x``: ``[batch, 784]`` binary pixels; ``y``: ``[batch]`` labels (with conditioning)."""
        check_images(x)
        pyro.module("draw", self)
        batch = x.shape[0]
        label = self.condition(y, batch, x)
        state, canvas = self.initial_state(batch, x)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(self.glimpses)):
                z = pyro.sample(f"z_{t}", self.prior(x))
                state, canvas = self.step(z, label, state, canvas)
            pyro.sample("x", dist.Bernoulli(logits=canvas, validate_args=False).to_event(1), obs=x)

    def generate(self, n, y=None, device="cpu"):
        """Canvases after each glimpse for n prior samples, ``sigmoid(c_t)`` ``[T, n, 784]``, and the
        write windows ``[T, n, 3]`` (centre x, centre y, stride in pixels; ``None`` without attention)."""
        like = torch.zeros(1, device=device)
        label = self.condition(y, n, like)
        state, canvas = self.initial_state(n, like)
        frames, windows = [], []
        with torch.no_grad():
            for _ in range(self.glimpses):
                state, canvas = self.step(self.prior(like).sample((n,)), label, state, canvas)
                frames.append(torch.sigmoid(canvas))
                if self.write.n:
                    windows.append(torch.stack(window(self.write.where(state[0]), self.write.n), -1))
        return torch.stack(frames), (torch.stack(windows) if windows else None)
