"""The sequence VAE: the story's sites and shapes, the Gaussian form of the squared error, guides."""
import math

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.seqvae import GUIDES, make_guide
from ppl_models.seqvae import SeqVAE

T, Z, H = 12, 3, 8


@pytest.mark.parametrize("name", GUIDES)
def test_guide_traces_against_the_model_and_gradients_flow(name):
    x = torch.rand(5, T, 2) * 27
    model = SeqVAE(Z, H, T)
    guide = make_guide(name, model)
    guide_tr = poutine.trace(guide.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x)
    assert guide_tr.nodes["z"]["value"].shape == (5, Z)
    assert torch.equal(model_tr.nodes["z"]["value"], guide_tr.nodes["z"]["value"])
    assert model_tr.nodes["X"]["fn"].event_shape == (T, 2) and model_tr.nodes["X"]["fn"].batch_shape == (5,)
    Trace_ELBO().differentiable_loss(model.model, guide.guide, x).backward()
    for module in (model, guide):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_likelihood_is_the_gaussian_form_of_the_squared_error():
    x = torch.rand(4, T, 2) * 27
    model = SeqVAE(Z, H, T)
    with torch.no_grad():
        model.log_sigma.copy_(torch.tensor([0.3, -0.2]))
    tr = poutine.trace(model.model).get_trace(x)
    mu = model.decode(tr.nodes["z"]["value"])
    sigma = model.log_sigma.exp()
    expected = -(((x - mu) / sigma) ** 2 / 2).sum((-1, -2)) - T * (sigma.log().sum() + math.log(2 * math.pi))
    assert torch.allclose(tr.nodes["X"]["fn"].log_prob(x), expected, atol=1e-3)


def test_decode_keeps_leading_dimensions_and_bad_input_is_rejected():
    model = SeqVAE(Z, H, T)
    assert model.decode(torch.randn(7, 2, Z)).shape == (7, 2, T, 2)
    with pytest.raises(ValueError, match=r"\[batch, 12, 2\]"):
        model.model(torch.zeros(3, T + 1, 2))
    with pytest.raises(ValueError, match="NaN"):
        model.model(torch.full((3, T, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown guide"):
        make_guide("gru", model)
