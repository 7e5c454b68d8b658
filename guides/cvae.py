"""Guides for ``ppl_models.cvae.CVAE``.

    recognition   q(z | x, y) = N(mu_q(x, y), sigma_q(x, y)): the CVAE of Sohn et al. With ``inputs="y"``
                  the network sees the target image alone: where x is y with pixels hidden
                  (quadrant completion), y holds all that x does, and q(z | y) is the same family
                  on half the inputs (Pyro's example; 4.4 nats better on validation, one quadrant)
    gsnn          q(z | x, y) = p(z | x): the conditional prior is its own guide, so the KL term
                  vanishes and the ELBO is E_{p(z|x)}[log p(y | x, z)], the GSNN objective

Site: ``"z"`` ``[batch, z_dim]``. Both take the model's arguments ``(x, y, missing)``.
``make_guide(name, cvae, hidden=None, inputs="xy")`` builds one (``hidden``: the recognition MLP's sizes,
by default the model's; ``inputs``: what it sees, ``"xy"`` or ``"y"``); the guide contract is in
``guides/__init__.py``.
"""
import pyro
import pyro.distributions as dist
from torch import nn
from torch.nn.functional import softplus

from guides import build
from ppl_models.nets import concat, mlp

RECOGNITION_INPUTS = ("xy", "y")  # what q(z | x, y)'s network sees: the input beside the target, or the target


class RecognitionGuide(nn.Module):
    """q(z | x, y): an MLP on the input and the whole target, ``[x, y]``, or on the target ``y`` alone."""

    def __init__(self, x_dim=784, z_dim=200, hidden=(500, 500), inputs="xy"):
        super().__init__()
        if inputs not in RECOGNITION_INPUTS:
            raise ValueError(f"unknown recognition input {inputs!r}; choose one of {RECOGNITION_INPUTS}")
        self.inputs = inputs
        self.net = mlp((x_dim * (inputs == "xy") + 784, *hidden, 2 * z_dim))

    def guide(self, x, y=None, missing=None):
        if y is None:
            raise ValueError("the recognition guide q(z | x, y) needs y; to predict, sample the prior "
                             "(CVAE.predict) or use the gsnn guide")
        pyro.module("cvae_recognition", self)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.net(concat(x, y) if self.inputs == "xy" else y).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, softplus(scale) + 1e-4).to_event(1))


class GSNNGuide(nn.Module):
    """q(z | x, y) = p(z | x), sharing the model's prior network (it owns no parameters)."""

    def __init__(self, cvae):
        super().__init__()
        self._model = [cvae]  # a list, so the model's parameters are not counted twice

    def guide(self, x, y=None, missing=None):
        cvae = self._model[0]
        pyro.module("cvae_prior", cvae.prior_net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", cvae.prior(x, missing))


def recognition(cvae, hidden=None, inputs="xy"):
    return RecognitionGuide(cvae.x_dim, cvae.z_dim, tuple(hidden or cvae.hidden), inputs)


def gsnn(cvae, hidden=None, inputs="xy"):
    return GSNNGuide(cvae)  # the prior's own network: it sees x~


GUIDES = {"recognition": recognition, "gsnn": gsnn}  # the hybrid objective: --objective hybrid


def make_guide(name, cvae, hidden=None, **options):
    return build(GUIDES, name, cvae, hidden, **options)
