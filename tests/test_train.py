import csv

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from guides.vae import make_guide
from ppl_models.data import Minibatches, Split
from ppl_models.inference.train import TrainingDiverged, atomic_save, fit, load_checkpoint, resolve_device
from ppl_models.vae import VAE


def build():
    pyro.set_rng_seed(0)
    model = VAE(3, (16,))
    return model, make_guide("diag", model)


def run(tmp, fake_images, epochs, resume=False, **kw):
    model, guide = build()
    x, y = fake_images
    hist = fit(model, guide, Trace_ELBO(), Minibatches(Split(x, y), 16, "static"), epochs=epochs, out=tmp,
               resume=resume, progress=False, log=lambda s: None, seed=7,
               validate=lambda: {"valid_loss": 1.0}, best=("valid_loss", "min"), **kw)
    return model, guide, hist


def test_training_lowers_the_loss_and_writes_metrics(tmp_path, fake_images):
    _, _, hist = run(tmp_path, fake_images, 5)
    assert hist[-1]["loss"] < hist[0]["loss"]
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5] and "valid_loss" in rows[0]
    assert (tmp_path / "best.pt").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_reproduces_an_uninterrupted_run(tmp_path, fake_images):
    straight, _, _ = run(tmp_path / "a", fake_images, 3)
    run(tmp_path / "b", fake_images, 1)
    resumed, _, hist = run(tmp_path / "b", fake_images, 3, resume=True)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_checkpoint_round_trip(tmp_path, fake_images):
    model, guide, _ = run(tmp_path, fake_images, 1)
    m2, g2 = build()
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", m2, g2)
    assert ckpt["epoch"] == 1
    for a, b in zip(list(model.parameters()) + list(guide.parameters()), list(m2.parameters()) + list(g2.parameters())):
        assert torch.equal(a, b)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"half a file")
    with pytest.raises(RuntimeError, match="corrupt"):
        load_checkpoint(tmp_path / "checkpoint.pt", *build())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, fake_images):
    x, y = fake_images
    bad = x.clone()
    bad[0, 0] = float("nan")

    def batches(epoch):
        return [(x[:16], y[:16])] if epoch == 1 else [(bad[:16], y[:16])]

    model, guide = build()
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1.*checkpoint.pt \(epoch 1\)"):
        fit(model, guide, Trace_ELBO(), batches, epochs=3, out=tmp_path, progress=False, log=lambda s: None)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_atomic_save_never_leaves_partial_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")
    atomic_save({"a": 1}, tmp_path / "c.pt")
    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")


def test_learning_rate_schedule_is_derived_from_the_epoch(tmp_path, fake_images):
    _, _, hist = run(tmp_path, fake_images, 3, lr=0.01, lr_decay=0.5)
    assert [h["lr"] for h in hist] == [0.01, 0.005, 0.0025]
    _, _, hist = run(tmp_path, fake_images, 4, resume=True, lr=0.001)  # resume with a smaller lr
    assert [h["lr"] for h in hist] == [0.01, 0.005, 0.0025, 0.001]


def test_early_stopping_after_patience_validations_without_improvement(tmp_path, fake_images):
    # the validation metric is constant: epoch 1 is the best, epochs 2 and 3 do not improve
    _, _, hist = run(tmp_path, fake_images, 10, patience=2)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    _, _, again = run(tmp_path, fake_images, 10, patience=2, resume=True)  # stays stopped
    assert [h["epoch"] for h in again] == [1, 2, 3]


def test_parameters_shared_by_model_and_guide_are_optimised_once(tmp_path, fake_images):
    from ppl_models.cvae import Baseline
    baseline = Baseline(784, (8,))
    x, _ = fake_images
    before = [p.detach().clone() for p in baseline.parameters()]
    fit(baseline, baseline, Trace_ELBO(), [(x[:16], x[:16], None)], epochs=1, out=tmp_path, lr=0.1,
        optim="adam", progress=False, log=lambda s: None)
    # one Adam step moves every parameter by about lr (not 2 lr, as a duplicated entry would)
    steps = [(p.detach() - b).abs().max().item() for p, b in zip(baseline.parameters(), before)]
    assert all(0.05 < s < 0.15 for s in steps)


