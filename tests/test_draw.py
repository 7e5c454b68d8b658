"""DRAW: the Gaussian filterbank, the glimpse-by-glimpse story and its guides."""
import sys
from pathlib import Path

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.draw import GUIDES, make_guide
from ppl_models.draw import DRAW, attention_layer, filterbank, read_patch, window, write_patch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from benchmark_draw import hand_draw_loss  # noqa: E402


def params_for(centre_x, centre_y, stride, n, var=1e-3, gamma=1.0, side=28):
    """Unconstrained filterbank parameters for a window centred at 1-based pixel (centre_x, centre_y)."""
    gx = 2 * centre_x / (side + 1) - 1
    gy = 2 * centre_y / (side + 1) - 1
    log_delta = torch.log(torch.tensor(stride * (n - 1) / (side - 1)))
    return torch.tensor([[gx, gy, torch.log(torch.tensor(var)), log_delta, torch.log(torch.tensor(gamma))]])


def test_identity_window_reads_the_whole_image():
    image = torch.rand(1, 784)
    fx, fy, gamma = filterbank(params_for(14.5, 14.5, 1.0, 28), 28)
    assert torch.allclose(read_patch(image, fx, fy, gamma), image, atol=1e-4)


def test_a_small_window_reads_its_image_region():
    image = torch.rand(1, 784)
    # 5x5 window, stride 1, centred on 1-based pixel (10, 20): rows 18..22, columns 8..12 (1-based)
    fx, fy, gamma = filterbank(params_for(10.0, 20.0, 1.0, 5), 5)
    patch = read_patch(image, fx, fy, gamma).reshape(5, 5)
    assert torch.allclose(patch, image.reshape(28, 28)[17:22, 7:12], atol=1e-4)
    # gamma scales the glimpse
    fx, fy, gamma = filterbank(params_for(10.0, 20.0, 1.0, 5, gamma=3.0), 5)
    assert torch.allclose(read_patch(image, fx, fy, gamma).reshape(5, 5), 3 * patch, atol=1e-3)


@pytest.mark.parametrize("stride", [1.0, 2.0, 3.0])  # on the pixel grid: F F^T = I
def test_write_then_read_round_trip(stride):
    patch = torch.rand(1, 25)
    fx, fy, gamma = filterbank(params_for(14.0, 13.0, stride, 5, gamma=2.0), 5)
    canvas = write_patch(patch, fx, fy, gamma)
    assert canvas.shape == (1, 784)
    assert torch.allclose(read_patch(canvas, fx, fy, gamma), patch, atol=1e-3)


def test_filterbank_rows_are_normalised_and_shaped():
    params = torch.randn(7, 5)
    fx, fy, gamma = filterbank(params, 3)
    assert fx.shape == fy.shape == (7, 3, 28) and gamma.shape == (7,)
    assert torch.allclose(fx.sum(-1), torch.ones(7, 3), atol=1e-5)


@pytest.mark.parametrize("n", [2, 5])
def test_initial_window_covers_the_centre_of_the_image(n):
    """At initialisation the window is centred, its grid spans the central 12 pixels, and a read of a
    blob in the centre sees it (the default Linear bias would read the four blank corners for n=2)."""
    layer = attention_layer(256, n, "read")
    params = layer(torch.zeros(3, 256))
    gx, gy, stride = window(params, n)
    assert torch.allclose(gx, torch.full((3,), 14.5)) and torch.allclose(gy, torch.full((3,), 14.5))
    assert torch.allclose(stride * (n - 1), torch.full((3,), 12.0))
    blob = torch.zeros(28, 28)
    blob[5:24, 5:24] = 1.0  # the central 19 x 19 pixels
    fx, fy, gamma = filterbank(params[:1], n)
    assert (read_patch(blob.reshape(1, 784), fx, fy, gamma) / gamma).min() > 0.2
    assert torch.allclose(gamma, torch.tensor(28.0 / n))
    # the write: each patch value adds about itself at its filter's peak
    fx, fy, gamma = filterbank(attention_layer(256, n, "write")(torch.zeros(1, 256)), n)
    canvas = write_patch(torch.ones(1, n * n), fx, fy, gamma).reshape(28, 28)
    assert 0.5 < canvas[14, 14] < 2.0
    with pytest.raises(ValueError, match="read' or 'write"):
        attention_layer(256, n, "look")


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("name", GUIDES)
@pytest.mark.parametrize("n_classes", [0, 10])
def test_guide_sites_match_the_model_at_every_glimpse(attention, name, n_classes):
    T, Z = 5, 3
    model = DRAW(T, Z, 16, 5 if attention else None, n_classes)
    guide = make_guide(name, model, 16, read_n=2 if attention else None)
    x = torch.bernoulli(torch.rand(4, 784))
    y = torch.tensor([0, 9, 3, 3]) if n_classes else None
    guide_tr = poutine.trace(guide.guide).get_trace(x, y)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x, y)
    latent = [f"z_{t}" for t in range(T)]
    assert [n for n, s in guide_tr.nodes.items() if s["type"] == "sample" and n != "data"] == latent
    model_latent = [n for n, s in model_tr.nodes.items() if s["type"] == "sample" and not s["is_observed"]
                    and n != "data"]
    assert model_latent == latent
    for n in latent:
        assert guide_tr.nodes[n]["value"].shape == (4, Z)
        assert torch.equal(model_tr.nodes[n]["value"], guide_tr.nodes[n]["value"])
        assert model_tr.nodes[n]["fn"].event_shape == guide_tr.nodes[n]["fn"].event_shape == (Z,)
    canvas_logits = model_tr.nodes["x"]["fn"].base_dist.logits
    assert canvas_logits.shape == x.shape == (4, 784)
    loss = Trace_ELBO().differentiable_loss(model.model, guide.guide, x, y)
    loss.backward()
    for module in (model, guide):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_generate_gives_a_canvas_per_glimpse():
    model = DRAW(6, 3, 16, 5, 10)
    frames, windows = model.generate(4, torch.tensor([1, 2, 3, 4]))
    assert frames.shape == (6, 4, 784) and windows.shape == (6, 4, 3)
    assert ((frames >= 0) & (frames <= 1)).all()
    with pytest.raises(ValueError, match="labels"):
        model.generate(2, None)
    with pytest.raises(ValueError, match="0..9"):
        model.generate(2, torch.tensor([0, 10]))


def test_hand_written_loss_equals_pyro_under_the_same_noise():
    """The benchmark's hand-written -ELBO draws the same standard normals in the same order."""
    model = DRAW(4, 3, 16, 5)
    guide = make_guide("draw", model, 16, read_n=2)
    x = torch.bernoulli(torch.rand(6, 784))
    torch.manual_seed(5)
    pyro_loss = Trace_ELBO().loss(model.model, guide.guide, x)
    torch.manual_seed(5)
    with torch.no_grad():
        hand = hand_draw_loss(model, guide, x).item()
    assert hand == pytest.approx(pyro_loss, rel=1e-5)
