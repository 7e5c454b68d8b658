import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO
from torch.nn.functional import log_softmax

from guides.ssvae import GUIDES, make_guide
from ppl_models.inference.evaluate import label_log_joint, label_log_posterior, log_importance_weights
from ppl_models.ssvae import SSVAE, M2Objective, cat_label

Z = 3


def explicit_terms(model, guide, x, z):
    """log p(x, y, z_y) - log q(z_y | x, y) for every label y, with z_y given: [10, B]."""
    out = []
    for label in range(10):
        y = torch.full((len(x),), label)
        loc, scale = guide.z_params(x, y)
        scale = torch.nn.functional.softplus(scale) + 1e-4
        zy = z[label]
        log_px = dist.Bernoulli(logits=model.decoder(cat_label(zy, y))).log_prob(x).sum(-1)
        out.append(log_px + math.log(0.1) + dist.Normal(0, 1).log_prob(zy).sum(-1)
                   - dist.Normal(loc, scale).log_prob(zy).sum(-1))
    return torch.stack(out)


@pytest.mark.parametrize("name, hidden, options", [("mlp", (16,), {}), ("conv", (16,), {}),
                                                   ("conv", (16, 8), {"classifier_hidden": 5})])
def test_enumerated_elbo_equals_explicit_sum_over_labels(name, hidden, options, fake_images):
    """Also with a two-layer decoder and a hidden layer in the classifier's head
    (``--decoder-layers 2 --classifier-hidden K``)."""
    x = fake_images[0][:6]
    model = SSVAE(Z, hidden)
    guide = make_guide(name, model, **options)
    if options:
        assert len(model.decoder) == 5 and len(guide.classify_head) == 3
    guide.eval()
    pyro.set_rng_seed(1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, guide.guide, x)
    pyro.set_rng_seed(1)
    tr = poutine.trace(poutine.enum(guide.guide, first_available_dim=-2)).get_trace(x)
    z = tr.nodes["z"]["value"]
    assert z.shape == (10, 6, Z) and tr.nodes["y"]["value"].shape == (10, 1)
    with torch.no_grad():
        log_q = log_softmax(guide.classifier(x), -1).T  # [10, B]
        elbo_l = explicit_terms(model, guide, x, z)
        elbo_u = (log_q.exp() * (elbo_l - log_q)).sum(0)  # sum_y q(y|x) ELBO_L(x, y) + H[q(y|x)]
    assert loss == pytest.approx(-elbo_u.sum().item(), rel=1e-5)


def test_labeled_elbo_and_classification_term(fake_images):
    x, y = fake_images[0][:6], fake_images[1][:6]
    model = SSVAE(Z, (16,))
    guide = make_guide("mlp", model)
    pyro.set_rng_seed(2)
    elbo = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, guide.guide, x, y)
    pyro.set_rng_seed(2)
    tr = poutine.trace(guide.guide).get_trace(x, y)
    assert "y" not in tr.nodes  # observed: the guide samples only z
    with torch.no_grad():
        z = tr.nodes["z"]["value"]
        explicit = explicit_terms(model, guide, x, z.expand(10, *z.shape))[y, torch.arange(6)]
    assert elbo == pytest.approx(-explicit.sum().item(), rel=1e-5)
    objective = M2Objective(guide.classifier, alpha=5.0)
    pyro.set_rng_seed(2)
    total = objective.loss(model.model, guide.guide, x, y)
    ce = torch.nn.functional.cross_entropy(guide.classifier(x), y, reduction="sum").item()
    assert total == pytest.approx(elbo + 5.0 * ce, rel=1e-5)


def test_importance_weights_sum_labels_exactly(fake_images):
    x = fake_images[0][:4]
    model = SSVAE(Z, (16,))
    guide = make_guide("mlp", model)
    pyro.set_rng_seed(3)
    lw = log_importance_weights(model, guide, x, None, num_samples=1)
    pyro.set_rng_seed(3)
    tr = poutine.trace(poutine.enum(guide.guide, first_available_dim=-2)).get_trace(x)
    with torch.no_grad():
        explicit = explicit_terms(model, guide, x, tr.nodes["z"]["value"]).logsumexp(0)
    torch.testing.assert_close(lw[0], explicit, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name, options", [(name, {}) for name in sorted(GUIDES)] +
                         [(name, {"classifier_hidden": 6}) for name in sorted(GUIDES)])
def test_gradients_flow_for_every_guide(name, options, fake_images):
    x, y = fake_images
    model = SSVAE(Z, (16,))
    guide = make_guide(name, model, **options)
    elbo = TraceGraph_ELBO() if name == "sample" else TraceEnum_ELBO(max_plate_nesting=1)
    objective = M2Objective(guide.classifier, alpha=1.0, elbo=elbo)
    objective.loss_and_grads(model.model, guide.guide, x[:8], y[:8])
    objective.loss_and_grads(model.model, guide.guide, x[8:16])
    for module in (model, guide):
        for pname, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_sampled_guide_draws_one_label_per_image(fake_images):
    x = fake_images[0][:5]
    guide = make_guide("sample", SSVAE(Z, (16,)))
    tr = poutine.trace(guide.guide).get_trace(x)
    assert tr.nodes["y"]["value"].shape == (5,) and "enumerate" not in tr.nodes["y"]["infer"]


@pytest.mark.parametrize("y, match", [
    (torch.tensor([0, 1, 10, 2]), "0..9"),
    (torch.tensor([0, -1, 1, 2]), "0..9"),
    (torch.tensor([0.0, 1.0, 1.0, 2.0]), "integer"),
    (torch.tensor([0, 1, 2]), "shape"),
])
def test_bad_labels_are_clear_errors(y, match):
    with pytest.raises(ValueError, match=match):
        SSVAE(Z, (16,)).model(torch.zeros(4, 784), y)


