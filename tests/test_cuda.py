"""The CUDA path, end to end. Every test here is marked ``cuda`` and skipped where PyTorch sees no
CUDA device; on a GPU machine run them alone with ``python -m pytest -m cuda`` (or the whole suite).
"""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from test_examples import SMOKE

from ppl_models.linear_gaussian import ExactPosteriorGuide, LinearGaussian

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch sees no CUDA device")]


def example(name, *args, cwd):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), "--smoke", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("name", sorted(n for n in SMOKE if n != "render_models"))
def test_every_example_smoke_on_cuda(name, tmp_path):
    out = example(name, "--out", str(tmp_path / "run"), "--device", "cuda", *SMOKE[name], cwd=tmp_path)
    for results in (tmp_path / "run").rglob("results.json"):
        assert json.loads(results.read_text())["device"].startswith("cuda")
    assert "cuda" in out


def test_resume_on_cuda(tmp_path):
    out = tmp_path / "run"
    example("vae", "--out", str(out), "--device", "cuda", "--no-progress", cwd=tmp_path)
    log = example("vae", "--out", str(out), "--device", "cuda", "--no-progress", "--resume", "--epochs", "2",
                  cwd=tmp_path)
    assert "resumed from" in log and json.loads((out / "results.json").read_text())["epochs"] == 2


def test_one_checkpoint_scores_the_same_on_cuda_and_cpu(tmp_path):
    out = tmp_path / "run"
    example("vae", "--out", str(out), "--device", "cpu", "--no-progress", cwd=tmp_path)
    scores = {}
    for device in ("cpu", "cuda"):
        example("vae", "--out", str(out), "--device", device, "--no-progress", "--eval-only",
                "--eval-samples", "2000", "--eval-images", "20", cwd=tmp_path)
        scores[device] = json.loads((out / "results.json").read_text())["metrics"]
    assert scores["cuda"]["test_elbo"] == pytest.approx(scores["cpu"]["test_elbo"], abs=0.5)
    assert scores["cuda"]["test_log_px"] == pytest.approx(scores["cpu"]["test_log_px"], abs=1.0)
    # the exact likelihood (an RNN, no latent) must agree to float precision
    rnn = tmp_path / "rnn"
    example("vrnn", "--out", str(rnn), "--device", "cpu", "--prior", "none", "--no-progress", cwd=tmp_path)
    exact = {}
    for device in ("cpu", "cuda"):
        example("vrnn", "--out", str(rnn), "--device", device, "--prior", "none", "--no-progress", "--eval-only",
                cwd=tmp_path)
        exact[device] = json.loads((rnn / "results.json").read_text())["metrics"]["test_log_px"]
    assert exact["cuda"] == pytest.approx(exact["cpu"], rel=1e-5)


def test_evaluator_on_cuda_is_exact_with_the_exact_posterior():
    from ppl_models.inference.evaluate import log_importance_weights
    x = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4]])
    model = LinearGaussian()
    lw = log_importance_weights(model.cuda(), ExactPosteriorGuide(model).cuda(), x.cuda(), num_samples=50)
    torch.testing.assert_close(lw.cpu(), model.cpu().log_marginal(x).detach().expand(50, 2), atol=1e-4, rtol=0)


def test_fixed_draws_are_the_same_on_cuda():
    from ppl_models.data import load_mnist
    cpu, gpu = load_mnist(device="cpu"), load_mnist(device="cuda")
    for a, b in zip(cpu[1:], gpu[1:]):  # validation and test binarisation
        assert torch.equal(a.x, b.x.cpu())


def test_a_training_step_synchronises_once(fake_images):
    """Only Pyro's loss value crosses to the host: count the synchronising calls of an epoch's steps
    (the loop of ``ppl_models.inference.train.fit``, without its once-per-epoch checkpoint)."""
    from guides.vae import make_guide
    from ppl_models.data import Minibatches, Split
    from ppl_models.vae import VAE
    model = VAE(4, (32,)).cuda()
    guide = make_guide("iaf", model).cuda()
    optimizer = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-3)
    x, y = fake_images
    batches = Minibatches(Split(x.cuda(), y.cuda()), 16, "dynamic")
    elbo = Trace_ELBO()

    def epoch():
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            with pyro.validation_enabled(False):
                elbo.loss_and_grads(model.model, guide.guide, *batch)
            optimizer.step()

    epoch()  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            epoch()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= len(batches), f"{len(syncs)} synchronisations in {len(batches)} steps: {syncs[:3]}"
