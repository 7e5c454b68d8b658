"""Guides for ``ppl_models.ssvae.SSVAE``: a classifier q(y | x) and an encoder q(z | x, y).

    mlp     the paper's sizes: MLP classifier and MLP encoder; y enumerated when unobserved
    conv    convolutional feature extractors for both (``StridedConvEncoder``), dropout before
            the classifier's head
    sample  the mlp guide, but y is *sampled* when unobserved (score-function gradients,
            ``TraceGraph_ELBO``), to show what enumeration buys

Each takes ``classifier_hidden=K``: a hidden layer of K softplus units in the classifier's head (as
the auxiliary models' guides have) in place of a linear one.

Sites: ``"y"`` (integer label, only when unobserved) and ``"z"`` ``[batch, z_dim]``.
``make_guide(name, ssvae, hidden=None)`` builds one (``hidden``: units of q(z | x, y)'s layers, by
default the decoder's). The guide contract is in ``guides/__init__.py``; these also have
``classifier(x)`` (the logits of q(y | x), the model's task) and ``encode(x, y)``.
"""
import pyro
import pyro.distributions as dist
from torch import nn
from torch.nn.functional import one_hot, softplus

from guides import build
from ppl_models.checks import check_images
from ppl_models.nets import StridedConvEncoder, mlp
from ppl_models.ssvae import N_CLASSES, check_labels


class SSGuide(nn.Module):
    def __init__(self, features_y, features_z, h_y, h_z, z_dim, hidden, enumerate_y=True, classifier_hidden=0):
        super().__init__()
        self.features_y, self.features_z = features_y, features_z
        self.classify_head = (nn.Sequential(nn.Linear(h_y, classifier_hidden), nn.Softplus(),
                                            nn.Linear(classifier_hidden, N_CLASSES))
                              if classifier_hidden else nn.Linear(h_y, N_CLASSES))
        # q(z | x, y): an MLP on the concatenation [features(x), onehot(y)]. Its first layer is split,
        # W [h; onehot(y)] = W_h h + W_y onehot(y), so the ten enumerated labels share one pass over h.
        self.z_from_x = nn.Linear(h_z, hidden)
        self.z_from_y = nn.Linear(N_CLASSES, hidden, bias=False)
        self.z_head = nn.Sequential(nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.enumerate_y = enumerate_y

    def classifier(self, x):
        """Logits of q(y | x), ``[batch, 10]``."""
        return self.classify_head(self.features_y(x))

    def guide(self, x, y=None):
        check_images(x)  # the guide runs first: bad data gets the model's clear error here
        check_labels(y, len(x))
        pyro.module("ssvae_guide", self)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                infer = {"enumerate": "parallel"} if self.enumerate_y else {}
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)), infer=infer)
            loc, scale = self.z_params(x, y)
            pyro.sample("z", dist.Normal(loc, softplus(scale) + 1e-4).to_event(1))

    def z_params(self, x, y):
        """Location and (pre-softplus) scale of q(z | x, y); ``y`` ``[B]`` or enumerated ``[10, 1]``."""
        h = self.z_from_x(self.features_z(x)) + self.z_from_y(one_hot(y, N_CLASSES).to(x.dtype))
        return self.z_head(h).chunk(2, -1)

    def encode(self, x, y):
        """Mean of q(z | x, y)."""
        return self.z_params(x, y)[0]


def mlp_guide(ssvae, hidden=None, enumerate_y=True, classifier_hidden=0):
    hidden = hidden or ssvae.hidden[-1]
    feats = lambda: nn.Sequential(mlp((784, hidden), activation=nn.Softplus), nn.Softplus())  # noqa: E731
    return SSGuide(feats(), feats(), hidden, hidden, ssvae.z_dim, hidden, enumerate_y, classifier_hidden)


def conv_guide(ssvae, hidden=None, classifier_hidden=0):
    fy, fz = StridedConvEncoder(), StridedConvEncoder()
    return SSGuide(nn.Sequential(fy, nn.Dropout(0.2)), fz, fy.out_features, fz.out_features, ssvae.z_dim,
                   hidden or ssvae.hidden[-1], classifier_hidden=classifier_hidden)


def sample_guide(ssvae, hidden=None, classifier_hidden=0):
    return mlp_guide(ssvae, hidden, enumerate_y=False, classifier_hidden=classifier_hidden)


GUIDES = {"mlp": mlp_guide, "conv": conv_guide, "sample": sample_guide}


def make_guide(name, ssvae, hidden=None, **options):
    return build(GUIDES, name, ssvae, hidden, **options)
