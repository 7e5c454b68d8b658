"""Guides for ``ppl_models.draw.DRAW``: the paper's recurrent encoder.

    draw      at glimpse t the encoder LSTM reads r_t = read(x, x - sigmoid(c_{t-1}), h^dec_{t-1})
              (the image and the error image), h^enc_t = LSTM(h^enc_{t-1}, [r_t, h^dec_{t-1}]),
              q(z_t | x, z_<t) = N(mu(h^enc_t), sigma(h^enc_t))
    noerror   the same, but it reads only the image, not the error image (what does the feedback
              of the canvas buy?)

``read`` follows the model's attention setting: the whole image without attention, or an
N_r x N_r glimpse through a Gaussian filterbank placed from h^dec_{t-1} with attention.
The decoder states h^dec and the canvas c the encoder needs are recomputed here from the sampled
z's with the model's own decoder and writer (no sampling from the model).
Sites: ``"z_{t}"`` ``[batch, z_dim]`` for t = 0..T-1.
``make_guide(name, draw, hidden=None, read_n=None)`` builds one (``hidden``: the encoder LSTM's units,
by default the decoder's; ``read_n``: the read glimpse's side with attention, ``None`` without).
The guide contract is in ``guides/__init__.py``.
"""
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from guides import build
from ppl_models.draw import SIDE, attention_layer, filterbank, read_patch


class Reader(nn.Module):
    """read(images, h^dec): each image whole (``n=None``), or its n x n glimpse placed from h^dec."""

    def __init__(self, hidden, n=None):
        super().__init__()
        self.n = n
        self.where = attention_layer(hidden, n, "read") if n else None

    def out_features(self, n_images):
        return n_images * (self.n * self.n if self.n else SIDE * SIDE)

    def forward(self, images, h_dec):
        if self.n is None:
            return torch.cat(images, -1)
        fx, fy, gamma = filterbank(self.where(h_dec), self.n)
        return torch.cat([read_patch(im, fx, fy, gamma) for im in images], -1)


class DRAWGuide(nn.Module):
    def __init__(self, draw, hidden=256, read_n=None, error_image=True):
        super().__init__()
        self._draw = [draw]  # the model's decoder and writer, used but not owned (no double counting)
        self.error_image = error_image
        self.read = Reader(draw.hidden, read_n)
        in_dim = self.read.out_features(2 if error_image else 1) + draw.hidden + draw.n_classes
        self.encoder = nn.LSTMCell(in_dim, hidden)
        self.q = nn.Linear(hidden, 2 * draw.z_dim)

    def guide(self, x, y=None):
        draw = self._draw[0]
        pyro.module("draw_guide", self)
        pyro.module("draw", draw)
        batch = x.shape[0]
        label = draw.condition(y, batch, x)
        state, canvas = draw.initial_state(batch, x)
        zeros = x.new_zeros(batch, self.encoder.hidden_size)
        enc = (zeros, zeros)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(draw.glimpses)):
                images = [x, x - torch.sigmoid(canvas)] if self.error_image else [x]
                r = self.read(images, state[0])
                enc = self.encoder(torch.cat([r, state[0], label], -1), enc)
                loc, scale = self.q(enc[0]).chunk(2, -1)
                z = pyro.sample(f"z_{t}", dist.Normal(loc, softplus(scale) + 1e-4).to_event(1))
                state, canvas = draw.step(z, label, state, canvas)


def draw_guide(draw, hidden=None, read_n=None):
    return DRAWGuide(draw, hidden or draw.hidden, read_n, error_image=True)


def noerror(draw, hidden=None, read_n=None):
    return DRAWGuide(draw, hidden or draw.hidden, read_n, error_image=False)


GUIDES = {"draw": draw_guide, "noerror": noerror}


def make_guide(name, draw, hidden=None, **options):
    return build(GUIDES, name, draw, hidden, **options)
