"""The experiment layer as a user meets it: guide swaps in one output root, refusals, re-scoring,
the results schema, and the compare command over real smoke runs."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import refused_in_process, run_in_process

from ppl_models.runs import compare, experiment

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_KEYS = {"schema", "example", "run", "settings", "device", "hardware", "versions", "epochs", "eval_epoch",
               "train_seconds", "eval_seconds", "eval_only", "earlier_test_scores", "metrics"}


def run(script, *args, cwd, ok=True, own_process=False):
    """A smoke run of an example by its command-line path, in this process: one that must succeed, or
    one that must be refused (a non-zero exit, one line on stderr, no traceback); ``own_process``: as
    ``python examples/<script>.py`` in a process of its own."""
    argv = ["--smoke", "--no-progress", *args]
    if own_process:
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{script}.py"), *map(str, argv)],
                              capture_output=True, text=True, cwd=cwd, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert (proc.returncode == 0) == ok, proc.stdout[-1500:] + proc.stderr[-1500:]
        return proc
    if ok:
        return SimpleNamespace(stdout=run_in_process(script, argv, cwd), stderr="")
    return SimpleNamespace(stdout="", stderr=refused_in_process(script, argv, cwd, code=None) + "\n")


def results(folder):
    return json.loads((Path(folder) / "results.json").read_text())


def test_guide_swaps_in_one_root_never_collide(tmp_path):
    for args in (["--guide", "diag"], ["--guide", "iaf"], ["--guide", "delta", "--beta", "0"]):
        run("vae", *args, cwd=tmp_path)
    folders = sorted(p.parent for p in tmp_path.rglob("results.json"))
    assert [f.name for f in folders] == ["mlp-delta-z50-bernoulli-beta0-seed0-smoke",
                                         "mlp-diag-z50-bernoulli-beta1-seed0-smoke",
                                         "mlp-iaf-z50-bernoulli-beta1-seed0-smoke"]
    for f in folders:
        r = results(f)
        assert SCHEMA_KEYS <= set(r) and r["settings"]["guide"] in f.name
        assert f.parent == tmp_path / "results" / "vae"
    delta = results(folders[0])
    assert "test_log_px" not in delta["metrics"] and delta["settings"]["beta"] == 0.0
    # another guide over an existing run: refused, naming the settings that differ
    err = run("vae", "--guide", "lowrank", "--out", str(folders[1]), "--resume", cwd=tmp_path, ok=False).stderr
    assert "guide diag (asked: lowrank)" in err and len(err.strip().splitlines()) == 1
    # the same command again: refused (the run is kept) unless --overwrite
    err = run("vae", "--guide", "diag", cwd=tmp_path, ok=False).stderr
    assert "already holds a run" in err and "--resume" in err
    before = (folders[1] / "checkpoint.pt").read_bytes()
    assert (folders[1] / "checkpoint.pt").read_bytes() == before
    run("vae", "--guide", "diag", "--overwrite", cwd=tmp_path)


def test_eval_only_scores_a_run_again_without_training(tmp_path):
    out = tmp_path / "run"
    run("vae", "--out", str(out), cwd=tmp_path)
    ckpt = (out / "checkpoint.pt").read_bytes()
    first = results(out)
    run("vae", "--out", str(out), "--eval-only", "--eval-samples", "3", "--eval-images", "7", cwd=tmp_path)
    again = results(out)
    assert again["eval_only"] and again["metrics"]["eval_samples"] == 3 and again["metrics"]["eval_images"] == 7
    assert again["epochs"] == first["epochs"] and again["eval_epoch"] == first["eval_epoch"]
    assert again["earlier_test_scores"][-1]["metrics"] == first["metrics"]  # the first figure is kept
    assert (out / "checkpoint.pt").read_bytes() == ckpt  # nothing trained, nothing written
    err = run("vae", "--out", str(tmp_path / "none"), "--eval-only", cwd=tmp_path, ok=False).stderr
    assert "--eval-only: no run in" in err
    err = run("vae", "--out", str(out), "--eval-only", "--z-dim", "3", cwd=tmp_path, ok=False).stderr
    assert "z_dim 50 (asked: 3)" in err


def test_draw_attention_resume_over_a_run_without_is_refused(tmp_path):
    out = tmp_path / "draw"
    run("draw", "--out", str(out), cwd=tmp_path)
    err = run("draw", "--out", str(out), "--attention", "filterbank", "--resume", cwd=tmp_path, ok=False).stderr
    assert "attention none (asked: filterbank)" in err


def test_a_figure_scored_then_trained_further_is_kept_beside_the_new_one(tmp_path):
    out = tmp_path / "run"
    run("seqvae", "--out", str(out), cwd=tmp_path)
    first = results(out)
    run("seqvae", "--out", str(out), "--resume", "--epochs", "2", cwd=tmp_path)
    again = results(out)
    assert again["epochs"] == 2 and again["earlier_test_scores"][0]["epochs"] == 1
    assert again["earlier_test_scores"][0]["metrics"]["test_log_px"] == first["metrics"]["test_log_px"]


def test_compare_reads_two_real_runs_into_one_table(tmp_path, capsys):
    for guide in ("diag", "lowrank"):
        run("vae", "--guide", guide, cwd=tmp_path)
    rows, cols = compare.main(compare.parse_args([str(tmp_path / "results" / "vae"), "--sort", "guide",
                                                  "--csv", str(tmp_path / "t.csv")]))
    table = capsys.readouterr().out
    assert cols[:2] == ["run", "settings.guide"]  # the only setting that differs
    assert "test_log_px" in cols and "ess_mean" in cols
    assert [r["settings.guide"] for r in rows] == ["diag", "lowrank"]
    assert "| diag |" in table and "| lowrank |" in table
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("run,guide,test_log_px")
    proc = subprocess.run([sys.executable, "-m", "ppl_models.runs.compare", str(tmp_path / "nothing")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_merges_seeds():
    rows = [{"run": f"r{s}", "settings.seed": s, "settings.guide": "diag", "test_error": e}
            for s, e in ((0, 0.1), (1, 0.3))] + [{"run": "x", "settings.seed": 0, "settings.guide": "iaf",
                                                  "test_error": 0.2}]
    merged = compare.group(rows, "seed")
    diag = next(r for r in merged if r["settings.guide"] == "diag")
    assert diag["test_error"][0] == pytest.approx(0.2) and diag["test_error"][2] == 2
    assert compare.cell(diag["test_error"], "test_error") == "0.2000 +- 0.1414"


def test_settings_leave_out_only_the_free_flags():
    args = experiment.parser("", epochs=3, eval_samples=5, eval_images=5).parse_args(["--out", "x", "--seed", "4"])
    settings = experiment.settings_of(args)
    assert settings == {"batch_size": 100, "seed": 4, "smoke": False}
    assert experiment.run_name(args, "abc") == "abc-seed4"


@pytest.mark.parametrize("script, extra", [("vae", ["--guide", "iaf"]), ("cvae", ["--quadrants", "1"])])
def test_a_run_repeats_exactly_under_its_seed(script, extra, tmp_path):
    """Two processes, one command: the same figures to the last bit (on one machine; another CPU
    rounds differently, and early stopping can turn that into another stopping epoch)."""
    for name in ("a", "b"):
        run(script, "--out", str(tmp_path / name), "--threads", "1", *extra, cwd=tmp_path)
    assert results(tmp_path / "a")["metrics"] == results(tmp_path / "b")["metrics"]


def test_a_run_held_in_subfolders_is_refused_and_rescored(tmp_path):
    out = tmp_path / "ae"
    run("ae_vs_vae", "--out", str(out), cwd=tmp_path)
    assert "already holds a run" in run("ae_vs_vae", "--out", str(out), cwd=tmp_path, ok=False).stderr
    run("ae_vs_vae", "--out", str(out), "--eval-only", cwd=tmp_path)
    assert results(out)["eval_only"]


def test_a_corrupt_checkpoint_or_a_file_as_out_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"half a file")
    err = run("vae", "--out", str(tmp_path / "run"), "--resume", cwd=tmp_path, ok=False, own_process=True).stderr
    assert "corrupt" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    err = run("vae", "--out", str(tmp_path / "file"), cwd=tmp_path, ok=False).stderr
    assert "is a file, not a folder" in err


def test_compare_sorts_a_column_of_mixed_types():
    rows = [{"run": "a", "settings.hidden": "500,500"}, {"run": "b", "settings.hidden": 500}, {"run": "c"}]
    assert [r["run"] for r in compare.sort_rows(rows, "settings.hidden")] == ["b", "a", "c"]
