"""Per-example refinement and the inference gaps, checked where everything is exact: the
linear-Gaussian model, whose posterior is Gaussian with a closed form."""
import pytest
import torch
from torch import nn

import guides.vae
from guides.heads import DiagNormal, FullCovNormal
from guides.vae import EncoderGuide
from ppl_models.inference.evaluate import evaluate
from ppl_models.inference.refine import fixed_noise_elbo, inference_gaps, refine
from ppl_models.linear_gaussian import LinearGaussian
from ppl_models.vae import VAE

X = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4], [-2.0, 0.7, 0.1], [0.0, 0.5, -1.5]])


def linear_guide(head):
    return EncoderGuide(nn.Identity(), head(3, 2), x_dim=None)


def test_refined_full_covariance_reaches_the_exact_log_likelihood():
    model = LinearGaussian()
    gaps = inference_gaps(model, linear_guide(FullCovNormal), X, elbo_samples=5000, is_samples=5000,
                          max_steps=4000, lr=0.05, particles=20, tol=1e-5)
    exact = model.log_marginal(X).mean().item()
    assert gaps["elbo_refined"] == pytest.approx(exact, abs=0.01)  # q* is the posterior: L[q*] = log p(x)
    assert gaps["approximation_gap"] == pytest.approx(0.0, abs=0.01)
    assert gaps["log_px"] == pytest.approx(exact, abs=0.01)
    assert gaps["amortisation_gap"] > 0.1  # the untrained encoder is far from q*


def test_refined_diagonal_reaches_the_optimal_mean_field_elbo():
    """For a Gaussian posterior N(m, S) the best factorised Gaussian has mean m and variances
    1 / Lambda_ii (Lambda = S^-1): its ELBO is log p(x) - (log det S + sum_i log Lambda_ii) / 2."""
    model = LinearGaussian()
    refined, info = refine(model, linear_guide(DiagNormal), X, max_steps=4000, lr=0.05, particles=20, tol=1e-5)
    _, cov = model.posterior(X)
    prec = torch.linalg.inv(cov)
    optimum = model.log_marginal(X) - 0.5 * (torch.logdet(cov) + prec.diagonal().log().sum())
    got = evaluate(model, refined, X, num_samples=20000, batch_size=len(X), khat=False, particles="plate")
    torch.testing.assert_close(torch.as_tensor(got["elbo"]), optimum.detach(), atol=0.02, rtol=0)
    assert info["improved"] == 1.0 and info["steps"] < 4000  # converged before the cap


def test_refinement_never_lowers_the_fixed_noise_elbo():
    model = LinearGaussian()
    guide = linear_guide(DiagNormal)
    for lr in (0.05, 30.0):  # a sane step, and one that throws some examples far off
        refined, info = refine(model, guide, X, max_steps=3, check_every=1, lr=lr, select_samples=50, seed=4)
        before = fixed_noise_elbo(model, guide, X, 50, seed=4)
        after = fixed_noise_elbo(model, refined, X, 50, seed=4)
        assert (after >= before - 1e-5).all()
    assert info["improved"] < 1.0  # the wild step lost on some examples, which kept their amortised q


@pytest.mark.parametrize("name", sorted(set(guides.vae.GUIDES) - {"delta"}))
def test_every_vae_guide_refines(name):
    model = VAE(4, (16,))
    guide = guides.vae.make_guide(name, model)
    x = torch.bernoulli(torch.rand(5, 784))
    gaps = inference_gaps(model, guide, x, elbo_samples=20, is_samples=20, max_steps=30, check_every=10)
    assert gaps["images"] == 5 and gaps["steps"] >= 10
    assert gaps["elbo_refined"] >= gaps["elbo_amortised"] - 1.0  # 20 particles: noisy, but not worse
    assert all(v == v for v in gaps.values())  # no NaN


def test_a_point_mass_guide_has_no_gaps_to_measure():
    model = VAE(4, (16,))
    with pytest.raises(ValueError, match="Delta"):
        inference_gaps(model, guides.vae.make_guide("delta", model), torch.bernoulli(torch.rand(3, 784)),
                       elbo_samples=5, is_samples=5, max_steps=5)
