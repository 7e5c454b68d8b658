"""Guides for ``ppl_models.ssvae.SSVAE``: a classifier q(y | x) and an encoder q(z | x, y).

    mlp     the paper's sizes: MLP classifier and MLP encoder; y enumerated when unobserved
    conv    convolutional feature extractors for both
    sample  the mlp guide, but y is *sampled* when unobserved (score-function gradients,
            ``TraceGraph_ELBO``), to show what enumeration buys

Sites: ``"y"`` (integer label, only when unobserved) and ``"z"`` ``[batch, z_dim]``.
"""
import pyro
import pyro.distributions as dist
from torch import nn
from torch.nn.functional import softplus

from ppl_models.nets import ConvEncoder, mlp
from ppl_models.ssvae import N_CLASSES, cat_label


class SSGuide(nn.Module):
    def __init__(self, features_y, features_z, h_y, h_z, z_dim, hidden, enumerate_y=True):
        super().__init__()
        self.features_y, self.features_z = features_y, features_z
        self.classify_head = nn.Linear(h_y, N_CLASSES)
        self.z_net = mlp((h_z + N_CLASSES, hidden, 2 * z_dim), activation=nn.Softplus)
        self.enumerate_y = enumerate_y

    def classifier(self, x):
        """Logits of q(y | x), ``[batch, 10]``."""
        return self.classify_head(self.features_y(x))

    def guide(self, x, y=None):
        pyro.module("ssvae_guide", self)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                infer = {"enumerate": "parallel"} if self.enumerate_y else {}
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)), infer=infer)
            loc, scale = self.z_net(cat_label(self.features_z(x), y)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, softplus(scale) + 1e-4).to_event(1))

    def encode(self, x, y):
        """Mean of q(z | x, y)."""
        return self.z_net(cat_label(self.features_z(x), y)).chunk(2, -1)[0]


def mlp_guide(z_dim=50, hidden=500, enumerate_y=True):
    feats = lambda: nn.Sequential(mlp((784, hidden), activation=nn.Softplus), nn.Softplus())  # noqa: E731
    return SSGuide(feats(), feats(), hidden, hidden, z_dim, hidden, enumerate_y)


def conv_guide(z_dim=50, hidden=500):
    fy, fz = ConvEncoder(), ConvEncoder()
    return SSGuide(nn.Sequential(fy, nn.Dropout(0.2)), fz, fy.out_features, fz.out_features, z_dim, hidden)


def sample_guide(z_dim=50, hidden=500):
    return mlp_guide(z_dim, hidden, enumerate_y=False)


GUIDES = {"mlp": mlp_guide, "conv": conv_guide, "sample": sample_guide}


def make_guide(name, z_dim=50, hidden=500):
    if name not in GUIDES:
        raise ValueError(f"unknown guide {name!r}; choose one of {sorted(GUIDES)}")
    return GUIDES[name](z_dim, hidden)
