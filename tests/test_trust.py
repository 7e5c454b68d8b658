"""What makes a reported figure trustworthy: resume on any device, an evaluator that scores the model
and nothing else, a run that is only ever evaluated on its own checkpoints, fixed test draws."""
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from guides.heads import IAF
from guides.vae import make_guide
from ppl_models.data import Minibatches, Split
from ppl_models.inference.evaluate import evaluate
from ppl_models.inference.train import BEST, CHECKPOINT, SettingsMismatch, TrainingDiverged, fit, read_checkpoint
from ppl_models.ssvae import M2Objective
from ppl_models.vae import VAE


def build(z=3):
    pyro.set_rng_seed(0)
    model = VAE(z, (16,))
    return model, make_guide("diag", model)


def train(out, fake_images, epochs, model=None, guide=None, **kw):
    if model is None:
        model, guide = build()
    x, y = fake_images
    kw.setdefault("validate", lambda: {"valid_loss": 1.0})
    kw.setdefault("best", ("valid_loss", "min"))
    return fit(model, guide, Trace_ELBO(), Minibatches(Split(x, y), 16, "static"), epochs=epochs, out=out,
               progress=False, log=lambda s: None, seed=7, **kw)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_onto_a_non_cpu_device_restores_the_rng_on_the_cpu(tmp_path, fake_images):
    """A GPU run's resume: parameters on another device, RNG states must still be CPU tensors.
    The meta device stands in for CUDA here (reading the checkpoint onto the parameters' device
    put the RNG state there, and ``torch.set_rng_state`` takes only a CPU ByteTensor)."""
    train(tmp_path, fake_images, 1, settings={"guide": "diag"})
    saved = read_checkpoint(tmp_path / CHECKPOINT)["rng"]["torch"]
    model, guide = build()
    model, guide = model.to("meta"), guide.to("meta")
    torch.manual_seed(123)  # anything else
    hist = train(tmp_path, fake_images, 1, model, guide, resume=True, settings={"guide": "diag"})
    assert [h["epoch"] for h in hist] == [1]
    assert torch.equal(torch.get_rng_state(), saved)


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, fake_images):
    train(tmp_path, fake_images, 1, settings={"guide": "diag", "z_dim": 3})
    with pytest.raises(SettingsMismatch, match=r"guide diag \(asked: iaf\)") as e:
        train(tmp_path, fake_images, 2, resume=True, settings={"guide": "iaf", "z_dim": 3})
    assert "z_dim" not in str(e.value)


def test_a_fresh_run_never_leaves_an_earlier_runs_best_checkpoint(tmp_path, fake_images):
    train(tmp_path, fake_images, 1)  # writes best.pt
    assert (tmp_path / BEST).exists()
    train(tmp_path, fake_images, 1, validate=None, best=None)  # a run that keeps no best.pt
    assert not (tmp_path / BEST).exists()


def test_evaluator_ignores_the_kl_weight(fake_images):
    """beta reaches model and guide through their keyword arguments; the figure stays the ELBO's."""
    model, guide = build()
    x = fake_images[0][:8]
    pyro.set_rng_seed(1)
    one = evaluate(model, guide, x, num_samples=50, khat=False)
    for beta in (0.5, 0.0):
        pyro.set_rng_seed(1)
        other = evaluate(model, guide, x, num_samples=50, khat=False, beta=beta)
        assert other["log_px_mean"] == pytest.approx(one["log_px_mean"], abs=1e-4)
        assert other["elbo_mean"] == pytest.approx(one["elbo_mean"], abs=1e-4)


def test_evaluator_ignores_a_scale_around_the_model(fake_images):
    model, guide = build()
    x = fake_images[0][:8]

    class Scaled(torch.nn.Module):
        def model(self, *args, **kwargs):
            with pyro.poutine.scale(scale=0.3):
                return model.model(*args, **kwargs)

    pyro.set_rng_seed(2)
    a = evaluate(model, guide, x, num_samples=20, khat=False)["log_px_mean"]
    pyro.set_rng_seed(2)
    b = evaluate(Scaled(), guide, x, num_samples=20, khat=False)["log_px_mean"]
    assert a == pytest.approx(b, abs=1e-4)


def test_m2_objective_leaves_the_classifier_term_on_the_device(fake_images):
    from guides.ssvae import make_guide as ss_guide
    from ppl_models.ssvae import SSVAE
    x, y = fake_images
    model = SSVAE(4, (16,))
    guide = ss_guide("mlp", model)
    value = M2Objective(guide.classifier, 1.0).loss_and_grads(model.model, guide.guide, x[:8], y[:8])
    assert torch.is_tensor(value) and value.dim() == 0 and not value.requires_grad
    plain = M2Objective(guide.classifier, 1.0).loss_and_grads(model.model, guide.guide, x[:8])
    assert isinstance(plain, float)


def test_a_tensor_loss_that_is_nan_stops_at_the_end_of_the_epoch(tmp_path, fake_images):
    class NaNAfterFirstEpoch:
        def __init__(self):
            self.elbo, self.calls = Trace_ELBO(), 0

        def loss_and_grads(self, model, guide, *args, **kwargs):
            self.calls += 1
            value = self.elbo.loss_and_grads(model, guide, *args, **kwargs)
            return torch.tensor(float("nan") if self.calls > 4 else value)

    model, guide = build()
    x, y = fake_images
    kw = dict(epochs=3, out=tmp_path, progress=False, log=lambda s: None)
    with pytest.raises(TrainingDiverged, match="epoch 2, the end of the epoch"):
        fit(model, guide, NaNAfterFirstEpoch(), Minibatches(Split(x, y), 16, "static"), **kw)
    assert read_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


def test_iaf_permutation_moves_with_the_module():
    head = IAF(8, 4, n_flows=2)
    assert "reverse" in dict(head.named_buffers()) and "reverse" not in head.state_dict()
    head = head.to(torch.float64)
    assert head.reverse.dtype == torch.int64
    h = torch.randn(5, 8, dtype=torch.float64)
    assert head(h).rsample().shape == (5, 4)
