"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014).

Generative story, for each image n in the batch::

    z_n ~ p(z)                                            prior, site "z", shape [z_dim]:
                   = N(0, I)                                 "standard"
                   = sum_k pi_k N(mu_k, diag sigma_k^2)      "mog", a learned mixture
                   = 1/K sum_k q(z | u_k)                    "vamp", the VampPrior
                   = N(0, I) through learned flows           "flow"    (``ppl_models/priors.py``)
    x_n ~ p(x | z) = Bernoulli(sigmoid(decoder(z_n)))     binarised pixels, site "x", shape [C*H*W]
      or p(x | z) = N(sigmoid(decoder(z_n)), sigma^2 I)   grey or RGB values, sigma learned or fixed

Images are flattened, channel-major: ``shape`` = (C, H, W) is (1, 28, 28) for MNIST (784 pixels),
e.g. (3, 64, 64) for RGB faces.

The KL weight ``beta`` (beta-VAE, annealing) scales the latent site in the model and in the guide
(``ppl_models.anneal.kl_scale``); ``beta = 1`` is the ELBO. The guides are in ``guides/vae.py``.
"""
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.anneal import kl_scale
from ppl_models.checks import check_images
from ppl_models.nets import ACTIVATIONS, MNIST_SHAPE, ConvDecoder, mlp
from ppl_models.priors import make_prior

DECODERS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(nn.Module):
    def __init__(self, z_dim=50, hidden=(500, 500), decoder="mlp", likelihood="bernoulli", sigma=None,
                 shape=MNIST_SHAPE, prior="standard", prior_components=None, activation="relu"):
        """``sigma=None`` learns one observation scale for the Gaussian likelihood; a number fixes it.
        ``shape``: the images' (C, H, W). ``activation``: the MLPs' (``relu``, or ``tanh`` as in the IWAE
        paper; the guides' encoders take the same). ``prior``: one of ``PRIORS`` (``prior_components``: its K);
        the VampPrior is handed the guide's posterior with ``vae.p_z.attach(guide.posterior)``."""
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
        self.z_dim, self.hidden, self.likelihood, self.activation = z_dim, tuple(hidden), likelihood, activation
        self.shape = tuple(shape)
        self.x_dim = shape[0] * shape[1] * shape[2]
        act = ACTIVATIONS[activation]
        self.decoder = mlp((z_dim, *hidden, self.x_dim), act) if decoder == "mlp" else ConvDecoder(z_dim, shape=shape)
        self.p_z = make_prior(prior, z_dim, self.x_dim, prior_components)
        if likelihood == "gaussian":
            init = math.log(sigma) if sigma is not None else math.log(0.1)
            self.log_sigma = nn.Parameter(torch.tensor(init), requires_grad=sigma is None)

    def model(self, x, y=None, beta=1.0):
        """``x``: ``[batch, C*H*W]`` pixels (0/1 for Bernoulli, [0, 1] for Gaussian); ``y`` unused."""
        check_images(x, self.x_dim)
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                z = pyro.sample("z", self.prior(x))
            logits = self.decoder(z)
            if self.likelihood == "bernoulli":
                px = dist.Bernoulli(logits=logits, validate_args=False)
            else:
                px = dist.Normal(torch.sigmoid(logits), self.log_sigma.exp())
            pyro.sample("x", px.to_event(1), obs=x)
        return logits

    def prior(self, like):
        """p(z), a distribution over ``[z_dim]`` on ``like``'s device and dtype. Sampling, the figures
        and the evaluator ask for it here."""
        return self.p_z(like)

    def decode(self, z):
        """Mean image ``[..., C*H*W]`` for latent codes ``z``."""
        return torch.sigmoid(self.decoder(z))

