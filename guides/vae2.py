"""Guides for ``ppl_models.vae2.TwoLayerVAE``: sites ``"z1"`` ``[batch, z1_dim]`` then ``"z2"``
``[batch, z_dim]``, inside the model's ``pyro.plate("data")`` and KL weight.

    diag     q(z1 | x) q(z2 | z1), each a diagonal Gaussian of an MLP: the IWAE paper's recognition
             model (x - 200-200 - z1, z1 - 100-100 - z2, the model's activation)

``make_guide(name, vae2)``; the guide contract is in ``guides/__init__.py``.
"""
import pyro
from torch import nn

from guides import build
from guides.heads import DiagNormal
from ppl_models.anneal import kl_scale
from ppl_models.checks import check_images
from ppl_models.nets import ACTIVATIONS, mlp


class LadderDownGuide(nn.Module):
    """q(z1 | x) q(z2 | z1)."""

    def __init__(self, vae2, hidden=None, hidden2=None):
        super().__init__()
        act = ACTIVATIONS[vae2.activation]
        hidden, hidden2 = tuple(hidden or vae2.hidden), tuple(hidden2 or vae2.hidden2)
        self.x_dim = vae2.x_dim
        self.enc1 = nn.Sequential(mlp((vae2.x_dim, *hidden), act), act())
        self.head1 = DiagNormal(hidden[-1], vae2.z1_dim)
        self.enc2 = nn.Sequential(mlp((vae2.z1_dim, *hidden2), act), act())
        self.head2 = DiagNormal(hidden2[-1], vae2.z_dim)

    def guide(self, x, y=None, beta=1.0):
        check_images(x, self.x_dim)
        pyro.module("vae2_guide", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                z1 = pyro.sample("z1", self.head1(self.enc1(x)))
                pyro.sample("z2", self.head2(self.enc2(z1)))

    def encode(self, x):
        """A top code per image: the mean of q(z2 | z1) at the mean of q(z1 | x)."""
        return self.head2.code(self.enc2(self.head1.code(self.enc1(x))))


def diag(vae2, hidden=None):
    return LadderDownGuide(vae2, hidden)


GUIDES = {"diag": diag}


def make_guide(name, vae2, hidden=None, **options):
    return build(GUIDES, name, vae2, hidden, **options)
