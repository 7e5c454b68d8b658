"""Priors p(z) a story can own, each an ``nn.Module`` whose call ``prior(like)`` returns the
distribution over ``[z_dim]`` (on ``like``'s device and dtype) that the story samples ``z`` from::

    standard  p(z) = N(0, I)
    mog       p(z) = sum_k pi_k N(mu_k, diag sigma_k^2)            K learned components
    vamp      p(z) = 1/K sum_k q(z | u_k)                          the VampPrior (Tomczak & Welling 2018):
                                                                   the guide's posterior at K learned
                                                                   pseudo-inputs u_k
    flow      p(z) = N(0, I) pushed through learned autoregressive flows (Papamakarios et al. 2017):
              log p(z) = log N(f(z); 0, I) + log |det df/dz|, f one MADE pass per layer

The VampPrior couples the prior to the guide's encoder: the model holds the pseudo-inputs, the guide
the encoder, and ``attach(posterior)`` hands the prior the guide's ``posterior(x)`` (a distribution
over ``[x, z_dim]``); only guides whose q(z | x) is a Gaussian family can be mixed this way.
"""
import math

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.distributions import constraints
from torch.nn.functional import softplus

PRIORS = ("standard", "mog", "vamp", "flow")
COMPONENTS = {"mog": 10, "vamp": 500, "flow": 2}  # mixture components, pseudo-inputs, flow layers


class StandardNormal(nn.Module):
    def __init__(self, z_dim):
        super().__init__()
        self.z_dim = z_dim

    def forward(self, like):
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)


class MixtureOfGaussians(nn.Module):
    def __init__(self, z_dim, components=10, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, z_dim, generator=g))
        self.raw_scale = nn.Parameter(torch.zeros(components, z_dim))

    def forward(self, like):
        parts = dist.Normal(self.loc, softplus(self.raw_scale) + 1e-3).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), parts)


class VampPrior(nn.Module):
    def __init__(self, z_dim, x_dim, components=500, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z_dim = z_dim
        self.raw_inputs = nn.Parameter(0.1 * torch.randn(components, x_dim, generator=g) - 2.0)  # pixels near 0.1
        self._posterior = []  # the guide's, attached: a list keeps the guide out of the model's state

    def attach(self, posterior):
        self._posterior[:] = [posterior]
        return self

    def start_at(self, images, margin=0.05):
        """Start the pseudo-inputs at K images ``[K, x_dim]`` (pixels in [0, 1], kept ``margin`` from 0
        and 1, where the sigmoid would not let them move), in place of pixels near 0.1: the components
        then differ from the first step, where at pixels near 0.1 they are all nearly one Gaussian."""
        if images.shape != self.raw_inputs.shape:
            raise ValueError(f"the VampPrior starts at {tuple(self.raw_inputs.shape)} images, got {tuple(images.shape)}")
        with torch.no_grad():
            self.raw_inputs.copy_(torch.logit(images.clamp(margin, 1 - margin)))
        return self

    def pseudo_inputs(self):
        """The K pseudo-inputs u_k, pixels in (0, 1): ``[K, x_dim]``."""
        return torch.sigmoid(self.raw_inputs)

    def forward(self, like):
        if not self._posterior:
            raise ValueError("the VampPrior needs the guide's posterior: prior.attach(guide.posterior)")
        parts = self._posterior[0](self.pseudo_inputs())
        if isinstance(parts, dist.Independent) and isinstance(parts.base_dist, dist.Normal):
            return EqualDiagonalMixture(parts.base_dist.loc, parts.base_dist.scale)
        k = self.raw_inputs.shape[0]
        return dist.MixtureSameFamily(dist.Categorical(logits=self.raw_inputs.new_zeros(k)), parts)


class EqualDiagonalMixture(dist.TorchDistribution):
    """p(z) = 1/K sum_k N(z; loc_k, diag scale_k^2), the VampPrior of a diagonal Gaussian guide.

    The same density as ``MixtureSameFamily`` over ``Normal(loc, scale).to_event(1)``, computed without
    its ``[..., K, D]`` intermediate: the quadratic form of every z against every component is three
    matrix products, sum_d z_d^2 / s_kd^2 - 2 z_d m_kd / s_kd^2 + m_kd^2 / s_kd^2, in float64 (the
    expanded square cancels terms of order 1 / s^2). With 500 pseudo-inputs and z of 50 the broadcast
    was most of a VampPrior step's time."""
    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, loc, scale):
        self.loc, self.scale = loc, scale  # [K, D]
        super().__init__(torch.Size(), loc.shape[-1:], validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        k = torch.randint(self.loc.shape[0], sample_shape, device=self.loc.device)
        return self.loc[k] + self.scale[k] * torch.randn(k.shape + self.loc.shape[-1:], device=self.loc.device,
                                                         dtype=self.loc.dtype)

    def log_prob(self, value):
        loc, scale = self.loc.double(), self.scale.double()
        precision = scale.pow(-2)
        z = value.double().reshape(-1, loc.shape[-1])
        quad = z.pow(2) @ precision.T - 2 * z @ (loc * precision).T + (loc.pow(2) * precision).sum(-1)
        log_norm = -scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        lp = (log_norm - 0.5 * quad).logsumexp(-1) - math.log(loc.shape[0])
        return lp.to(value.dtype).reshape(value.shape[:-1])


class FlowPrior(nn.Module):
    def __init__(self, z_dim, layers=2, hidden=None):
        super().__init__()
        self.z_dim = z_dim
        hidden = [hidden or 4 * z_dim] * 2
        self.flows = nn.ModuleList(T.affine_autoregressive(z_dim, hidden_dims=hidden) for _ in range(layers))
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1))

    def forward(self, like):
        base = dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)
        steps = []
        for i, f in enumerate(self.flows):  # z -> base is one MADE pass per layer (the flows' inverse)
            steps += [f.inv] + ([T.Permute(self.reverse)] if i < len(self.flows) - 1 else [])
        return dist.TransformedDistribution(base, steps[::-1])


def make_prior(kind, z_dim, x_dim, components=None):
    """The prior ``kind`` (one of ``PRIORS``) over ``[z_dim]``; ``components``: the mixture's K, the
    VampPrior's pseudo-inputs or the flow's layers (defaults ``COMPONENTS``)."""
    if kind == "standard":
        return StandardNormal(z_dim)
    k = components or COMPONENTS.get(kind)
    if kind == "mog":
        return MixtureOfGaussians(z_dim, k)
    if kind == "vamp":
        return VampPrior(z_dim, x_dim, k)
    if kind == "flow":
        return FlowPrior(z_dim, k)
    raise ValueError(f"unknown prior {kind!r}; choose one of {PRIORS}")
