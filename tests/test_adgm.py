"""The auxiliary deep generative models (ADGM, SDGM): the enumerated ELBO against the explicit sum over
the ten labels, the labelled ELBO, the importance weights (particles repeated or in a plate, M2's
too), the classifier's Monte Carlo q(y | x)."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from torch.nn.functional import log_softmax, softplus

from guides.adgm import GUIDES, make_guide
from guides.ssvae import make_guide as make_ssvae_guide
from ppl_models.adgm import FORMS, AuxiliaryDGM
from ppl_models.inference.evaluate import log_importance_weights
from ppl_models.ssvae import SSVAE, M2Objective, cat_label

Z, A = 3, 2


def small(form):
    return AuxiliaryDGM(Z, A, (16,), form=form)


def normal(params):
    loc, s = params.chunk(2, -1)
    return dist.Normal(loc, softplus(s) + 1e-4)


def explicit_terms(model, guide, x, a, z):
    """log p(x, y, z_y, a) - log q(z_y | a, y, x) - log q(a | x) for every label y, with a and z_y
    given (the densities written out, not through the model's code): ``[10, B]``."""
    log_qa = normal(guide.a_head(guide.features_a(x))).log_prob(a).sum(-1)
    out = []
    for label in range(10):
        y = torch.full((len(x),), label)
        zy = z[label]
        log_pz = dist.Normal(0, 1).log_prob(zy).sum(-1)
        if model.skip:
            log_pa = normal(model.p_a_net(cat_label(zy, y))).log_prob(a).sum(-1)
            logits = model.decoder(cat_label(torch.cat([a, zy], -1), y))
        else:
            logits = model.decoder(cat_label(zy, y))
            log_pa = normal(model.p_a_net(cat_label(torch.cat([x, zy], -1), y))).log_prob(a).sum(-1)
        log_px = dist.Bernoulli(logits=logits).log_prob(x).sum(-1)
        log_qz = normal(guide.z_params(x, a, y)).log_prob(zy).sum(-1)
        out.append(log_px + math.log(0.1) + log_pz + log_pa - log_qz - log_qa)
    return torch.stack(out)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(GUIDES))
