"""Auxiliary deep generative models for semi-supervised learning (Maaløe, Sønderby, Sønderby & Winther
2016): M2 (``ppl_models/ssvae.py``) with an auxiliary latent a, so that the guide's q(y, z | x) =
integral of q(a | x) q(y | a, x) q(z | a, y, x) da is a continuous mixture instead of one factorised
distribution.

ADGM, the generative story for each image n::

    y_n ~ p(y)           = Cat(1/10, ..., 1/10)                         the digit, site "y"
    z_n ~ p(z)           = N(0, I)                                      the style, site "z", [z_dim]
    x_n ~ p(x | y, z)    = Bernoulli(sigmoid(decoder(y_n, z_n)))        site "x", [784]
    a_n ~ p(a | x, y, z) = N(mu(x, y, z), diag sigma^2(x, y, z))        site "a", [a_dim]

a is generated last, after x: the marginal p(x, y, z) is M2's, and p(a | x, y, z) only has to follow
q(a | x) for the bound to be tight.

SDGM, the skip deep generative model: a is a latent of the story, between (y, z) and x::

    y_n ~ p(y), z_n ~ p(z)                                              as above
    a_n ~ p(a | y, z)    = N(mu(y, z), diag sigma^2(y, z))              site "a"
    x_n ~ p(x | a, y, z) = Bernoulli(sigmoid(decoder(a_n, y_n, z_n)))   site "x"

The guides (``guides/adgm.py``) factorise as q(a | x) q(y | a, x) q(z | a, y, x). For an unlabelled
image y is enumerated (``infer={"enumerate": "parallel"}``) and ``TraceEnum_ELBO`` computes, with a
and z reparameterised::

    ELBO_U(x) = E_q(a|x) [ sum_y q(y|a,x) ( E_q(z|a,y,x)[log p(x, y, z, a) - log q(z|a,y,x)]
                                            - log q(y|a,x) ) - log q(a|x) ]

For a labelled one y is observed on both sides. The objective adds alpha E_q(a|x)[-log q(y | a, x)]
on labelled images (``ppl_models.ssvae.M2Objective`` with the guide's ``classifier``), and the label
is predicted by q(y | x) = E_q(a|x)[q(y | a, x)], estimated by Monte Carlo.
"""
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ppl_models.checks import check_images
from ppl_models.nets import concat, mlp
from ppl_models.ssvae import N_CLASSES, cat_label, check_labels

FORMS = ("adgm", "sdgm")


def diag_normal(params):
    """N(loc, diag softplus(s)^2) from the last dimension's halves ``[loc, s]``, over one event dimension."""
    loc, s = params.chunk(2, -1)
    return dist.Normal(loc, softplus(s) + 1e-4).to_event(1)


class AuxiliaryDGM(nn.Module):
    def __init__(self, z_dim=50, a_dim=100, hidden=(500, 500), form="adgm"):
        """``form``: ``adgm`` (a generated after x) or ``sdgm`` (a between (y, z) and x). ``hidden``: the
        hidden layers of every network of the model (the paper: two of 500)."""
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose one of {FORMS}")
        self.z_dim, self.a_dim, self.hidden, self.form = z_dim, a_dim, tuple(hidden), form
        self.skip = form == "sdgm"
        if self.skip:
            self.p_a_net = mlp((N_CLASSES + z_dim, *hidden, 2 * a_dim), nn.Softplus)
            self.decoder = mlp((a_dim + z_dim + N_CLASSES, *hidden, 784), nn.Softplus)
        else:
            self.decoder = mlp((z_dim + N_CLASSES, *hidden, 784), nn.Softplus)
            self.p_a_net = mlp((784 + z_dim + N_CLASSES, *hidden, 2 * a_dim), nn.Softplus)

    def model(self, x, y=None):
        """``x``: ``[batch, 784]`` binary pixels; ``y``: ``[batch]`` labels, or ``None`` (unlabelled)."""
        check_images(x)
        check_labels(y, len(x))
        pyro.module(self.form, self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(N_CLASSES)), obs=y)
            z = pyro.sample("z", self.prior(x))
            if self.skip:  # SDGM: a is part of the story, x is drawn from (a, y, z)
                a = pyro.sample("a", self.p_a(y, z))
                logits = self.decoder(cat_label(concat(a, z), y))
                pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)
            else:          # ADGM: M2's x, then the auxiliary a from (x, y, z)
                logits = self.decoder(cat_label(z, y))
                pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)
                pyro.sample("a", self.p_a(y, z, x))

    def prior(self, like):
        """p(z) = N(0, I) over ``[z_dim]``, on ``like``'s device and dtype."""
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def p_a(self, y, z, x=None):
        """p(a | y, z) (SDGM) or p(a | x, y, z) (ADGM)."""
        h = cat_label(z, y) if x is None else cat_label(concat(x, z), y)
        return diag_normal(self.p_a_net(h))

    def decode(self, z, y, a=None):
        """Mean image for styles ``z`` ``[..., z_dim]`` and labels ``y`` ``[...]``; the SDGM's at ``a``, by
        default the mean of p(a | y, z)."""
        if self.skip:
            a = self.p_a(y, z).mean if a is None else a
            return torch.sigmoid(self.decoder(cat_label(concat(a, z), y)))
        return torch.sigmoid(self.decoder(cat_label(z, y)))

    def generate(self, y, like):
        """Mean images of samples of the story for the labels ``y`` ``[n]``: z ~ p(z) (and for the SDGM
        a ~ p(a | y, z)), then the mean of p(x | ...)."""
        z = self.prior(like).sample((len(y),))
        return self.decode(z, y, self.p_a(y, z).sample() if self.skip else None)
