"""The conditional VAE of Sohn, Lee & Yan (2015) for structured output prediction.

Given an input ``x`` (the observed quadrants of a digit, or a digit label), predict an output ``y``
(the missing quadrants, or a whole image). Generative story, for each example n in the batch::

    x~_n = x_n with its missing pixels filled in by the baseline's prediction      (deterministic)
    z_n ~ p(z | x)    = N(mu_p(x~_n), sigma_p(x~_n))          the conditional prior, site "z"
    y_n ~ p(y | x, z) = prod_{i missing} Bernoulli(y_ni | sigmoid(g(x~_n, z_n))_i)     site "y"
        (``generation_input="z"``: p(y | z) = Bernoulli(sigmoid(g(z_n))), as in Pyro's example,
         where x reaches y through z alone; ``examples/cvae.py`` completes quadrants with it)

Only the missing pixels are scored (``.mask(missing)``): the observed ones are given, not predicted.
The quantity of interest is the conditional log-likelihood

    log p(y | x) = log E_{p(z|x)} [p(y | x, z)] >= E_q [log p(y | x, z)] - KL(q(z | x, y) || p(z | x)),

estimated by importance sampling with the guide as proposal (``ppl_models.inference.evaluate``).
:class:`Baseline` is the deterministic network of the paper, p(y | x) = Bernoulli(f(x)) with no
latent: its negative log-likelihood is the masked binary cross-entropy. Its frozen prediction
f(x) is the x~ above. Guides (``recognition``, ``gsnn``) are in ``guides/cvae.py``; the paper's
hybrid objective is :class:`Hybrid`.

Data protocol (as Pyro's CVAE example): a 28x28 digit in four quadrants; with 1 quadrant given the
bottom-left one is observed, with 2 the left half, with 3 all but the bottom-right. The input
``x`` holds the observed pixels and -1 where a pixel is missing.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn
from torch.nn.functional import softplus

from ppl_models.checks import check_images, validating
from ppl_models.nets import concat, mlp

MISSING = -1.0


def missing_mask(quadrants):
    """Boolean ``[784]``: True for the pixels to predict when ``quadrants`` (1, 2 or 3) are given."""
    if quadrants not in (1, 2, 3):
        raise ValueError(f"the number of observed quadrants must be 1, 2 or 3, got {quadrants!r}")
    observed = torch.zeros(28, 28, dtype=torch.bool)
    observed[14:, :14] = True          # 1: bottom-left
    if quadrants >= 2:
        observed[:, :14] = True        # 2: left half
    if quadrants == 3:
        observed[:14, :] = True        # 3: all but bottom-right
    return ~observed.reshape(784)


def observe(images, missing):
    """The input ``x``: the images with missing pixels set to -1."""
    return images.masked_fill(missing, MISSING)


def _likelihood(logits, missing):
    # grey targets (Pyro's protocol) are allowed: the Bernoulli "log-likelihood" is then minus the BCE
    d = dist.Bernoulli(logits=logits, validate_args=False)
    return (d if missing is None else d.mask(missing)).to_event(1)


def _check(x, y, missing, x_dim):
    if x.dim() != 2 or x.shape[-1] != x_dim:
        raise ValueError(f"x must have shape [batch, {x_dim}], got {tuple(x.shape)}")
    if validating() and torch.isnan(x).any():
        raise ValueError("x contains NaN")
    if y is not None:
        check_images(y)
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same batch size, got {len(x)} and {len(y)}")
    if missing is not None and (missing.dtype != torch.bool or missing.shape[-1] != 784 or missing.dim() > 2
                                or (missing.dim() == 2 and len(missing) != len(x))):
        raise ValueError(f"missing must be a boolean mask [784] or [batch={len(x)}, 784], "
                         f"got {missing.dtype} {tuple(missing.shape)}")


class Baseline(nn.Module):
    """The deterministic NN: p(y | x) = prod_{i missing} Bernoulli(y_i | sigmoid(f(x))_i), no latent.
    Trained by the same SVI loop with an empty guide (the ELBO is then the log-likelihood)."""

    def __init__(self, x_dim=784, hidden=(500, 500)):
        super().__init__()
        self.x_dim = x_dim
        self.net = mlp((x_dim, *hidden, 784))

    def model(self, x, y=None, missing=None):
        _check(x, y, missing, self.x_dim)
        pyro.module("baseline", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", _likelihood(self.net(x), missing), obs=y)

    def guide(self, x, y=None, missing=None):
        pass

    def predict(self, x):
        return torch.sigmoid(self.net(x))


GENERATION_INPUTS = ("xz", "z")  # what the generation network g sees: x~ and z (Sohn et al.), or z alone


class CVAE(nn.Module):
    def __init__(self, x_dim=784, z_dim=200, hidden=(500, 500), baseline=None, generation_input="xz"):
        super().__init__()
        if generation_input not in GENERATION_INPUTS:
            raise ValueError(f"unknown generation input {generation_input!r}; choose one of {GENERATION_INPUTS}")
        self.x_dim, self.z_dim, self.hidden = x_dim, z_dim, tuple(hidden)
        self.generation_input = generation_input
        self.baseline = baseline
        if baseline is not None:
            baseline.requires_grad_(False)  # a fixed, pre-trained feature of x
        self.prior_net = mlp((x_dim, *hidden, 2 * z_dim))
        self.generation_net = mlp((x_dim * (generation_input == "xz") + z_dim, *hidden[::-1], 784))

    def train(self, mode=True):
        super().train(mode)
        if self.baseline is not None:
            self.baseline.train(False)  # frozen: always in evaluation mode
        return self

    def fill(self, x, missing):
        """x~: the missing pixels of x replaced by the baseline's prediction (x itself without one)."""
        if self.baseline is None or missing is None:
            return x
        with torch.no_grad():
            return torch.where(missing, self.baseline.predict(x), x)

    def prior(self, x, missing=None):
        """The conditional prior p(z | x) = N(mu_p(x~), sigma_p(x~)), a distribution over ``[batch, z_dim]``."""
        return self._prior(self.fill(x, missing))

    def generate(self, x_filled, z):
        """The logits of p(y | x, z): g(x~, z), or g(z)."""
        return self.generation_net(concat(x_filled, z) if self.generation_input == "xz" else z)

    def _prior(self, x_filled):
        loc, scale = self.prior_net(x_filled).chunk(2, -1)
        return dist.Normal(loc, softplus(scale) + 1e-4).to_event(1)

    def model(self, x, y=None, missing=None):
        """``x``: ``[batch, x_dim]`` input; ``y``: ``[batch, 784]`` target image (only ``missing``
        pixels, ``[batch, 784]`` boolean, are scored; all when ``None``)."""
        _check(x, y, missing, self.x_dim)
        pyro.module("cvae_prior", self.prior_net)  # the frozen baseline is not a parameter
        pyro.module("cvae_generation", self.generation_net)
        x_filled = self.fill(x, missing)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self._prior(x_filled))
            logits = self.generate(x_filled, z)
            return pyro.sample("y", _likelihood(logits, missing), obs=y)

    def predict(self, x, missing=None, num_samples=1):
        """Probabilities of y for ``num_samples`` draws z ~ p(z | x): ``[num_samples, batch, 784]``."""
        with torch.no_grad():
            x_filled = self.fill(x, missing)
            z = self._prior(x_filled).sample((num_samples,))
            return torch.sigmoid(self.generate(x_filled, z))