def test_enumerated_elbo_equals_explicit_sum_over_labels(form, name, fake_images):
    x = fake_images[0][:6]
    model = small(form)
    guide = make_guide(name, model)
    guide.eval()
    pyro.set_rng_seed(1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, guide.guide, x)
    pyro.set_rng_seed(1)
    tr = poutine.trace(poutine.enum(guide.guide, first_available_dim=-2)).get_trace(x)
    a, z = tr.nodes["a"]["value"], tr.nodes["z"]["value"]
    assert a.shape == (6, A) and z.shape == (10, 6, Z) and tr.nodes["y"]["value"].shape == (10, 1)
    with torch.no_grad():
        log_q = log_softmax(guide.y_logits(x, a), -1).T  # q(y | a, x), [10, B]
        terms = explicit_terms(model, guide, x, a, z)
        # sum_y q(y|a,x) [log p(x,y,z_y,a) - log q(z_y|a,y,x) - log q(y|a,x)] - log q(a|x)
        elbo_u = (log_q.exp() * (terms - log_q)).sum(0)
    assert loss == pytest.approx(-elbo_u.sum().item(), rel=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_labeled_elbo_and_classification_term(form, fake_images):
    x, y = fake_images[0][:6], fake_images[1][:6]
    model = small(form)
    guide = make_guide("mlp", model)
    pyro.set_rng_seed(2)
    elbo = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, guide.guide, x, y)
    pyro.set_rng_seed(2)
    tr = poutine.trace(guide.guide).get_trace(x, y)
    assert "y" not in tr.nodes  # observed: the guide samples a and z only
    with torch.no_grad():
        a, z = tr.nodes["a"]["value"], tr.nodes["z"]["value"]
        explicit = explicit_terms(model, guide, x, a, z.expand(10, *z.shape))[y, torch.arange(6)]
    assert elbo == pytest.approx(-explicit.sum().item(), rel=1e-5)
    # the objective's classification term: alpha * cross-entropy of q(y | a, x) at one a ~ q(a | x)
    objective = M2Objective(guide.classifier, alpha=5.0)
    guide.train()
    pyro.set_rng_seed(3)
    total = objective.loss(model.model, guide.guide, x, y)
    pyro.set_rng_seed(3)
    elbo3 = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, guide.guide, x, y)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(guide.classifier(x), y, reduction="sum").item()
    assert total == pytest.approx(elbo3 + 5.0 * ce, rel=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_importance_weights_sum_labels_exactly(form, fake_images):
    x = fake_images[0][:4]
    model = small(form)
    guide = make_guide("mlp", model)
    pyro.set_rng_seed(3)
    lw = log_importance_weights(model, guide, x, None, num_samples=1)
    pyro.set_rng_seed(3)
    tr = poutine.trace(poutine.enum(guide.guide, first_available_dim=-2)).get_trace(x)
    with torch.no_grad():
        explicit = explicit_terms(model, guide, x, tr.nodes["a"]["value"], tr.nodes["z"]["value"]).logsumexp(0)
    torch.testing.assert_close(lw[0], explicit, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("form", ("m2",) + FORMS)
@pytest.mark.parametrize("name", ["mlp", "conv"])
@pytest.mark.parametrize("y", [None, "labelled"])
def test_particles_in_a_plate_give_the_weights_of_repeated_images(form, name, y, fake_images):
    """How the examples score the semi-supervised stories: the particles in a plate (encoders once per
    image) draw the same weights as the images repeated, the label enumerated or observed."""
    x, labels = fake_images[0][:5], fake_images[1][:5]
    model = SSVAE(Z, (16,)) if form == "m2" else small(form)
    guide = (make_ssvae_guide if form == "m2" else make_guide)(name, model)
    model.eval(), guide.eval()
    args = (x,) if y is None else (x, labels)
    weights = []
    for particles in ("repeat", "plate"):
        pyro.set_rng_seed(4)
        weights.append(log_importance_weights(model, guide, *args, num_samples=6, particles=particles))
    assert weights[1].shape == (6, 5)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-4)


def test_the_classifier_averages_q_y_over_a_in_evaluation(fake_images):
    x = fake_images[0][:5]
    guide = make_guide("mlp", small("adgm"), predict_samples=4)
    guide.eval()
    torch.manual_seed(0)
    logits = guide.classifier(x)
    torch.manual_seed(0)
    a = guide.q_a(x).sample((4,))
    mean = guide.y_logits(x, a).softmax(-1).mean(0)
    torch.testing.assert_close(logits.exp(), mean)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(5))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(GUIDES))
def test_gradients_flow_for_every_guide(form, name, fake_images):
    x, y = fake_images
    model = small(form)
    guide = make_guide(name, model)
    objective = M2Objective(guide.classifier, alpha=1.0)
    objective.loss_and_grads(model.model, guide.guide, x[:8], y[:8])
    objective.loss_and_grads(model.model, guide.guide, x[8:16])
    for module in (model, guide):
        for pname, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown form 'm3'"):
        AuxiliaryDGM(form="m3")


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_the_guide_s_label_and_style_depend_on_the_auxiliary_variable(name, fake_images):
    """q(y | a, x) and q(z | a, y, x) see a: the guide's mixture is not M2's factorised one."""
    x = fake_images[0][:4]
    guide = make_guide(name, small("adgm"))
    guide.eval()
    a0, a1 = torch.zeros(4, A), torch.full((4, A), 2.0)
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert (guide.y_logits(x, a0) - guide.y_logits(x, a1)).abs().max() > 1e-4
        assert (guide.z_params(x, a0, y) - guide.z_params(x, a1, y)).abs().max() > 1e-4


def test_the_sdgm_generates_through_a_sample_of_a(fake_images):
    model = small("sdgm")
    y = torch.arange(10)
    torch.manual_seed(0)
    x = model.generate(y, fake_images[0])
    torch.manual_seed(0)
    z = model.prior(fake_images[0]).sample((10,))
    a = model.p_a(y, z).sample()
    torch.testing.assert_close(x, model.decode(z, y, a))
    assert (x - model.decode(z, y)).abs().max() > 1e-6  # not the mean of p(a | y, z)
