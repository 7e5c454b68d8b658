"""Guides (variational families) for ``ppl_models.vae.VAE``. Each samples the site ``"z"``, shape
``[batch, z_dim]``, inside the same ``pyro.plate("data")`` and KL weight as the model.

    diag     q(z|x) = N(mu(x), diag sigma(x)^2), MLP encoder           (mean field)
    conv     the same head on a four-layer convolutional encoder
    lowrank  q(z|x) = N(mu(x), W(x) W(x)^T + D(x)), MLP encoder
    fullcov  q(z|x) = N(mu(x), L(x) L(x)^T), L(x) a full Cholesky factor from the MLP encoder
    iaf      the diag Gaussian followed by inverse autoregressive flows conditioned on the encoder
    spline   the same, with rational-quadratic spline autoregressive flows (a second flow family)
    delta    q(z|x) = Delta(f(x)), a point estimate; with --beta 0 this is the plain autoencoder

``make_guide(name, vae)`` builds one for a ``VAE`` (``GUIDES[name](vae, hidden=None)``; ``hidden``:
the MLP encoder's sizes, by default the decoder's). The guide contract is in ``guides/__init__.py``;
a head (features h -> q(z | x)) follows the one in ``guides/heads.py``.
"""
import pyro
import pyro.distributions as dist
from torch import nn

from guides import build
from guides.heads import IAF, DiagNormal, Flow, FullCovNormal, LowRankNormal
from ppl_models.anneal import kl_scale
from ppl_models.checks import check_images
from ppl_models.nets import ACTIVATIONS, ConvEncoder, mlp


class EncoderGuide(nn.Module):
    """An encoder network (x -> features h) followed by a head (h -> q(z | x)).
    ``x_dim``: the images' width, checked on entry (``None``: any input, e.g. a test's toy model)."""

    def __init__(self, encoder, head, x_dim=784):
        super().__init__()
        self.encoder, self.head, self.x_dim = encoder, head, x_dim

    def guide(self, x, y=None, beta=1.0):
        if self.x_dim is not None:
            check_images(x, self.x_dim)  # the guide runs first: bad data gets the model's clear error here
        pyro.module("vae_guide", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                pyro.sample("z", self.head(self.encoder(x)))

    def encode(self, x):
        """A representative code for each image: the head's ``code`` (e.g. the Gaussian's mean)."""
        return self.head.code(self.encoder(x))

    def posterior(self, x):
        """q(z | x) as a distribution over ``[batch, z_dim]`` (what the VampPrior mixes)."""
        return self.head(self.encoder(x))


class PointHead(nn.Module):
    """q(z | h) = Delta(W h + b)."""

    def __init__(self, h_dim, z_dim):
        super().__init__()
        self.loc = nn.Linear(h_dim, z_dim)

    def params(self, h):
        return (self.loc(h),)

    def family(self, loc):
        return dist.Delta(loc).to_event(1)

    def forward(self, h):
        return self.family(*self.params(h))

    def code(self, h):
        return self.loc(h)


def _mlp_encoder(vae, hidden):
    act = ACTIVATIONS[getattr(vae, "activation", "relu")]  # the model's activation
    return nn.Sequential(mlp((vae.x_dim, *hidden), act), act())


def _sizes(vae, hidden):
    return tuple(hidden or vae.hidden)


def diag(vae, hidden=None):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), DiagNormal(hidden[-1], vae.z_dim), x_dim=vae.x_dim)


def conv(vae, hidden=None):
    enc = ConvEncoder(shape=vae.shape)
    return EncoderGuide(enc, DiagNormal(enc.out_features, vae.z_dim), x_dim=vae.x_dim)


def lowrank(vae, hidden=None, rank=4):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), LowRankNormal(hidden[-1], vae.z_dim, rank), x_dim=vae.x_dim)


def fullcov(vae, hidden=None):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), FullCovNormal(hidden[-1], vae.z_dim), x_dim=vae.x_dim)


def iaf(vae, hidden=None, n_flows=2):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), IAF(hidden[-1], vae.z_dim, n_flows), x_dim=vae.x_dim)


def spline(vae, hidden=None, n_flows=2, count_bins=8):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), Flow(hidden[-1], vae.z_dim, n_flows, kind="spline",
                                                   count_bins=count_bins), x_dim=vae.x_dim)


def delta(vae, hidden=None):
    hidden = _sizes(vae, hidden)
    return EncoderGuide(_mlp_encoder(vae, hidden), PointHead(hidden[-1], vae.z_dim), x_dim=vae.x_dim)


GUIDES = {"diag": diag, "conv": conv, "lowrank": lowrank, "fullcov": fullcov, "iaf": iaf, "spline": spline,
          "delta": delta}


def make_guide(name, vae, hidden=None, **options):
    return build(GUIDES, name, vae, hidden, **options)
