"""Guides (variational families) for ``ppl_models.vae.VAE``. Each samples the site ``"z"``, shape
``[batch, z_dim]``, inside the same ``pyro.plate("data")`` and KL weight as the model.

    diag     q(z|x) = N(mu(x), diag sigma(x)^2), MLP encoder           (mean field)
    conv     the same head on a four-layer convolutional encoder
    lowrank  q(z|x) = N(mu(x), W(x) W(x)^T + D(x)), MLP encoder
    iaf      the diag Gaussian followed by inverse autoregressive flows conditioned on the encoder
    delta    q(z|x) = Delta(f(x)), a point estimate; with --beta 0 this is the plain autoencoder

``GUIDES[name](z_dim, hidden)`` builds one.
"""
import pyro
import pyro.distributions as dist
from torch import nn

from guides.heads import IAF, DiagNormal, LowRankNormal
from ppl_models.anneal import kl_scale
from ppl_models.data import check_images
from ppl_models.nets import ConvEncoder, mlp


class EncoderGuide(nn.Module):
    """An encoder network (x -> features h) followed by a head (h -> q(z | x))."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def guide(self, x, y=None, beta=1.0):
        check_images(x)  # the guide runs first: bad data gets the model's clear error here
        pyro.module("vae_guide", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                pyro.sample("z", self.head(self.encoder(x)))

    def encode(self, x):
        """A representative code for each image: the mean of the base Gaussian (the point for delta)."""
        h = self.encoder(x)
        head = self.head.base if isinstance(self.head, IAF) else self.head
        return head.loc(h)


class PointHead(nn.Module):
    """q(z | h) = Delta(W h + b)."""

    def __init__(self, h_dim, z_dim):
        super().__init__()
        self.loc = nn.Linear(h_dim, z_dim)

    def forward(self, h):
        return dist.Delta(self.loc(h)).to_event(1)


def _mlp_encoder(hidden):
    return nn.Sequential(mlp((784, *hidden)), nn.ReLU())


def diag(z_dim, hidden=(500, 500)):
    return EncoderGuide(_mlp_encoder(hidden), DiagNormal(hidden[-1], z_dim))


def conv(z_dim, hidden=None):
    enc = ConvEncoder()
    return EncoderGuide(enc, DiagNormal(enc.out_features, z_dim))


def lowrank(z_dim, hidden=(500, 500), rank=4):
    return EncoderGuide(_mlp_encoder(hidden), LowRankNormal(hidden[-1], z_dim, rank))


def iaf(z_dim, hidden=(500, 500), n_flows=2):
    return EncoderGuide(_mlp_encoder(hidden), IAF(hidden[-1], z_dim, n_flows))


def delta(z_dim, hidden=(500, 500)):
    return EncoderGuide(_mlp_encoder(hidden), PointHead(hidden[-1], z_dim))


GUIDES = {"diag": diag, "conv": conv, "lowrank": lowrank, "iaf": iaf, "delta": delta}


def make_guide(name, z_dim, hidden=(500, 500)):
    if name not in GUIDES:
        raise ValueError(f"unknown guide {name!r}; choose one of {sorted(GUIDES)}")
    return GUIDES[name](z_dim, hidden)
