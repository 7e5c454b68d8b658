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
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
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
        k = self.raw_inputs.shape[0]
        return dist.MixtureSameFamily(dist.Categorical(logits=self.raw_inputs.new_zeros(k)), parts)


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
