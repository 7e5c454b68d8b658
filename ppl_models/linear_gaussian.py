"""The linear-Gaussian model: the one VAE-shaped model whose marginal likelihood, posterior and ELBO
are known in closed form. The tests check the evaluator and the ELBO estimators against it, and the
first notebook of the teaching path (``examples/notebooks/``) measures the ELBO's gaps on it exactly.

    p(z) = N(0, I_k),  p(x | z) = N(W z + b, s^2 I_d)  =>  p(x) = N(b, W W^T + s^2 I_d)
    p(z | x) = N(m(x), S),  S = (I + W^T W / s^2)^-1,  m(x) = S W^T (x - b) / s^2
    q(z | x) = N(A x + c, diag(t^2))      (LinearGuide: amortised, mean-field)
"""
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.anneal import kl_scale


class LinearGaussian(nn.Module):
    def __init__(self, d=3, k=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(d, k, generator=g))
        self.b = nn.Parameter(torch.randn(d, generator=g))
        self.log_s = nn.Parameter(torch.tensor(math.log(0.7)))
        self.k = k

    def model(self, x, y=None, beta=1.0):
        pyro.module("lg", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.k), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.log_s.exp()).to_event(1), obs=x)

    def log_marginal(self, x):
        cov = self.W @ self.W.T + self.log_s.exp() ** 2 * torch.eye(len(self.b))
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        """Exact p(z | x) = N(m, S): S = (I + W^T W / s^2)^-1, m = S W^T (x - b) / s^2."""
        s2 = self.log_s.exp() ** 2
        prec = torch.eye(self.k) + self.W.T @ self.W / s2
        cov = torch.linalg.inv(prec)
        mean = (x - self.b) @ self.W @ cov.T / s2
        return mean, cov


def posterior_map(model):
    """The exact posterior as a linear map of x: p(z | x) = N(A x + c, S), with A = S W^T / s^2, c = -A b."""
    with torch.no_grad():
        s2 = model.log_s.exp() ** 2
        cov = torch.linalg.inv(torch.eye(model.k) + model.W.T @ model.W / s2)
        A = cov @ model.W.T / s2
        return A, -A @ model.b, cov


class LinearGuide(nn.Module):
    """Near the exact posterior of ``model`` (perturbed, mean-field, a little too wide)."""

    def __init__(self, model, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        A, c, cov = posterior_map(model)
        self.A = nn.Parameter(A + 0.1 * torch.randn(A.shape, generator=g))
        self.c = nn.Parameter(c + 0.1 * torch.randn(model.k, generator=g))
        self.log_t = nn.Parameter(0.5 * cov.diagonal().log() + math.log(1.3))

    def guide(self, x, y=None, beta=1.0):
        pyro.module("lg_guide", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                pyro.sample("z", dist.Normal(x @ self.A.T + self.c, self.log_t.exp()).to_event(1))

    def closed_form_elbo(self, model, x):
        """E_q[log p(x|z)] - KL(q || p), per example."""
        m, t2 = x @ self.A.T + self.c, self.log_t.exp() ** 2
        s2 = model.log_s.exp() ** 2
        resid = x - (m @ model.W.T + model.b)
        d = x.shape[1]
        # E||x - W z - b||^2 = ||x - W m - b||^2 + tr(W diag(t2) W^T)
        expected_sq = (resid ** 2).sum(-1) + (model.W ** 2 * t2).sum()
        rec = -0.5 * d * torch.log(2 * math.pi * s2) - 0.5 * expected_sq / s2
        kl = 0.5 * (t2.sum() + (m ** 2).sum(-1) - len(t2) - t2.log().sum())
        return rec - kl


class ExactPosteriorGuide(nn.Module):
    """q(z | x) = p(z | x), full covariance: every importance weight equals p(x)."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def guide(self, x, y=None, beta=1.0):
        mean, cov = self.m.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, cov))


class LinearFullGuide(nn.Module):
    """q(z | x) = N(A x + c, L L^T), full covariance, with parameters of its own. ``exact=True`` starts
    it at the exact posterior of ``model`` (A = S W^T / s^2, c = -A b, L = chol(S)), where every
    importance weight equals p(x) and the path derivative of log w is zero; ``exact=False`` perturbs the
    mean map and widens the covariance by 1.3."""

    def __init__(self, model, exact=True, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        A, c, cov = posterior_map(model)
        noise = 0.0 if exact else 0.1
        self.A = nn.Parameter(A + noise * torch.randn(A.shape, generator=g))
        self.c = nn.Parameter(c + noise * torch.randn(model.k, generator=g))
        self.L = nn.Parameter(torch.linalg.cholesky(cov) * (1.0 if exact else 1.3))  # off: a little too wide

    def guide(self, x, y=None, beta=1.0):
        pyro.module("lg_full_guide", self)
        with pyro.plate("data", x.shape[0]):
            with kl_scale(beta):
                pyro.sample("z", dist.MultivariateNormal(x @ self.A.T + self.c, scale_tril=self.L.tril()))
