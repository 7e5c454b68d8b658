"""The VAE with two stochastic layers of the IWAE paper (Burda, Grosse & Salakhutdinov 2016, sec. 5).

Generative story, for each image n in the batch::

    z2_n ~ p(z2)            = N(0, I)  (or another prior)                site "z2", shape [z_dim]     (50)
    z1_n ~ p(z1 | z2)       = N(mu_1(z2_n), diag sigma_1(z2_n)^2)         site "z1", shape [z1_dim]    (100)
    x_n  ~ p(x | z1)        = Bernoulli(sigmoid(decoder(z1_n)))           site "x",  shape [784]

with the paper's deterministic layers: 100-100 between z2 and z1, 200-200 between z1 and x, tanh.
Its guides (``guides/vae2.py``) factorise the other way, q(z1 | x) q(z2 | z1). ``beta`` weights both
latent sites in model and guide (``ppl_models/anneal.py``); ``beta = 1`` is the ELBO.
"""
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ppl_models.anneal import kl_scale
from ppl_models.checks import check_images
from ppl_models.nets import ACTIVATIONS, MNIST_SHAPE, mlp
from ppl_models.priors import make_prior

MIN_SCALE = 1e-3


class TwoLayerVAE(nn.Module):
    def __init__(self, z_dim=50, z1_dim=100, hidden=(200, 200), hidden2=(100, 100), activation="tanh",
                 prior="standard", prior_components=None):
        """``z_dim``: the top latent z2; ``z1_dim``: the lower one; ``hidden``: the layers between z1 and
        x; ``hidden2``: between z2 and z1. ``prior`` over z2: ``standard``, ``mog`` or ``flow``."""
        super().__init__()
        if prior == "vamp":
            raise ValueError("the VampPrior mixes q(z | x) at pseudo-inputs; the two-layer guide has no "
                             "q(z2 | x) in closed form: use --prior standard, mog or flow")
        act = ACTIVATIONS[activation]
        self.z_dim, self.z1_dim, self.hidden, self.hidden2 = z_dim, z1_dim, tuple(hidden), tuple(hidden2)
        self.activation, self.shape, self.x_dim = activation, MNIST_SHAPE, 784
        self.p_z = make_prior(prior, z_dim, self.x_dim, prior_components)
        self.z1_net = nn.Sequential(mlp((z_dim, *hidden2), act), act())
        self.z1_loc, self.z1_scale = nn.Linear(hidden2[-1], z1_dim), nn.Linear(hidden2[-1], z1_dim)
        self.decoder = mlp((z1_dim, *hidden, self.x_dim), act)

    def p_z1(self, z2):
        """p(z1 | z2) = N(mu_1(z2), diag sigma_1(z2)^2)."""
        h = self.z1_net(z2)
        return dist.Normal(self.z1_loc(h), softplus(self.z1_scale(h)) + MIN_SCALE).to_event(1)

    def model(self, x, y=None, beta=1.0):
        """``x``: ``[batch, 784]`` binary pixels; ``y`` unused."""
        check_images(x, self.x_dim)
        pyro.module("vae2", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                z2 = pyro.sample("z2", self.prior(x))
                z1 = pyro.sample("z1", self.p_z1(z2))
            logits = self.decoder(z1)
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)
        return logits

    def prior(self, like):
        """p(z2), a distribution over ``[z_dim]``: what sampling and the figures ask for."""
        return self.p_z(like)

    def decode(self, z2):
        """Mean image ``[..., 784]`` for top codes ``z2``, through the mean of p(z1 | z2)."""
        return torch.sigmoid(self.decoder(self.p_z1(z2).mean))
