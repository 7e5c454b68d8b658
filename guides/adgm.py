"""Guides for ``ppl_models.adgm.AuxiliaryDGM`` (ADGM and SDGM): q(a | x) q(y | a, x) q(z | a, y, x).

    mlp     the paper's form: an MLP of x for each of the three factors, a and (for z) y joined to
            its features
    conv    the same with convolutional features of x (``StridedConvEncoder``, as M2's ``conv`` guide),
            dropout before the classifier's head

Sites: ``"a"`` ``[batch, a_dim]``, ``"y"`` (integer label, enumerated, only when unobserved) and
``"z"`` ``[batch, z_dim]``. ``make_guide(name, model, hidden=None)`` builds one (``hidden``: units
of the heads' layers, by default the model's last). The guide contract is in ``guides/__init__.py``;
these also have ``classifier(x)`` (the logits of q(y | x)) and ``encode(x, y)``.
"""
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import one_hot

from guides import build
from ppl_models.adgm import diag_normal
from ppl_models.checks import check_images
from ppl_models.nets import StridedConvEncoder, concat, mlp
from ppl_models.ssvae import N_CLASSES, check_labels


class AuxGuide(nn.Module):
    def __init__(self, features_a, features_y, features_z, h_a, h_y, h_z, a_dim, z_dim, hidden, predict_samples=10):
        """``features_*``: networks of x (outputs of ``h_*`` units) for q(a | x), q(y | a, x), q(z | a, y, x).
        ``predict_samples``: draws of a ~ q(a | x) averaged by ``classifier`` in evaluation mode."""
        super().__init__()
        self.features_a, self.features_y, self.features_z = features_a, features_y, features_z
        self.a_head = nn.Linear(h_a, 2 * a_dim)
        self.y_head = nn.Sequential(nn.Linear(h_y + a_dim, hidden), nn.Softplus(), nn.Linear(hidden, N_CLASSES))
        # q(z | a, y, x) on [features(x), a, onehot(y)], its first layer split so that the ten
        # enumerated labels share one pass over [features(x), a]
        self.z_from_xa = nn.Linear(h_z + a_dim, hidden)
        self.z_from_y = nn.Linear(N_CLASSES, hidden, bias=False)
        self.z_head = nn.Sequential(nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.predict_samples = predict_samples

    def guide(self, x, y=None):
        check_images(x)  # the guide runs first: bad data gets the model's clear error here
        check_labels(y, len(x))
        pyro.module("adgm_guide", self)
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", self.q_a(x))
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.y_logits(x, a)), infer={"enumerate": "parallel"})
            pyro.sample("z", diag_normal(self.z_params(x, a, y)))

    def q_a(self, x):
        return diag_normal(self.a_head(self.features_a(x)))

    def y_logits(self, x, a):
        """Logits of q(y | a, x), ``[..., batch, 10]``."""
        return self.y_head(concat(self.features_y(x), a))

    def z_params(self, x, a, y):
        h = self.z_from_xa(concat(self.features_z(x), a)) + self.z_from_y(one_hot(y, N_CLASSES).to(x.dtype))
        return self.z_head(h)

    def classifier(self, x):
        """Logits of q(y | x) = E_q(a|x)[q(y | a, x)]: from one a ~ q(a | x) while training (the
        objective's classification term, reparameterised), the log of the mean of q(y | a_s, x) over
        ``predict_samples`` draws in evaluation mode (what the test error reads)."""
        qa = self.q_a(x)
        if self.training:
            return self.y_logits(x, qa.rsample())
        a = qa.sample((self.predict_samples,))                                  # [S, B, a_dim]
        logp = self.y_logits(x, a).log_softmax(-1)                              # [S, B, 10]
        return logp.logsumexp(0) - math.log(self.predict_samples)

    def encode(self, x, y):
        """Mean of q(z | a, y, x) at the mean of q(a | x)."""
        with torch.no_grad():
            a = self.q_a(x).mean
        return self.z_params(x, a, y).chunk(2, -1)[0]


def mlp_guide(model, hidden=None, predict_samples=10):
    hidden = hidden or model.hidden[-1]
    feats = lambda: nn.Sequential(mlp((784, *model.hidden), activation=nn.Softplus), nn.Softplus())  # noqa: E731
    h = model.hidden[-1]
    return AuxGuide(feats(), feats(), feats(), h, h, h, model.a_dim, model.z_dim, hidden, predict_samples)


def conv_guide(model, hidden=None, predict_samples=10):
    fa, fy, fz = StridedConvEncoder(), StridedConvEncoder(), StridedConvEncoder()
    return AuxGuide(fa, nn.Sequential(fy, nn.Dropout(0.2)), fz, fa.out_features, fy.out_features, fz.out_features,
                    model.a_dim, model.z_dim, hidden or model.hidden[-1], predict_samples)


GUIDES = {"mlp": mlp_guide, "conv": conv_guide}


def make_guide(name, model, hidden=None, **options):
    return build(GUIDES, name, model, hidden, **options)
