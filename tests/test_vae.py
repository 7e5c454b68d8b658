import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample

from guides.vae import GUIDES, make_guide
from ppl_models.inference.evaluate import evaluate
from ppl_models.vae import VAE

Z = 4


def traces(model, guide, x, beta=1.0):
    guide_tr = poutine.trace(guide.guide).get_trace(x, beta=beta)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x, beta=beta)
    return model_tr, guide_tr


def latent_sites(tr):
    return {n: s for n, s in tr.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)}


@pytest.mark.parametrize("name", sorted(GUIDES))
@pytest.mark.parametrize("decoder", ["mlp", "conv"])
def test_every_guide_matches_the_model(name, decoder, fake_images):
    x = fake_images[0][:5]
    model = VAE(Z, (32,), decoder)
    guide = make_guide(name, model)
    model_tr, guide_tr = traces(model, guide, x)
    assert set(latent_sites(guide_tr)) == set(latent_sites(model_tr)) == {"z"}
    z = guide_tr.nodes["z"]
    assert z["value"].shape == (5, Z) and torch.isfinite(z["value"]).all()
    assert z["fn"].event_shape == (Z,) and z["fn"].batch_shape == (5,)
    assert z["fn"].support.check(z["value"]).all()
    obs = model_tr.nodes["x"]
    assert obs["is_observed"] and obs["fn"].event_shape == (784,) and obs["fn"].batch_shape == (5,)
    assert obs["fn"].support.check(x).all()
    assert [f.name for f in model_tr.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert [f.name for f in guide_tr.nodes["z"]["cond_indep_stack"]] == ["data"]


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_gradients_reach_every_parameter(name, fake_images):
    x = fake_images[0][:8]
    model = VAE(Z, (32,))
    guide = make_guide(name, model)
    Trace_ELBO().loss_and_grads(model.model, guide.guide, x)
    for module in (model, guide):
        for pname, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in guide.parameters())


def test_gaussian_likelihood_learned_and_fixed_sigma():
    x = torch.rand(6, 784)
    learned, fixed = VAE(Z, (16,), likelihood="gaussian"), VAE(Z, (16,), likelihood="gaussian", sigma=0.2)
    assert learned.log_sigma.requires_grad and not fixed.log_sigma.requires_grad
    guide = make_guide("diag", fixed)
    model_tr, _ = traces(fixed, guide, x)
    fn = model_tr.nodes["x"]["fn"].base_dist
    assert isinstance(fn, dist.Normal) and torch.allclose(fn.scale, torch.tensor(0.2))
    assert ((fn.loc > 0) & (fn.loc < 1)).all()


def test_beta_scales_kl_terms_in_model_and_guide(fake_images):
    x = fake_images[0][:4]
    model = VAE(Z, (16,))
    guide = make_guide("diag", model)
    model_tr, guide_tr = traces(model, guide, x, beta=0.25)
    assert model_tr.nodes["z"]["scale"] == 0.25 and guide_tr.nodes["z"]["scale"] == 0.25
    assert model_tr.nodes["x"]["scale"] == 1.0
    with pytest.raises(ValueError, match="beta"):
        traces(model, guide, x, beta=-1.0)


def test_delta_guide_with_beta_zero_is_an_autoencoder(fake_images):
    """With a point-mass guide and beta = 0 the loss is exactly the reconstruction error."""
    x = fake_images[0][:4]
    model = VAE(Z, (16,))
    guide = make_guide("delta", model)
    loss = Trace_ELBO().loss(model.model, guide.guide, x, beta=0.0)
    with torch.no_grad():
        logits = model.decoder(guide.encode(x))
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    assert loss == pytest.approx(bce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="Delta"):
        evaluate(model, guide, x, num_samples=2)


@pytest.mark.parametrize("bad", [torch.rand(3, 28, 28), torch.rand(3, 783), torch.rand(784)])
def test_wrong_image_shape_is_a_clear_error(bad):
    model = VAE(Z, (16,))
    with pytest.raises(ValueError, match=r"shape \[batch, 784\]"):
        model.model(bad)


def test_nan_pixels_are_a_clear_error():
    model = VAE(Z, (16,))
    guide = make_guide("diag", model)
    x = torch.rand(3, 784).bernoulli()
    x[1, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate(model, guide, x, num_samples=2)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown guide 'gauss'"):
        make_guide("gauss", VAE(Z))
    with pytest.raises(ValueError, match="unknown decoder"):
        VAE(Z, decoder="rnn")
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAE(Z, likelihood="poisson")


def test_elbo_is_deterministic_under_a_seed(fake_images):
    x = fake_images[0][:8]
    model = VAE(Z, (16,))
    guide = make_guide("iaf", model)
    pyro.set_rng_seed(5)
    a = Trace_ELBO().loss(model.model, guide.guide, x)
    pyro.set_rng_seed(5)
    assert Trace_ELBO().loss(model.model, guide.guide, x) == a
