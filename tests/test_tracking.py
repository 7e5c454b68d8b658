"""Experiment tracking with the real libraries, read back through their own readers: a VAE run (and
its resume) in MLflow's local store and in TensorBoard's event files, a sweep and a lab tracked run by
run, and a tracker that is not installed refused in one line."""
import json

import pytest
from conftest import run_in_process

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ppl_models.runs import tracking  # noqa: E402

def run(script, *args, cwd):
    """``python examples/<script>.py ARGS`` from ``cwd``, in this process (the sweep starts its runs as
    processes of their own)."""
    return run_in_process(script, args, cwd=cwd)


def runs_of(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def test_a_vae_run_and_its_resume_are_one_tracked_run_in_mlflow_s_local_store_and_in_tensorboard(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    flags = ["--smoke", "--no-progress", "--hidden", 32, "--track", "mlflow", "tensorboard"]
    run("vae", *flags, "--epochs", 2, cwd=tmp_path)  # no MLFLOW_TRACKING_URI: the store under results/
    run("vae", *flags, "--epochs", 4, "--resume", cwd=tmp_path)
    folder = tmp_path / "results" / "vae" / "mlp-diag-z50-bernoulli-beta1-h32-seed0-smoke"
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    client, runs = runs_of(uri, "vae")
    assert len(runs) == 1  # the resume continued the same tracked run
    r = runs[0]
    results = json.loads((folder / "results.json").read_text())
    assert r.info.run_name == folder.name and r.info.status == "FINISHED"
    assert r.data.params["z_dim"] == "50" and r.data.params["hidden"] == "[32]"
    history = client.get_metric_history(r.info.run_id, "loss")
    csv_losses = [float(line.split(",")[1]) for line in (folder / "metrics.csv").read_text().splitlines()[1:]]
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(csv_losses)
    assert r.data.metrics["test/test_log_px"] == pytest.approx(results["metrics"]["test_log_px"])
    assert {"samples.png", "loss.png", "results.json"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(csv_losses, rel=1e-6)
    assert events.Scalars("test/test_log_px")[-1].value == pytest.approx(results["metrics"]["test_log_px"], rel=1e-6)
    assert "figures/samples" in events.Tags()["images"]


def test_a_sweep_and_a_lab_track_every_run_they_start(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run("sweep", "--serial", "--sweep-dir", tmp_path / "sweep", "vae", "--smoke", "--hidden", 16, "--z-dim", 2, 3,
        "--track", "mlflow", cwd=tmp_path)
    run("guides_lab", "--model", "vae", "--guides", "diag", "--smoke", "--no-progress", "--gap-images", 0,
        "--out", tmp_path / "lab", "--hidden", 16, "--track", "mlflow", "tensorboard", cwd=tmp_path)
    _, runs = runs_of(uri, "vae")
    names = sorted(r.info.run_name for r in runs)
    assert names == ["diag", "zdim2", "zdim3"] and all(r.info.status == "FINISHED" for r in runs)
    events = EventAccumulator(str(tmp_path / "lab" / "diag"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1]


def test_a_tracker_that_is_not_installed_is_refused_in_one_line(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(tracking.TrackerMissing, match=r"--track mlflow needs MLflow: pip install -e '.\[track\]'"):
        tracking.check_available(["tensorboard", "mlflow"])
