"""Variational heads shared by the guides: features h -> a distribution over z.

The contract of a head: a small ``nn.Module`` with
- ``params(h)``: the per-example parameters of q(z | x) within the head's family, a tuple of tensors
  whose first dimensions are ``h.shape[:-1]`` (unconstrained: any value is a member of the family);
- ``family(*params)``: the distribution those parameters pick, with ``event_shape == [z_dim]``,
  reparameterised and with a density (the guides sample it, the evaluator scores with it);
- ``forward(h) = family(*params(h))``, the amortised q(z | x);
- ``code(h)``: one representative code per example, ``[..., z_dim]`` (the figures' encoding).
``params``/``family`` let ``ppl_models.inference.refine`` optimise each example's parameters on their own (the
amortisation gap). The tests build, train, evaluate, encode and refine every registered head.
"""
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.nn.functional import softplus

MIN_SCALE = 1e-4


class DiagNormal(nn.Module):
    """q(z | h) = N(loc(h), diag(scale(h)^2)): the mean-field Gaussian."""

    def __init__(self, h_dim, z_dim):
        super().__init__()
        self.loc, self.scale = nn.Linear(h_dim, z_dim), nn.Linear(h_dim, z_dim)

    def params(self, h):
        return self.loc(h), self.scale(h)

    def family(self, loc, raw_scale):
        return dist.Normal(loc, softplus(raw_scale) + MIN_SCALE).to_event(1)

    def forward(self, h):
        return self.family(*self.params(h))

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

    def params(self, h):
        return self.loc(h), self.factor(h).reshape(*h.shape[:-1], self.z_dim, self.rank), self.diag(h)

    def family(self, loc, factor, raw_diag):
        return dist.LowRankMultivariateNormal(loc, factor, softplus(raw_diag) + MIN_SCALE)

    def forward(self, h):
        return self.family(*self.params(h))

    def code(self, h):
        """The mean."""
        return self.loc(h)


class FullCovNormal(nn.Module):
    """q(z | h) = N(loc(h), L(h) L(h)^T), L lower triangular with a positive diagonal: every Gaussian."""

    def __init__(self, h_dim, z_dim):
        super().__init__()
        self.z_dim = z_dim
        self.loc = nn.Linear(h_dim, z_dim)
        self.tril = nn.Linear(h_dim, z_dim * z_dim)
        nn.init.zeros_(self.tril.weight)  # start as a diagonal Gaussian of scale softplus(0)
        nn.init.zeros_(self.tril.bias)
        self.register_buffer("lower", torch.tril(torch.ones(z_dim, z_dim), -1), persistent=False)

    def params(self, h):
        return self.loc(h), self.tril(h).reshape(*h.shape[:-1], self.z_dim, self.z_dim)

    def family(self, loc, raw_tril):
        scale_tril = raw_tril * self.lower + torch.diag_embed(softplus(raw_tril.diagonal(0, -2, -1)) + MIN_SCALE)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def forward(self, h):
        return self.family(*self.params(h))

    def code(self, h):
        """The mean."""
        return self.loc(h)


class Flow(nn.Module):
    """A diagonal Gaussian ``z_0 ~ N(loc(h), scale(h))`` pushed through ``n_flows`` autoregressive maps,
    each conditioned on the features ``h`` (its context), alternating the order of the coordinates.
    ``kind="affine"``: the inverse autoregressive flow (Kingma et al. 2016); ``kind="spline"``:
    monotone rational-quadratic splines (Durkan et al. 2019) in the same, inverse autoregressive,
    direction. Sampling and the density of a sample are both one parallel pass.

    Per-example parameters (``params``): the base Gaussian's and the context the flows are
    conditioned on; the flows' own weights are shared. So q* of a flow guide (``ppl_models.inference.refine``)
    is the best base and context for each example, with the flow networks as trained."""

    def __init__(self, h_dim, z_dim, n_flows=2, flow_hidden=(320, 320), kind="affine", count_bins=8):
        super().__init__()
        self.base = DiagNormal(h_dim, z_dim)
        if kind == "affine":
            make = lambda: T.conditional_affine_autoregressive(  # noqa: E731
                z_dim, h_dim, hidden_dims=list(flow_hidden), stable=True)
        elif kind == "spline":
            make = lambda: T.conditional_spline_autoregressive(  # noqa: E731
                z_dim, h_dim, hidden_dims=list(flow_hidden), count_bins=count_bins)
        else:
            raise ValueError(f"unknown flow {kind!r}; choose affine or spline")
        self.flows = nn.ModuleList(make() for _ in range(n_flows))
        # the reversed order between flows (so every coordinate conditions on every other); a buffer,
        # so it moves with the module to the training device (not part of the state dict)
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1), persistent=False)

    def params(self, h):
        return (*self.base.params(h), h)

    def transforms(self, context):
        out = []
        for i, flow in enumerate(self.flows):
            if i % 2:
                out.append(T.Permute(self.reverse))
            out.append(flow.condition(context))
        return out

    def family(self, loc, raw_scale, context):
        return dist.TransformedDistribution(self.base.family(loc, raw_scale), self.transforms(context))

    def forward(self, h):
        return self.family(*self.params(h))

    def code(self, h):
        """The base Gaussian's mean pushed through the flows (the flow's image of the base's mode)."""
        z = self.base.code(h)
        for t in self.transforms(h):
            z = t(z)
        return z


def IAF(h_dim, z_dim, n_flows=2, flow_hidden=(320, 320)):
    """Inverse autoregressive flow (Kingma et al. 2016): :class:`Flow` with affine maps."""
    return Flow(h_dim, z_dim, n_flows, flow_hidden, kind="affine")
