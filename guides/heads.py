"""Variational heads shared by the guides: features h -> a distribution over z.

The contract of a head: a small ``nn.Module`` with
- ``forward(h)``: a Pyro distribution with ``event_shape == [z_dim]`` and batch shape ``h.shape[:-1]``
  (reparameterised, with a density: the guides sample it, the evaluator scores with it);
- ``code(h)``: one representative code per example, ``[..., z_dim]`` (the figures' encoding).
The guides choose one and sample it; the tests build, train, evaluate and encode every registered one.
"""
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.nn.functional import softplus


class DiagNormal(nn.Module):
    """q(z | h) = N(loc(h), diag(scale(h)^2)): the mean-field Gaussian."""

    def __init__(self, h_dim, z_dim):
        super().__init__()
        self.loc, self.scale = nn.Linear(h_dim, z_dim), nn.Linear(h_dim, z_dim)

    def forward(self, h):
        return dist.Normal(self.loc(h), softplus(self.scale(h)) + 1e-4).to_event(1)

    def code(self, h):
        """The mean."""
        return self.loc(h)


class LowRankNormal(nn.Module):
    """q(z | h) = N(loc(h), W(h) W(h)^T + diag(d(h))): a full covariance of rank ``rank`` plus diagonal."""

    def __init__(self, h_dim, z_dim, rank=4):
        super().__init__()
        self.z_dim, self.rank = z_dim, rank
        self.loc, self.diag = nn.Linear(h_dim, z_dim), nn.Linear(h_dim, z_dim)
        self.factor = nn.Linear(h_dim, z_dim * rank)
        nn.init.zeros_(self.factor.weight)  # start as the diagonal guide
        nn.init.zeros_(self.factor.bias)

    def forward(self, h):
        w = self.factor(h).reshape(*h.shape[:-1], self.z_dim, self.rank)
        return dist.LowRankMultivariateNormal(self.loc(h), w, softplus(self.diag(h)) + 1e-4)

    def code(self, h):
        """The mean."""
        return self.loc(h)


class IAF(nn.Module):
    """Inverse autoregressive flow (Kingma et al. 2016): a diagonal Gaussian ``z_0 ~ N(loc(h), scale(h))``
    pushed through ``n_flows`` affine autoregressive maps, each conditioned on the features ``h``.
    Sampling and the density of a sample are both one parallel pass (the IAF direction)."""

    def __init__(self, h_dim, z_dim, n_flows=2, flow_hidden=(320, 320)):
        super().__init__()
        self.base = DiagNormal(h_dim, z_dim)
        self.flows = nn.ModuleList(
            T.conditional_affine_autoregressive(z_dim, h_dim, hidden_dims=list(flow_hidden), stable=True)
            for _ in range(n_flows))
        # alternate the variable order between flows so every coordinate conditions on every other;
        # a buffer, so it moves with the module to the training device (not part of the state dict)
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1), persistent=False)

    def forward(self, h):
        transforms = []
        for i, flow in enumerate(self.flows):
            if i % 2:
                transforms.append(T.Permute(self.reverse))
            transforms.append(flow.condition(h))
        return dist.TransformedDistribution(self.base(h), transforms)

    def code(self, h):
        """The base Gaussian's mean pushed through the flows (the flow's image of the base's mode)."""
        z = self.base.code(h)
        for t in self(h).transforms:
            z = t(z)
        return z
