import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ppl_models.inference.evaluate import evaluate, log_importance_weights, summarize
from ppl_models.linear_gaussian import ExactPosteriorGuide, LinearGaussian, LinearGuide

X = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4], [-2.0, 0.7, 0.1]])


def test_trace_elbo_matches_closed_form():
    model = LinearGaussian()
    guide = LinearGuide(model)
    exact = guide.closed_form_elbo(model, X).sum().item()
    assert exact < model.log_marginal(X).sum().item() - 0.1  # the guide is not exact
    with torch.no_grad():
        est = -Trace_ELBO(num_particles=20000, vectorize_particles=True).loss(model.model, guide.guide, X)
        est_mf = -TraceMeanField_ELBO(num_particles=20000, vectorize_particles=True).loss(
            model.model, guide.guide, X)
    assert est == pytest.approx(exact, abs=0.15)
    assert est_mf == pytest.approx(exact, abs=0.05)


def test_evaluator_elbo_matches_closed_form_per_example():
    model = LinearGaussian()
    guide = LinearGuide(model)
    r = evaluate(model, guide, X, num_samples=20000, khat=False)
    torch.testing.assert_close(torch.as_tensor(r["elbo"]), guide.closed_form_elbo(model, X).detach(),
                               atol=0.1, rtol=0)


def test_exact_posterior_gives_exact_log_likelihood():
    model = LinearGaussian()
    lw = log_importance_weights(model, ExactPosteriorGuide(model), X, num_samples=7, max_rows=6)
    assert lw.shape == (7, 3)
    exact = model.log_marginal(X).detach()
    torch.testing.assert_close(lw, exact.expand(7, 3), atol=1e-4, rtol=0)  # zero-variance weights


def test_importance_sampling_converges_to_exact_and_bounds_elbo():
    model = LinearGaussian()
    guide = LinearGuide(model)
    exact = model.log_marginal(X).detach()
    lw = log_importance_weights(model, guide, X, num_samples=5000, max_rows=3000)  # two chunks
    s = summarize(lw)
    torch.testing.assert_close(s["log_px"], exact, atol=0.05, rtol=0)
    assert (s["log_px"] >= s["elbo"]).all()  # Jensen: IS bound above the ELBO
    assert ((s["ess"] >= 1) & (s["ess"] <= 5000)).all()


def test_plate_and_repeat_particles_agree():
    model = LinearGaussian()
    guide = LinearGuide(model)
    pyro.set_rng_seed(3)
    a = log_importance_weights(model, guide, X, num_samples=50, particles="repeat")
    pyro.set_rng_seed(3)
    b = log_importance_weights(model, guide, X, num_samples=50, particles="plate")
    torch.testing.assert_close(a, b)


def test_evaluate_reports_khat_and_nll():
    model = LinearGaussian()
    guide = LinearGuide(model)
    r = evaluate(model, guide, X, num_samples=500)
    assert r["khat"].shape == (3,) and (r["khat"] < 0.7).all()  # a decent guide on a Gaussian
    assert r["nll"] == pytest.approx(-model.log_marginal(X).mean().item(), abs=0.1)


def test_beta_zero_leaves_only_reconstruction():
    model = LinearGaussian()
    guide = LinearGuide(model)
    with torch.no_grad():
        l0 = Trace_ELBO(num_particles=20000, vectorize_particles=True).loss(model.model, guide.guide, X, beta=0.0)
    m, t2 = X @ guide.A.T + guide.c, guide.log_t.exp() ** 2
    s2 = model.log_s.exp() ** 2
    rec = (-1.5 * torch.log(2 * math.pi * s2) - 0.5 * (((X - m @ model.W.T - model.b) ** 2).sum(-1)
                                                       + (model.W ** 2 * t2).sum()) / s2).sum()
    assert -l0 == pytest.approx(rec.item(), abs=0.15)
