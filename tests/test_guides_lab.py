"""The guides lab end to end at smoke size, for every model (in this process, by its command-line path;
``tests/test_examples.py`` runs one lab as a process of its own)."""
import csv

import pytest
from conftest import refused_in_process, run_in_process

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
    run_in_process("guides_lab", ["--model", model, "--smoke", "--no-progress", "--out", tmp_path / "lab", *LABS[model]],
                   cwd=tmp_path)
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
    assert "--guides: unknown ['gauss']" in refused_in_process("guides_lab", ["--model", "vae", "--guides", "gauss",
                                                                         "--smoke"], cwd=tmp_path)


@pytest.mark.parametrize("vary, values", [("objective", ["iwae:1", "iwae:4", "dreg:4"]),
                                          ("prior", ["standard", "mog:3", "vamp:5", "flow:1"])])
def test_the_lab_varies_the_objective_or_the_prior_at_one_budget(vary, values, tmp_path):
    run_in_process("guides_lab", ["--model", "vae", "--vary", vary, "--values", *values, "--smoke", "--no-progress",
                                  "--gap-images", "0", "--out", tmp_path / "lab", "--hidden", "32"], cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "lab" / "lab.csv")))
    assert [r[vary] for r in rows] == [v.split(":")[0] for v in values]
    assert all(float(r["test_log_px"]) < 0 for r in rows)
    if vary == "objective":  # the gradient SNR at the trained parameters, for the guide and the model
        assert [r["particles"] for r in rows] == ["1", "4", "4"]
        assert all(float(r["snr_guide"]) > 0 and float(r["snr_model"]) > 0 for r in rows)
    else:
        assert [r["prior_components"] for r in rows] == ["", "3", "5", "1"]


def test_a_malformed_value_of_the_varied_part_is_refused(tmp_path):
    assert "K must be a positive integer" in refused_in_process("guides_lab", ["--model", "vae", "--vary", "objective",
                                                                           "--values", "iwae:x", "--smoke"], cwd=tmp_path)