class Hybrid:
    """Sohn et al.'s hybrid objective, ``alpha * ELBO_CVAE + (1 - alpha) * ELBO_GSNN``: the first
    with the recognition guide q(z | x, y), the second with the conditional prior as its own guide
    (which trains the prior network on the prediction task it faces at test time).
    Same interface as a Pyro ELBO; ``guide`` is the recognition guide's ``.guide``."""

    def __init__(self, alpha, gsnn_guide, elbo=None):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"hybrid weight must lie in [0, 1], got {alpha}")
        self.alpha, self.gsnn_guide = alpha, gsnn_guide
        self.elbo = elbo or Trace_ELBO()

    def _parts(self, model, guide):
        yield self.alpha, model, guide
        yield 1.0 - self.alpha, model, self.gsnn_guide

    def loss_and_grads(self, model, guide, *args, **kwargs):
        total = 0.0
        for w, m, g in self._parts(model, guide):
            if w > 0:
                total += self.elbo.loss_and_grads(poutine.scale(m, w), poutine.scale(g, w), *args, **kwargs)
        return total

    def loss(self, model, guide, *args, **kwargs):
        return sum(self.elbo.loss(poutine.scale(m, w), poutine.scale(g, w), *args, **kwargs)
                   for w, m, g in self._parts(model, guide) if w > 0)