def test_a_save_cut_short_by_a_full_disk_leaves_the_last_complete_checkpoint(tmp_path, fake_images, monkeypatch):
    """The disk fills while epoch 2 is saved (simulated: torch.save writes half a file, then fails with
    ENOSPC): training stops with one clear error naming the last complete checkpoint, no partial file is
    left, epoch 1's checkpoint loads, and --resume (with space again) ends as an uninterrupted run does."""
    import errno

    from ppl_models.inference import train as train_module
    from ppl_models.inference.train import CheckpointNotSaved
    x, y = fake_images
    batches = [(x[:16], y[:16]), (x[16:32], y[16:32])]
    real_save = torch.save
    saves = {"n": 0}

    def filling_disk(obj, path, *a, **k):
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint: epoch 2
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", filling_disk)
    model, guide = build()
    with pytest.raises(CheckpointNotSaved, match=r"epoch 2 could not be saved.*No space left.*checkpoint.pt \(epoch 1\)"):
        fit(model, guide, Trace_ELBO(), batches, epochs=3, out=tmp_path / "run", progress=False, log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "metrics.csv"]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train_module.torch, "save", real_save)
    model, guide = build()
    resumed = fit(model, guide, Trace_ELBO(), batches, epochs=3, out=tmp_path / "run", resume=True, progress=False,
                  log=lambda s: None)
    model_b, guide_b = build()
    straight = fit(model_b, guide_b, Trace_ELBO(), batches, epochs=3, out=tmp_path / "straight", progress=False,
                   log=lambda s: None)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]
    for a, b in zip(model.state_dict().values(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("fail_at", [3, 4])
def test_a_stop_between_the_best_and_the_last_checkpoint_never_leaves_best_pt_behind(tmp_path, fake_images,
                                                                                     monkeypatch, fail_at):
    """Every epoch improves, so epoch 2 writes best.pt and checkpoint.pt (saves 3 and 4). A stop at
    either write leaves best.pt at least as new as the best epoch the checkpoint records, and a
    resume ends with best.pt at the last (best) epoch."""
    from ppl_models.inference import train as train_module
    from ppl_models.inference.train import CheckpointNotSaved
    x, y = fake_images
    batches = [(x[:16], y[:16])]
    real_save, saves, calls = torch.save, {"n": 0}, {"n": 0}

    def stopping(obj, path, *a, **k):
        saves["n"] += 1
        if saves["n"] == fail_at:
            raise OSError(5, "Input/output error")
        return real_save(obj, path, *a, **k)

    def validate():  # a better validation loss at every epoch
        calls["n"] += 1
        return {"valid_loss": 10.0 - calls["n"]}

    def train(resume):
        model, guide = build()
        return fit(model, guide, Trace_ELBO(), batches, epochs=3, out=tmp_path, resume=resume, progress=False,
                   log=lambda s: None, validate=validate, best=("valid_loss", "min"))

    monkeypatch.setattr(train_module.torch, "save", stopping)
    with pytest.raises(CheckpointNotSaved):
        train(resume=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    recorded = min(ckpt["history"], key=lambda h: h["valid_loss"])["epoch"]
    assert best["epoch"] >= recorded
    monkeypatch.setattr(train_module.torch, "save", real_save)
    train(resume=True)
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == 3


def test_a_torchrun_restart_continues_by_itself_and_still_refuses_another_run_s_checkpoint(tmp_path, fake_images,
                                                                                           monkeypatch):
    from ppl_models.inference.train import SettingsMismatch
    x, y = fake_images
    batches = [(x[:16], y[:16])]
    model, guide = build()
    fit(model, guide, Trace_ELBO(), batches, epochs=1, out=tmp_path, progress=False, log=lambda s: None,
        settings={"z_dim": 3})
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # as torchrun sets it in a restarted group
    said = []
    model, guide = build()
    hist = fit(model, guide, Trace_ELBO(), batches, epochs=2, out=tmp_path, progress=False, log=said.append,
               settings={"z_dim": 3})
    assert [h["epoch"] for h in hist] == [1, 2] and any("torchrun restarted the workers" in s for s in said)
    with pytest.raises(SettingsMismatch, match=r"z_dim 3 \(asked: 4\)"):
        fit(model, guide, Trace_ELBO(), batches, epochs=3, out=tmp_path, progress=False, log=lambda s: None,
            settings={"z_dim": 4})


def test_a_flag_added_after_a_run_was_saved_matches_the_behaviour_the_run_had():
    """A checkpoint from before --warmup-epochs (or the CVAE's --generation-input) lacks the setting:
    resuming it with today's default for what it did is allowed, with another value refused."""
    from ppl_models.inference.train import settings_diff
    saved = {"beta": 1.0}
    assert settings_diff(saved, {"beta": 1.0, "warmup_epochs": 0}) == ""
    assert settings_diff(saved, {"beta": 1.0, "generation_input": "xz"}) == ""
    assert settings_diff(saved, {"beta": 1.0, "warmup_epochs": 5}) == "warmup_epochs unset (asked: 5)"
    assert settings_diff(saved, {"beta": 1.0, "generation_input": "z"}) == "generation_input unset (asked: z)"
