"""VRNN, VRNN-I and RNN: sites per step, masking, annealing, guides, the backward pass."""
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.vrnn import GUIDES, flip_valid, make_guide
from ppl_models.inference.evaluate import evaluate, log_importance_weights, summarize
from ppl_models.vrnn import PRIORS, VRNN

Z, H = 3, 12


def rows(batch=5, steps=7):
    return torch.bernoulli(torch.rand(batch, steps, 28))


def stroke_batch(batch=5, steps=9):
    x = torch.randn(batch, steps, 4)
    x[..., 2:] = (x[..., 2:] > 0).float()
    lengths = torch.tensor([9, 3, 5, 1, 9])[:batch]
    return x, lengths


def latent_sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"]


@pytest.mark.parametrize("emission", ["bernoulli", "strokes"])
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("name", GUIDES)
@pytest.mark.parametrize("n_classes", [0, 10])
def test_guide_sites_match_the_model_at_every_step(emission, prior, name, n_classes):
    x, lengths = (rows(), None) if emission == "bernoulli" else stroke_batch()
    y = torch.tensor([0, 1, 2, 3, 9]) if n_classes else None
    model = VRNN(emission, prior, Z, H, n_classes)
    guide = make_guide(name, model, H)
    guide_tr = poutine.trace(guide.guide).get_trace(x, y, lengths)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x, y, lengths)
    steps = x.shape[1]
    expected = [f"z_{t}" for t in range(steps)] if prior != "none" else []
    assert latent_sites(guide_tr) == expected == latent_sites(model_tr)
    for n in expected:
        assert guide_tr.nodes[n]["value"].shape == (5, Z)
        assert torch.equal(model_tr.nodes[n]["value"], guide_tr.nodes[n]["value"])
    observed = [n for n, s in model_tr.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    per_step = ["x"] if emission == "bernoulli" else ["dxy", "pen"]
    assert observed == [f"{k}_{t}" for t in range(steps) for k in per_step]
    loss = Trace_ELBO().differentiable_loss(model.model, guide.guide, x, y, lengths)
    loss.backward()
    for module in (model, guide):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_steps_past_the_end_of_a_sequence_are_not_scored():
    x, lengths = stroke_batch()
    model = VRNN("strokes", "learned", Z, H)
    guide = make_guide("filtering", model, H)
    changed = x.clone()
    for b, n in enumerate(lengths):
        changed[b, n:] = torch.randn_like(changed[b, n:]) * 10  # junk in the padding
    def loss(data):
        torch.manual_seed(0)
        return Trace_ELBO().loss(model.model, guide.guide, data, None, lengths)
    assert loss(x) == pytest.approx(loss(changed), rel=1e-6)
    changed[0, 0, 0] += 1.0  # a real step does count
    assert loss(x) != pytest.approx(loss(changed), rel=1e-6)


def test_annealing_scale_zero_leaves_only_the_reconstruction_term():
    x = rows()
    model = VRNN("bernoulli", "learned", Z, H)
    guide = make_guide("filtering", model, H)
    torch.manual_seed(1)
    loss = Trace_ELBO().loss(model.model, guide.guide, x, None, None, beta=0.0)
    torch.manual_seed(1)
    guide_tr = poutine.trace(guide.guide).get_trace(x, None, None, beta=0.0)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x, None, None, beta=0.0)
    recon = sum(model_tr.nodes[f"x_{t}"]["fn"].log_prob(x[:, t]).sum() for t in range(x.shape[1]))
    assert loss == pytest.approx(-recon.item(), rel=1e-5)
    torch.manual_seed(1)
    full = Trace_ELBO().loss(model.model, guide.guide, x, None, None, beta=1.0)
    assert full != pytest.approx(loss, rel=1e-3)


def test_rnn_log_likelihood_is_exact_and_computed_once():
    x = rows()
    model = VRNN("bernoulli", "none", Z, H)
    guide = make_guide("filtering", model)
    calls = []
    story = model.model
    model.model = lambda *a, **k: (calls.append(len(a[0])), story(*a, **k))[1]
    lw = log_importance_weights(model, guide, x, None, None, num_samples=400, particles="repeat")
    assert lw.shape == (1, 5) and calls == [5]  # one pass over the batch, not 400
    s = summarize(lw)
    assert torch.allclose(s["log_px"], s["elbo"], atol=1e-6)
    r = evaluate(model, guide, x, num_samples=400)
    assert r["exact"] and "khat" not in r
    with torch.no_grad():  # the exact figure: the model's log-density of the sequences, summed
        tr = pyro.poutine.trace(story).get_trace(x)
        tr.compute_log_prob()
        exact = sum(site["log_prob"] for site in tr.nodes.values() if site["type"] == "sample")
    torch.testing.assert_close(torch.as_tensor(r["log_px"]), exact, atol=1e-5, rtol=0)


def test_flip_valid_reverses_within_each_length():
    seq = torch.arange(2 * 5, dtype=torch.float).reshape(2, 5, 1)
    out = flip_valid(seq, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(flip_valid(out, torch.tensor([5, 3])), seq)


def test_smoothing_guide_sees_the_future_and_filtering_does_not():
    x = rows(steps=6)
    model = VRNN("bernoulli", "learned", Z, H)
    for name, sees_future in (("filtering", False), ("smoothing", True)):
        guide = make_guide(name, model, H)
        def first_loc(data):
            torch.manual_seed(0)
            return poutine.trace(guide.guide).get_trace(data, None, None).nodes["z_0"]["fn"].base_dist.loc
        later = x.clone()
        later[:, -1] = 1 - later[:, -1]
        assert (not torch.allclose(first_loc(x), first_loc(later))) == sees_future


def test_the_label_sets_the_initial_state_and_feeds_the_recurrence():
    model = VRNN("bernoulli", "learned", Z, H, 10)
    one, two = (torch.nn.functional.one_hot(torch.tensor([d]), 10).float() for d in (3, 8))
    h3, h8 = model.initial_state(one), model.initial_state(two)
    assert not torch.allclose(h3[0], h8[0]) and not torch.allclose(h3[1], h8[1])
    fx, fz = torch.randn(1, H), torch.randn(1, H)
    zeros = (torch.zeros(1, H), torch.zeros(1, H))
    assert not torch.allclose(model.recur(fx, fz, one, zeros)[0], model.recur(fx, fz, two, zeros)[0])
    plain = VRNN("bernoulli", "learned", Z, H, 0)
    assert torch.equal(plain.initial_state(torch.zeros(2, 0))[0], torch.zeros(2, H))


def test_generate_and_bad_input():
    model = VRNN("strokes", "learned", Z, H, 10)
    out = model.generate(4, 6, torch.tensor([0, 1, 2, 3]))
    assert out.shape == (4, 6, 4) and set(out[..., 2:].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="labels"):
        model.generate(2, 3)
    with pytest.raises(ValueError, match=r"\[batch, time, 4\]"):
        model.model(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="NaN"):
        model.model(torch.full((2, 5, 4), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown prior"):
        VRNN("bernoulli", "gaussian")


def test_hand_written_benchmark_loss_equals_pyro_under_the_same_noise():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from benchmark_vrnn import hand_vrnn_loss
    x = rows()
    model = VRNN("bernoulli", "learned", Z, H)
    guide = make_guide("filtering", model, H)
    torch.manual_seed(3)
    pyro_loss = Trace_ELBO().loss(model.model, guide.guide, x)
    torch.manual_seed(3)
    with torch.no_grad():
        assert hand_vrnn_loss(model, guide, x).item() == pytest.approx(pyro_loss, rel=1e-5)
