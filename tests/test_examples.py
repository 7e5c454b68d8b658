"""Every example script runs end to end with --smoke, on real MNIST (a few hundred images)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))

SMOKE = {  # script -> extra arguments for its smoke run (each run also gets --smoke --out DIR)
    "vae": [],
    "ae_vs_vae": ["--no-progress"],
    "benchmark_vae": [],
    "render_models": [],
    "ssvae": ["--no-progress"],
    "benchmark_ssvae": [],
    "cvae": ["--no-progress"],
    "draw": ["--no-progress"],
    "benchmark_draw": [],
    "vrnn": ["--no-progress"],
    "benchmark_vrnn": [],
    "seqvae": ["--no-progress"],
}


def run_example(name, out, *extra):
    cmd = [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--smoke", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_every_example_has_a_smoke_test():
    missing = [e for e in EXAMPLES if e not in SMOKE]
    assert not missing, f"examples without a smoke test in tests/test_examples.py: {missing}"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_smoke(name, tmp_path):
    run_example(name, tmp_path, *SMOKE[name])


@pytest.mark.parametrize("extra", [
    ["--guide", "iaf", "--threads", "1"],
    ["--decoder", "conv", "--guide", "conv", "--z-dim", "2"],
    ["--guide", "delta", "--beta", "0"],
    ["--binarize", "grey", "--guide", "lowrank", "--optim", "rmsprop"],
])
def test_vae_variants(extra, tmp_path):
    out = run_example("vae", tmp_path, "--no-progress", *extra)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"samples.png", "reconstructions.png", "loss.png", "metrics.csv", "checkpoint.pt"} <= files
    results = json.loads((tmp_path / "results.json").read_text())
    if "delta" in extra:
        assert "test_nll" not in results
    else:
        assert "test NLL" in out and results["test_nll"] > 0
    if "2" in extra:
        assert {"latent.png", "manifold.png"} <= files


def test_vae_resume_and_unknown_guide(tmp_path):
    run_example("vae", tmp_path, "--no-progress")
    out = run_example("vae", tmp_path, "--no-progress", "--resume")
    assert "resumed from" in out
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "vae.py"), "--guide", "gauss", "--smoke"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "unknown guide 'gauss'" in proc.stderr


@pytest.mark.parametrize("labeled", ["15", "50010", "0"])
def test_ssvae_bad_labeled_counts(labeled):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ssvae.py"), "--labeled", labeled],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "--labeled must be a positive multiple of 10 up to 50000" in proc.stderr


def test_ssvae_sample_guide_smoke(tmp_path):
    out = run_example("ssvae", tmp_path, "--no-progress", "--guide", "sample", "--labeled", "100")
    assert "test error" in out
    assert (tmp_path / "labeled100_sample_seed0" / "confusion.png").exists()


def test_vae_step_schedule():
    sys.path.insert(0, str(ROOT / "examples"))
    from vae import step_schedule
    f = step_schedule(1e-3, ["115:3e-4", "182:1e-4"])
    assert [f(e) for e in (1, 114, 115, 181, 182, 900)] == [1e-3, 1e-3, 3e-4, 3e-4, 1e-4, 1e-4]
    with pytest.raises(SystemExit, match="EPOCH:LR"):
        step_schedule(1e-3, ["ten:1"])


@pytest.mark.parametrize("extra", [
    ["--data", "strokes", "--guide", "smoothing", "--condition", "label"],
    ["--data", "rows", "--prior", "none"],
])
def test_vrnn_variants(extra, tmp_path):
    out = run_example("vrnn", tmp_path, "--no-progress", *extra)
    assert "test log p(x)" in out
    assert {"samples.png", "loss.png", "results.json", "best.pt"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("extra", [["--attention", "filterbank"], ["--condition", "label", "--guide", "noerror"]])
def test_draw_variants(extra, tmp_path):
    out = run_example("draw", tmp_path, "--no-progress", *extra)
    assert "test NLL" in out and (tmp_path / "glimpses.png").exists()
    if "label" in extra:
        assert (tmp_path / "samples_per_class.png").exists()


def test_cvae_label_condition(tmp_path):
    out = run_example("cvae", tmp_path, "--no-progress", "--condition", "label", "--guide", "hybrid")
    assert "label" in out and (tmp_path / "label_grey" / "samples_per_class.png").exists()


def test_cvae_hybrid_weight_at_an_end_is_rejected(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "cvae.py"), "--smoke", "--out", str(tmp_path),
           "--guide", "hybrid", "--hybrid", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "--guide gsnn" in proc.stderr
