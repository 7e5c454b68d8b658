"""The semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), model "M2".

Generative story, for each image n in the batch::

    y_n ~ p(y)        = Cat(1/10, ..., 1/10)               the digit, site "y" (an integer 0..9)
    z_n ~ p(z)        = N(0, I)                            the style, site "z", shape [z_dim]
    x_n ~ p(x | y, z) = Bernoulli(sigmoid(decoder(y_n, z_n)))   site "x", shape [784]

``y`` is observed for labelled images. For unlabelled ones the guide marks it
``infer={"enumerate": "parallel"}``, so ``TraceEnum_ELBO`` sums it out exactly:

    ELBO_U(x) = sum_y q(y|x) [ELBO_L(x, y)] + H[q(y|x)]

The objective of the paper adds ``alpha * log q(y|x)`` on labelled images, so that the classifier
also learns from the labels directly; :class:`M2Objective` adds that term to the ELBO.
The guides are in ``guides/ssvae.py``.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch import nn
from torch.nn.functional import cross_entropy, one_hot

from ppl_models.checks import check_images, validating
from ppl_models.nets import mlp

N_CLASSES = 10


class SSVAE(nn.Module):
    def __init__(self, z_dim=50, hidden=(500,)):
        super().__init__()
        self.z_dim, self.hidden = z_dim, tuple(hidden)
        self.decoder = mlp((z_dim + N_CLASSES, *hidden, 784), activation=nn.Softplus)

    def model(self, x, y=None):
        """``x``: ``[batch, 784]`` binary pixels; ``y``: ``[batch]`` labels, or ``None`` (unlabelled)."""
        check_images(x)
        check_labels(y, len(x))
        pyro.module("ssvae", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(N_CLASSES)), obs=y)
            z = pyro.sample("z", self.prior(x))
            logits = self.decoder(cat_label(z, y))
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def prior(self, like):
        """p(z) = N(0, I) over ``[z_dim]``, on ``like``'s device and dtype."""
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def decode(self, z, y):
        """Mean image for styles ``z`` ``[..., z_dim]`` and labels ``y`` ``[...]``."""
        return torch.sigmoid(self.decoder(cat_label(z, y)))

    def generate(self, y, like):
        """Mean images of samples of the story for the labels ``y`` ``[n]``: z ~ p(z), then the mean of p(x | y, z)."""
        return self.decode(self.prior(like).sample((len(y),)), y)


def cat_label(h, y):
    """Concatenate features ``h`` ``[..., d]`` with the one-hot label ``y`` ``[...]``, broadcasting the
    batch dimensions (an enumerated ``y`` has shape ``[10, 1]`` against ``h`` of shape ``[B, d]``)."""
    y = one_hot(y, N_CLASSES).to(h.dtype)
    shape = torch.broadcast_shapes(h.shape[:-1], y.shape[:-1])
    return torch.cat([h.expand(*shape, h.shape[-1]), y.expand(*shape, N_CLASSES)], -1)


def check_labels(y, n):
    if y is None:
        return
    if not torch.is_tensor(y) or y.shape != (n,) or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape [{n}], got "
                         f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}"
                         f"{' ' + str(y.dtype) if torch.is_tensor(y) else ''}")
    if validating() and len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValueError(f"labels must lie in 0..{N_CLASSES - 1}, got values in {y.min().item()}..{y.max().item()}")


class M2Objective:
    """The paper's objective: -ELBO (label summed out by ``TraceEnum_ELBO`` where unobserved) plus
    ``alpha * cross-entropy of q(y|x)`` on labelled batches. Same interface as a Pyro ELBO.
    Labelled batches have no discrete latent left, so they use ``Trace_ELBO``."""

    def __init__(self, classifier, alpha, elbo=None, labeled_elbo=None):
        self.classifier, self.alpha = classifier, alpha
        self.elbo = elbo or TraceEnum_ELBO(max_plate_nesting=1)
        self.labeled_elbo = labeled_elbo or Trace_ELBO()

    def _elbo(self, y):
        return self.elbo if y is None else self.labeled_elbo

    @staticmethod
    def _args(x, y):
        return (x,) if y is None else (x, y)  # no None among the arguments: Pyro's JIT ELBOs cannot trace it

    def loss_and_grads(self, model, guide, x, y=None, **kwargs):
        """The ELBO's loss (a float), plus on labelled batches the classification term as a tensor
        left on the device: reading it here would cost a second host-device sync per step."""
        loss = self._elbo(y).loss_and_grads(model, guide, *self._args(x, y), **kwargs)
        if y is not None and self.alpha > 0:
            aux = self.alpha * cross_entropy(self.classifier(x), y, reduction="sum")
            aux.backward()
            return aux.detach() + loss
        return loss

    def loss(self, model, guide, x, y=None, **kwargs):
        with torch.no_grad():
            loss = self._elbo(y).loss(model, guide, *self._args(x, y), **kwargs)
            if y is not None and self.alpha > 0:
                loss += self.alpha * cross_entropy(self.classifier(x), y, reduction="sum").item()
        return loss