def test_split_first_layer_equals_concatenation():
    """q(z | x, y) acts on [features(x), onehot(y)]; the split first layer must be that Linear."""
    guide = make_guide("mlp", SSVAE(Z, (16,)))
    x = torch.rand(4, 784)
    y = torch.tensor([0, 3, 9, 3])
    w = torch.cat([guide.z_from_x.weight, guide.z_from_y.weight], 1)
    h = torch.nn.functional.linear(cat_label(guide.features_z(x), y), w, guide.z_from_x.bias)
    expect = guide.z_head(h).chunk(2, -1)[0]
    assert torch.allclose(guide.encode(x, y), expect, atol=1e-6)
    # enumerated labels [10, 1] broadcast against the batch
    assert guide.z_params(x, torch.arange(10)[:, None])[0].shape == (10, 4, Z)


@pytest.mark.parametrize("labeled_batch_size, expected", [(None, 20), (7, 7), (500, 20)])
def test_each_unlabelled_batch_is_followed_by_a_labelled_batch_of_the_size_asked(labeled_batch_size, expected):
    """``--labeled-batch-size``: the labelled batches hold that many images (at most the labelled set),
    every unlabelled image comes once an epoch, and the labelled set is cycled: each label (two images
    here) comes as often as the others to within two."""
    from ppl_models.runs.experiment import load_example
    paired = load_example("ssvae").PairedBatches
    x_lab, y_lab, x_unlab = torch.rand(20, 784), torch.arange(20) % 10, torch.rand(250, 784)
    torch.manual_seed(0)
    batches = list(paired(x_lab, y_lab, x_unlab, 50, labeled_batch_size))
    unlab, lab = batches[0::2], batches[1::2]
    assert len(batches) == 10 and all(y is None for _, y in unlab) and len(lab) == 5
    assert all(len(x) == len(y) == expected for x, y in lab)
    assert sum(len(x) for x, _ in unlab) == 250
    seen = torch.cat([y for _, y in lab]).bincount(minlength=10)  # two images per label
    assert seen.max() - seen.min() <= 2


def test_grey_batches_are_the_grey_values_and_dynamic_ones_fresh_binary_draws():
    """``--binarize grey`` feeds the grey values themselves (Pyro's SS-VAE tutorial); the default draws
    every batch afresh from Bernoulli(grey value)."""
    from ppl_models.runs.experiment import load_example
    paired = load_example("ssvae").PairedBatches
    x_lab, y_lab, x_unlab = torch.rand(10, 784), torch.arange(10), torch.rand(30, 784)
    grey = [x for x, _ in paired(x_lab, y_lab, x_unlab, 10, binarization="grey")]
    assert all(x.unique().numel() > 2 for x in grey)
    assert torch.equal(torch.sort(torch.cat(grey[0::2]), 0).values, torch.sort(x_unlab, 0).values)
    assert all(any(torch.equal(row, lab) for lab in x_lab) for row in grey[1])
    torch.manual_seed(0)
    first = [x for x, _ in paired(x_lab, y_lab, x_unlab, 10)]
    second = [x for x, _ in paired(x_lab, y_lab, x_unlab, 10)]
    assert all(set(x.unique().tolist()) <= {0.0, 1.0} for x in first)
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_story_s_label_posterior_against_quadrature():
    """A one-dimensional style z, the prior as the proposal q(z | x, y): log p(x, y) = log 0.1 + log of
    the integral of N(z; 0, 1) p(x | y, z) over z, computed on a grid. The IS estimate with S = 3000
    matches it; the mean of the log-weights (the ELBO) does not, so the estimator is the IS one."""
    torch.manual_seed(0)
    x = torch.rand(5, 784).bernoulli()
    model = SSVAE(1, (16,))
    guide = make_guide("mlp", model)
    with torch.no_grad():
        model.decoder[0].weight[:, :1] *= 0.8
        head = guide.z_head[1]  # q(z | x, y) = N(0, 1): softplus(s) + 1e-4 = 1
        head.weight.zero_()
        head.bias[:1] = 0
        head.bias[1:] = math.log(math.expm1(1 - 1e-4))
        z = torch.linspace(-10, 10, 4001)
        log_prior = dist.Normal(0.0, 1.0).log_prob(z) + (z[1] - z[0]).log()
        exact = torch.stack([
            math.log(0.1) + (torch.stack([dist.Bernoulli(logits=model.decoder(cat_label(z[:, None], torch.full((4001,), c))))
                                          .log_prob(xi).sum(-1) for xi in x]) + log_prior).logsumexp(-1)
            for c in range(10)], -1)
        pyro.set_rng_seed(0)
        est = label_log_joint(model, guide, x, 10, num_samples=3000, batch_size=3)
        elbo = torch.stack([log_importance_weights(model, guide, x, torch.full((5,), c), num_samples=3000,
                                                   particles="plate").mean(0) for c in range(10)], -1)
        post = label_log_posterior(model, guide, x, 10, num_samples=3000)
    assert est.shape == (5, 10)
    assert (est - exact).abs().mean() < 0.03 and (est - exact).abs().max() < 0.1
    assert (elbo - exact).abs().mean() > 0.2  # the ELBO is off by more: the check tells the two apart
    assert torch.allclose(post, log_softmax(exact, -1), atol=0.1)
    assert torch.allclose(post.logsumexp(-1), torch.zeros(5), atol=1e-4)
