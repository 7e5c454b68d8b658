"""The guides lab end to end at smoke size, for every model."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = {  # model -> extra flags (a subset of guides where the whole registry would only cost time)
    "vae": ["--guides", "diag", "fullcov", "spline"],
    "ssvae": ["--guides", "mlp", "sample"],
    "cvae": ["--quadrants", "1"],
    "vrnn": [],
    "seqvae": [],
    "draw": [],
}


@pytest.mark.parametrize("model", sorted(LABS))
def test_guides_lab_smoke(model, tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "guides_lab.py"), "--model", model, "--smoke", "--no-progress",
           "--out", str(tmp_path / "lab"), *LABS[model]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lab = tmp_path / "lab"
    assert {"lab.md", "lab.csv", "lab.png"} <= {p.name for p in lab.iterdir()}
    rows = list(csv.DictReader(open(lab / "lab.csv")))
    guides = LABS[model][1:] if LABS[model][:1] == ["--guides"] else None
    if guides:
        assert [r["guide"] for r in rows] == guides
    assert all(float(r["test_log_px"]) < 0 for r in rows)
    if model == "vae":
        for r in rows:
            gap = float(r["log_px"]) - float(r["elbo_amortised"])
            assert gap == pytest.approx(float(r["approximation_gap"]) + float(r["amortisation_gap"]), abs=1e-3)
    if model == "ssvae":  # the score function's gradient is the noisier one, at the same parameters
        assert all(float(r["grad_var_sampled"]) > float(r["grad_var_enumerated"]) for r in rows)


def test_an_unknown_guide_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "guides_lab.py"), "--model", "vae", "--guides",
                           "gauss", "--smoke"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "--guides: unknown ['gauss']" in proc.stderr and "Traceback" not in proc.stderr
