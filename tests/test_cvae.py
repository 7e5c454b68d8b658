"""The conditional VAE: quadrant masks, the masked likelihood, guides against the model, objectives."""
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch.nn.functional import binary_cross_entropy_with_logits

from guides.cvae import GUIDES, GSNNGuide, make_guide
from ppl_models.cvae import CVAE, MISSING, Baseline, Hybrid, missing_mask, observe
from ppl_models.inference.evaluate import log_importance_weights, summarize

Z = 4
H = (16, 16)


def quadrant(q):
    """Boolean [28, 28] of quadrant q: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    m = torch.zeros(28, 28, dtype=torch.bool)
    r, c = divmod(q, 2)
    m[14 * r:14 * (r + 1), 14 * c:14 * (c + 1)] = True
    return m


@pytest.mark.parametrize("given, observed", [(1, [2]), (2, [0, 2]), (3, [0, 1, 2])])
def test_masks_are_complementary_and_cover_the_image(given, observed):
    missing = missing_mask(given).reshape(28, 28)
    obs = torch.zeros(28, 28, dtype=torch.bool)
    for q in observed:
        obs |= quadrant(q)
    assert torch.equal(~missing, obs)                      # the observed part is exactly those quadrants
    assert (missing ^ obs).all()                           # disjoint and together the whole image
    assert missing.sum() == 196 * (4 - given)
    images = torch.rand(3, 784)
    x = observe(images, missing.reshape(784))
    assert (x[:, missing.reshape(784)] == MISSING).all()
    assert torch.equal(x[:, ~missing.reshape(784)], images[:, ~missing.reshape(784)])


def test_bad_quadrants_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        missing_mask(4)
    cvae = CVAE(784, Z, H)
    with pytest.raises(ValueError, match="x must have shape"):
        cvae.model(torch.rand(5, 783))
    with pytest.raises(ValueError, match="NaN"):
        cvae.model(torch.full((2, 784), float("nan")))
    with pytest.raises(ValueError, match="same batch size"):
        cvae.model(torch.rand(3, 784), torch.rand(2, 784))
    with pytest.raises(ValueError, match="boolean"):
        cvae.model(torch.rand(3, 784), torch.rand(3, 784), torch.ones(3, 784))
    with pytest.raises(ValueError, match=r"\[batch=3, 784\]"):
        cvae.model(torch.rand(3, 784), torch.rand(3, 784), torch.ones(2, 784, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs y"):
        make_guide("recognition", cvae, H).guide(torch.rand(3, 784))
    with pytest.raises(ValueError, match="unknown guide"):
        make_guide("nope", cvae)


def _batch(n=5, given=2):
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, 784, generator=g) < 0.3).float()
    miss = missing_mask(given).expand(n, 784)
    return observe(y, miss), y, miss


@pytest.mark.parametrize("net", ["baseline", "cvae"])
def test_likelihood_scores_only_missing_pixels(net):
    x, y, miss = _batch()
    module = Baseline(784, H) if net == "baseline" else CVAE(784, Z, H, Baseline(784, H))

    def log_py(target):
        pyro.set_rng_seed(3)  # the same z for both targets
        tr = poutine.trace(module.model).get_trace(x, target, miss)
        return tr.nodes["y"]["fn"].log_prob(target)

    changed_observed = torch.where(miss, y, 1 - y)   # flip every observed pixel of the target
    assert torch.allclose(log_py(y), log_py(changed_observed))
    changed_missing = torch.where(miss, 1 - y, y)
    assert (log_py(y) != log_py(changed_missing)).all()


def test_baseline_loss_is_the_masked_bce():
    x, y, miss = _batch()
    baseline = Baseline(784, H)
    loss = Trace_ELBO().loss(baseline.model, baseline.guide, x, y, miss)
    bce = binary_cross_entropy_with_logits(baseline.net(x), y, reduction="none")
    assert loss == pytest.approx(bce[miss].sum().item(), rel=1e-5)


@pytest.mark.parametrize("name", GUIDES)
@pytest.mark.parametrize("condition", ["quadrants", "label"])
def test_every_guide_traces_against_the_model(name, condition):
    if condition == "label":
        labels = torch.tensor([0, 3, 9, 1, 2])
        x, y, miss = torch.eye(10)[labels], (torch.rand(5, 784) < 0.3).float(), None
        cvae = CVAE(10, Z, H)
    else:
        x, y, miss = _batch()
        cvae = CVAE(784, Z, H, Baseline(784, H))
    guide = make_guide(name, cvae, H)
    guide_tr = poutine.trace(guide.guide).get_trace(x, y, miss)
    model_tr = poutine.trace(poutine.replay(cvae.model, trace=guide_tr)).get_trace(x, y, miss)
    z = guide_tr.nodes["z"]
    assert z["value"].shape == (5, Z) and z["fn"].event_shape == (Z,) and z["fn"].batch_shape == (5,)
    assert torch.equal(model_tr.nodes["z"]["value"], z["value"])
    assert model_tr.nodes["y"]["is_observed"] and model_tr.nodes["y"]["fn"].event_shape == (784,)
    assert {n for n, s in guide_tr.nodes.items() if s["type"] == "sample"} == {"z", "data"}
    loss = Trace_ELBO().differentiable_loss(cvae.model, guide.guide, x, y, miss)
    loss.backward()
    trained = [cvae.prior_net, cvae.generation_net] + ([guide] if name != "gsnn" else [])
    for module in trained:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    if cvae.baseline is not None:  # frozen
        assert all(p.grad is None for p in cvae.baseline.parameters())


def test_gsnn_elbo_has_no_kl_term():
    """With q(z | x, y) = p(z | x) the ELBO is the expected log-likelihood at z ~ p(z | x)."""
    x, y, miss = _batch()
    cvae = CVAE(784, Z, H, Baseline(784, H))
    guide = GSNNGuide(cvae)
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().loss(cvae.model, guide.guide, x, y, miss)
    pyro.set_rng_seed(1)
    tr = poutine.trace(poutine.replay(cvae.model, trace=poutine.trace(guide.guide).get_trace(x, y, miss))
                       ).get_trace(x, y, miss)
    assert loss == pytest.approx(-tr.nodes["y"]["fn"].log_prob(y).sum().item(), rel=1e-5)


def test_hybrid_objective_interpolates_the_two_elbos():
    x, y, miss = _batch()
    cvae = CVAE(784, Z, H, Baseline(784, H))
    rec, gsnn = make_guide("recognition", cvae, H), GSNNGuide(cvae)

    def value(objective, guide_fn):
        pyro.set_rng_seed(7)
        return objective.loss(cvae.model, guide_fn, x, y, miss)

    assert value(Hybrid(1.0, gsnn.guide), rec.guide) == pytest.approx(value(Trace_ELBO(), rec.guide), rel=1e-5)
    assert value(Hybrid(0.0, gsnn.guide), rec.guide) == pytest.approx(value(Trace_ELBO(), gsnn.guide), rel=1e-5)
    half = Hybrid(0.5, gsnn.guide)
    pyro.set_rng_seed(7)
    a = Trace_ELBO().loss(cvae.model, rec.guide, x, y, miss)
    b = Trace_ELBO().loss(cvae.model, gsnn.guide, x, y, miss)  # the rng stream continues as in Hybrid
    assert value(half, rec.guide) == pytest.approx(0.5 * a + 0.5 * b, rel=1e-5)
    with pytest.raises(ValueError, match="hybrid weight"):
        Hybrid(1.5, gsnn.guide)


@pytest.mark.parametrize("name", ["recognition", "gsnn"])
def test_importance_sampled_cll_is_never_below_the_elbo_of_the_same_samples(name):
    x, y, miss = _batch(8)
    cvae = CVAE(784, Z, H, Baseline(784, H))
    guide = make_guide(name, cvae, H)
    lw = log_importance_weights(cvae, guide, x, y, miss, num_samples=50, particles="plate")
    assert lw.shape == (50, 8)
    s = summarize(lw)
    assert (s["log_px"] >= s["elbo"] - 1e-5).all()
    # the two ways of vectorising particles agree in distribution: means of 2000 weights are close
    lw_r = log_importance_weights(cvae, guide, x, y, miss, num_samples=2000, particles="repeat")
    lw_p = log_importance_weights(cvae, guide, x, y, miss, num_samples=2000, particles="plate")
    assert torch.allclose(lw_r.mean(0), lw_p.mean(0), atol=0.5)


def test_predict_samples_differ_and_lie_in_the_unit_interval():
    x, y, miss = _batch()
    cvae = CVAE(784, Z, H, Baseline(784, H))
    p = cvae.predict(x, miss, num_samples=3)
    assert p.shape == (3, 5, 784) and ((p >= 0) & (p <= 1)).all()
    assert not torch.allclose(p[0], p[1])
    samples = poutine.trace(cvae.model).get_trace(x, None, miss).nodes["y"]["value"]
    assert samples.shape == (5, 784) and set(samples.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("inputs", ["xy", "y"])
def test_the_recognition_network_sees_the_input_only_where_asked(inputs):
    """q(z | x, y) on ``[x, y]`` reads both; on ``y`` alone another x with the same target leaves it as it was."""
    x, y, miss = _batch()
    guide = make_guide("recognition", CVAE(784, Z, H, Baseline(784, H)), H, inputs=inputs)

    def q(x_):
        return poutine.trace(guide.guide).get_trace(x_, y, miss).nodes["z"]["fn"].base_dist.loc

    other = torch.rand_like(x)  # another input, the same target
    assert torch.equal(q(x), q(other)) == (inputs == "y")
    assert guide.net[0].in_features == (784 + 784 if inputs == "xy" else 784)
    with pytest.raises(ValueError, match="unknown recognition input 'x'"):
        make_guide("recognition", CVAE(784, Z, H), H, inputs="x")


@pytest.mark.parametrize("generation_input", ["xz", "z"])
def test_the_generation_network_sees_the_input_only_where_the_story_says(generation_input):
    """p(y | x, z) (Sohn et al.) reads the filled-in input and z; p(y | z) (Pyro's example) reads z alone:
    with z held fixed, another input changes the first's likelihood and not the second's."""
    x, y, miss = _batch()
    cvae = CVAE(784, Z, H, Baseline(784, H), generation_input=generation_input)
    z = torch.randn(5, Z)
    other = observe(1 - y, miss)  # another observed quadrant, the same missing pixels
    a, b = cvae.generate(cvae.fill(x, miss), z), cvae.generate(cvae.fill(other, miss), z)
    assert (not torch.allclose(a, b)) if generation_input == "xz" else torch.equal(a, b)
    assert cvae.generation_net[0].in_features == (784 + Z if generation_input == "xz" else Z)
    with pytest.raises(ValueError, match="unknown generation input 'x'"):
        CVAE(784, Z, H, generation_input="x")
