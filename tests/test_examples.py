"""Every example script runs end to end with --smoke, on real MNIST (a few hundred images)."""
import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import refused_in_process, run_in_process

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))

SMOKE = {  # script -> extra arguments for its smoke run (each run also gets --smoke --out DIR)
    "vae": [],
    "ae_vs_vae": ["--no-progress"],
    "benchmark_vae": [],
    "benchmark_fixed_cost": [],
    "render_models": [],
    "ssvae": ["--no-progress"],
    "benchmark_ssvae": [],
    "cvae": ["--no-progress"],
    "draw": ["--no-progress"],
    "benchmark_draw": [],
    "vrnn": ["--no-progress"],
    "benchmark_vrnn": [],
    "seqvae": ["--no-progress"],
    "guides_lab": ["--model", "vae", "--guides", "diag", "--hidden", "16", "--gap-images", "0", "--no-progress"],
    # (every model's lab, with its table checked: tests/test_guides_lab.py)
    "coloured_digits": [],
}
ELSEWHERE = {  # examples whose end-to-end smoke needs more than one command: where it is tested
    "attributes": "tests/test_attributes.py (a VAE trained first)",
    "sweep": "tests/test_sweep.py (Ray and serial sweeps)",
}


def run_example(name, out, *extra):
    """A smoke run of an example in this process (its command-line path, ``experiment.cli``); what it printed."""
    return run_in_process(name, ["--smoke", "--out", str(out), *extra])


def test_every_example_has_a_smoke_test():
    missing = [e for e in EXAMPLES if e not in SMOKE and e not in ELSEWHERE]
    assert not missing, f"examples without a smoke test in tests/test_examples.py: {missing}"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_smoke(name, tmp_path):
    """The command itself, in a process of its own: ``python examples/NAME.py --smoke --out DIR``."""
    cmd = [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--smoke", "--out", str(tmp_path), *SMOKE[name]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


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
        assert "test_log_px" not in results["metrics"]
    else:
        assert "test log p(x)" in out and results["metrics"]["test_log_px"] < 0
    if "2" in extra:
        assert {"latent.png", "manifold.png"} <= files


def test_ssvae_benchmark_times_a_trained_run_with_and_without_denormals(tmp_path):
    run_example("ssvae", tmp_path / "run", "--no-progress")
    out = run_example("benchmark_ssvae", tmp_path / "bench", "--from-run", str(tmp_path / "run"), "--denormals")
    timed = json.loads((tmp_path / "bench" / "denormals.json").read_text())
    assert timed["ms_kept"] > 0 and timed["ms_flushed"] > 0 and "ratio kept / flushed" in out


def refused(script, *args, cwd=ROOT):
    """Run an example that must refuse, in a process of its own: exit status 2, one line on stderr, no
    traceback. (Most refusals are checked in this process, ``conftest.refused_in_process``: the same
    command-line path without starting an interpreter for each.)"""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{script}.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def test_vae_resume_and_unknown_guide(tmp_path):
    run_example("vae", tmp_path, "--no-progress")
    out = run_example("vae", tmp_path, "--no-progress", "--resume")
    assert "resumed from" in out
    assert "invalid choice: 'gauss'" in refused("vae", "--guide", "gauss", "--smoke")


@pytest.mark.parametrize("labeled, message", [
    ("15", "--labeled must be a positive multiple of 10 up to 50000"),
    ("50010", "--labeled must be a positive multiple of 10 up to 50000"),
    ("0", "argument --labeled: must be a positive integer"),
])
def test_ssvae_bad_labeled_counts(labeled, message):
    assert message in refused_in_process("ssvae", ["--labeled", labeled])


@pytest.mark.parametrize("flags", [["--decoder-layers", "2"], ["--classifier-hidden", "100"]])
def test_ssvae_m2_network_sizes_are_refused_for_the_auxiliary_models(flags):
    assert "--decoder-layers and --classifier-hidden size M2's networks" in refused_in_process(
        "ssvae", ["--form", "adgm", *flags])


@pytest.mark.parametrize("script, args, message", [
    ("vae", ["--batch-size", "0"], "argument --batch-size: must be a positive integer, got 0"),
    ("vae", ["--lr", "-1"], "argument --lr: must be a positive number"),
    ("vae", ["--eval-samples", "0"], "argument --eval-samples: must be a positive integer"),
    ("vae", ["--beta", "-0.5"], "argument --beta: must be a number >= 0"),
    ("vae", ["--device", "tpu"], "argument --device: must be auto, cpu, cuda or cuda:N"),
    ("vae", ["--device", "cuda:7"], "CUDA"),
    ("vae", ["--lr-steps", "ten:1"], "EPOCH:LR"),
    ("vae", ["--resume", "--eval-only"], "exclude each other"),
    ("draw", ["--glimpses", "0"], "argument --glimpses: must be a positive integer"),
    ("vrnn", ["--anneal-epochs", "-1"], "argument --anneal-epochs: must be an integer >= 0"),
    ("seqvae", ["--threads", "0"], "argument --threads: must be a positive integer"),
    ("cvae", ["--quadrants", "4"], "argument --quadrants: invalid choice"),
    ("vae", ["--epoch", "3"], "unrecognized arguments: --epoch 3"),  # a prefix of --epochs is not guessed
])
def test_bad_flags_are_one_line_and_exit_2(script, args, message, tmp_path):
    assert message in refused_in_process(script, ["--smoke", "--out", tmp_path / "run", *args], cwd=tmp_path)


def test_ssvae_grey_pixels_and_m2_network_sizes_smoke(tmp_path):
    """``--binarize grey`` reports no log p(x) (a Bernoulli over grey values is no density);
    ``--decoder-layers`` and ``--classifier-hidden`` reach the networks and the settings."""
    out = run_example("ssvae", tmp_path, "--no-progress", "--labeled", "100", "--binarize", "grey",
                      "--decoder-layers", "2", "--classifier-hidden", "8")
    assert "test log p(x) not scored" in out
    r = json.loads((tmp_path / "results.json").read_text())
    assert "test_log_px" not in r["metrics"] and 0 <= r["metrics"]["test_error"] <= 1
    s = r["settings"]
    assert (s["binarize"], s["decoder_layers"], s["classifier_hidden"]) == ("grey", 2, 8)


def test_ssvae_sample_guide_smoke(tmp_path):
    out = run_example("ssvae", tmp_path, "--no-progress", "--guide", "sample", "--labeled", "100",
                      "--labeled-batch-size", "10", "--lr-steps", "1:2e-4")
    assert "test error" in out
    with open(tmp_path / "metrics.csv") as f:
        assert float(next(csv.DictReader(f))["lr"]) == 2e-4  # the step schedule
    assert (tmp_path / "confusion.png").exists()
    r = json.loads((tmp_path / "results.json").read_text())
    # the error of argmax q(y|x) on the smoke run's test images, a multiple of 1 / their number
    n = r["metrics"]["test_images_classified"]
    assert 0 <= r["metrics"]["test_error"] <= 1 and abs(r["metrics"]["test_error"] * n - round(r["metrics"]["test_error"] * n)) < 1e-4
    assert r["settings"]["guide"] == "sample" and r["metrics"]["test_log_px"] < 0
    assert r["settings"]["labeled_batch_size"] == 10
    m = r["metrics"]  # the story's own label posterior beside the classifier, on the same validation images
    assert m["story_posterior_images"] == 100 and m["story_posterior_samples"] == 8  # --eval-samples of --smoke
    assert 0 <= m["valid_error_story_posterior"] <= 1
    assert m["valid_error_classifier_same_images"] == pytest.approx(m["valid_error"])  # smoke: all 100 images
    judged(tmp_path, conditional=True)  # p(x | y, z) as a generator of the digit asked for


@pytest.mark.parametrize("form, guide", [("adgm", "mlp"), ("sdgm", "conv")])
def test_the_auxiliary_dgms_train_score_and_judge(form, guide, tmp_path):
    out = run_example("ssvae", tmp_path, "--no-progress", "--form", form, "--guide", guide, "--labeled", "100")
    assert f"100 labels, {form}, guide {guide}: test error" in out
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["settings"]["form"] == form and r["settings"]["a_dim"] == 100 and r["metrics"]["test_log_px"] < 0
    judged(tmp_path, conditional=True)


def test_the_cvae_under_pyro_s_protocol_trains_on_every_training_image_without_validation(tmp_path):
    run_example("cvae", tmp_path, "--no-progress", "--quadrants", "1", "--protocol", "pyro")
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "valid_neg_elbo" not in header and "loss" in header
    assert "valid_nll" not in (tmp_path / "baseline" / "metrics.csv").read_text()
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["settings"]["protocol"] == "pyro" and r["epochs"] == 1 and r["metrics"]["test_log_px"] < 0


@pytest.mark.parametrize("script, extra", [("vae", ["--objective", "meanfield"]), ("seqvae", []), ("draw", []),
                                           ("cvae", ["--quadrants", "1"]), ("vrnn", []),
                                           ("ssvae", ["--form", "sdgm", "--guide", "mlp"])])
def test_jit_trains_where_pyro_compiles_the_step(script, extra, tmp_path):
    run_example(script, tmp_path, "--no-progress", "--jit", *extra)
    r = json.loads((tmp_path / "results.json").read_text())
    assert "jit" not in r["settings"] and r["metrics"]["test_log_px"] < 0  # a speed flag: not a setting


def test_seqvae_samples_are_drawn_and_judged(tmp_path):
    out = run_example("seqvae", tmp_path, "--no-progress")
    assert "reconstruction RMSE" in out and "drawn the same way" in out
    judged(tmp_path, conditional=False)


def test_step_schedule():
    from ppl_models.runs.experiment import Refused, step_schedule
    f = step_schedule(1e-3, ["115:3e-4", "182:1e-4"])
    assert [f(e) for e in (1, 114, 115, 181, 182, 900)] == [1e-3, 1e-3, 3e-4, 3e-4, 1e-4, 1e-4]
    for bad in (["ten:1"], ["0:1e-4"], ["5:-1e-4"], ["5:nan"]):
        with pytest.raises(Refused, match="EPOCH:LR"):
            step_schedule(1e-3, bad)
    with pytest.raises(Refused, match="one rate per epoch"):
        step_schedule(1e-3, ["5:1e-4", "5:3e-4"])


@pytest.mark.parametrize("extra", [
    ["--data", "strokes", "--guide", "smoothing", "--condition", "label"],
    ["--data", "rows", "--prior", "none"],
])
def test_vrnn_variants(extra, tmp_path):
    out = run_example("vrnn", tmp_path, "--no-progress", *extra)
    assert "test log p(x)" in out
    assert {"samples.png", "loss.png", "results.json", "best.pt"} <= {p.name for p in tmp_path.iterdir()}
    judged(tmp_path, conditional="label" in extra)


def judged(out, conditional):
    """The run's samples were read by the digit classifier, and the figure is in results.json."""
    r = json.loads((out / "results.json").read_text())
    details = r["samples_judged"]
    assert 0 <= r["metrics"]["judge_test_error"] < 1 and details["judge"]["smoke"]
    if conditional:
        assert 0 <= r["metrics"]["label_fidelity"] <= 1 and len(details["per_class"]) == 10
        assert sum(map(sum, details["confusion"])) == 10 * details["samples_per_class"]
    else:
        assert sum(details["counts"]) == details["n"] == 50 and 1 <= r["metrics"]["classes_covered"] <= 10
    quality = details["sample_quality"]  # smoke size: 200 samples against the first 1000 test images
    assert quality["samples"] == 200 and r["metrics"]["fid"] == quality["fid"] > 0
    assert 0 <= r["metrics"]["precision"] <= 1 and 0 <= r["metrics"]["recall"] <= 1
    assert ("per_class" in quality) == conditional and (not conditional or len(quality["per_class"]) == 10)


@pytest.mark.parametrize("extra", [["--attention", "filterbank"], ["--condition", "label", "--guide", "noerror"]])
def test_draw_variants(extra, tmp_path):
    out = run_example("draw", tmp_path, "--no-progress", *extra)
    assert "test log p(x)" in out and (tmp_path / "glimpses.png").exists()
    if "label" in extra:
        assert (tmp_path / "samples_per_class.png").exists()
    judged(tmp_path, conditional="label" in extra)


def test_cvae_label_condition(tmp_path):
    out = run_example("cvae", tmp_path, "--no-progress", "--condition", "label", "--objective", "hybrid")
    assert "label fidelity" in out and (tmp_path / "samples_per_class.png").exists()
    judged(tmp_path, conditional=True)


def test_cvae_quadrants_under_one_out_are_one_run_each(tmp_path):
    run_example("cvae", tmp_path, "--no-progress", "--quadrants", "1", "3")
    for q in (1, 3):
        r = json.loads((tmp_path / f"q{q}" / "results.json").read_text())
        assert r["settings"]["quadrants"] == q and r["metrics"]["nn_log_px"] < 0
        assert (tmp_path / f"q{q}" / "baseline" / "checkpoint.pt").exists()


def test_cvae_hybrid_weight_at_an_end_is_rejected(tmp_path):
    assert "--guide gsnn" in refused("cvae", "--smoke", "--out", str(tmp_path), "--objective", "hybrid", "--hybrid", "0")
    assert "use --guide recognition" in refused_in_process("cvae", ["--smoke", "--out", tmp_path, "--objective",
                                                                    "hybrid", "--guide", "gsnn"])


@pytest.mark.parametrize("script, args, message", [
    ("ssvae", ["--form", "adgm", "--guide", "sample"], "--guide sample: --form adgm has the guides conv, mlp"),
    ("ssvae", ["--lr-steps", "0:1e-4"], "argument --lr-steps: must be EPOCH:LR with EPOCH >= 1"),
    ("vrnn", ["--jit", "--data", "strokes"], "argument --jit: not with --data strokes"),
    ("vae", ["--jit", "--objective", "iwae"], "argument --jit: Pyro compiles --objective elbo and meanfield only, not iwae"),
    ("cvae", ["--jit", "--condition", "label"], "argument --jit: not with --condition label"),
    ("ssvae", ["--objective", "iwae"], "--objective: iwae does not apply here (the label is summed out"),
    ("vrnn", ["--objective", "dreg"], "--objective: dreg does not apply here (its recurrent networks"),
    ("draw", ["--particles", "5"], "--particles: one particle only here"),
    ("vae", ["--objective", "hybrid"], "argument --objective: invalid choice: 'hybrid'"),
    ("vae", ["--prior", "vamp", "--guide", "iaf"], "--prior vamp mixes the guide's Gaussian posteriors"),
    ("vae", ["--vamp-init", "data"], "--vamp-init starts the VampPrior's pseudo-inputs: it needs --prior vamp"),
    ("vae", ["--guide", "delta", "--beta", "0", "--objective", "iwae", "--particles", "5"], "a point mass"),
])
def test_objectives_and_priors_that_do_not_apply_are_one_line(script, args, message, tmp_path):
    assert message in refused_in_process(script, ["--smoke", "--out", tmp_path, *args])


@pytest.mark.parametrize("flags, folder", [
    (["--objective", "iwae", "--particles", "3"], "mlp-diag-z50-bernoulli-beta1-h32-iwae3-seed0-smoke"),
    (["--objective", "dreg", "--particles", "2", "--prior", "vamp", "--prior-components", "5"],
     "mlp-diag-z50-bernoulli-beta1-h32-vamp5-dreg2-seed0-smoke"),
    (["--objective", "stl", "--particles", "2", "--prior", "flow"], "mlp-diag-z50-bernoulli-beta1-h32-flow2-stl2-seed0-smoke"),
    (["--objective", "renyi", "--renyi-alpha", "0.5", "--particles", "2", "--prior", "mog"],
     "mlp-diag-z50-bernoulli-beta1-h32-mog10-renyi0.5k2-seed0-smoke"),
    (["--objective", "meanfield"], "mlp-diag-z50-bernoulli-beta1-h32-meanfield-seed0-smoke"),
])
def test_the_objective_and_the_prior_name_the_run_folder(flags, folder):
    spec = importlib.util.spec_from_file_location("vae_example", ROOT / "examples" / "vae.py")
    vae = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vae)
    args = vae.parse_args(["--smoke", "--hidden", "32", *flags])
    from ppl_models.runs import experiment
    assert experiment.run_name(args, vae.run_template(args)) == folder


@pytest.mark.parametrize("flags", [  # iwae and dreg, and every prior, train in tests/test_guides_lab.py too
    ["--objective", "stl", "--particles", "2", "--prior", "flow"],
    ["--objective", "renyi", "--renyi-alpha", "0.5", "--particles", "2", "--prior", "mog"],
    ["--objective", "meanfield", "--prior", "vamp", "--prior-components", "5", "--vamp-init", "data"],
])
def test_every_objective_and_prior_trains_the_vae(flags, tmp_path):
    run_example("vae", tmp_path, "--no-progress", "--hidden", "32", *flags)
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["settings"]["objective"] == flags[1] and r["settings"]["prior"] == flags[flags.index("--prior") + 1]
    assert r["metrics"]["test_log_px"] < 0


@pytest.mark.parametrize("script, flags", [
    ("seqvae", ["--objective", "iwae", "--particles", "2"]),
    ("cvae", ["--quadrants", "1", "--objective", "dreg", "--particles", "2"]),
])
def test_the_multi_particle_objectives_train_the_other_plate_models(script, flags, tmp_path):
    out = run_example(script, tmp_path, "--no-progress", *flags)
    assert "test log p(x)" in out
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["settings"]["objective"] == flags[-3] and r["settings"]["particles"] == 2


def readme_commands():
    """``(script, flags)`` of every ``python examples/NAME.py ...`` in the README, the results page and
    the lessons' text."""
    text = (ROOT / "README.md").read_text() + "\n" + (ROOT / "examples" / "README.md").read_text()
    for lesson in sorted((ROOT / "examples" / "notebooks").glob("*.ipynb")):
        cells = json.loads(lesson.read_text())["cells"]
        text += "\n" + "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    found = [c.replace("\n", " ") for c in re.findall(r"`(python examples/[^`]+)`", text)]
    found += re.findall(r"^(?:.*&& )?(python examples/.+?)(?:\s+#.*)?$", text, flags=re.M)
    commands = set()
    for c in found:
        m = re.match(r"python examples/(\w+)\.py(.*)", c.strip())
        commands.add((m.group(1), " ".join(m.group(2).split())))
    return sorted(commands)


@pytest.mark.parametrize("script, flags", readme_commands())
def test_every_readme_command_is_accepted(script, flags):
    """The README's commands still parse under today's flags (they are not run: they train for hours)."""
    spec = importlib.util.spec_from_file_location(f"example_{script}", ROOT / "examples" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = getattr(module, "parse_args", None) or (lambda argv: module.parser().parse_args(argv))
    parse(flags.split())


def test_the_fixed_cost_benchmark_says_where_the_pyro_step_s_time_goes(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "benchmark_fixed_cost.py"), "--smoke", "--out", str(tmp_path),
           "--models", "vae", "--profile", "--loop"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads((tmp_path / "benchmark.json").read_text())["rows"][0]
    shares = row["profile"]
    assert row["ms_fit_loop"] > 0 and row["ms_bare_loop"] > 0 and "the training loop:" in out.stdout
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["Pyro: effect handlers (trace, replay, plates, messages)"] > 0
    assert shares["arithmetic (torch's kernels: forward, backward, Adam's update)"] > 0.1
    assert "where the Pyro step's time goes" in out.stdout


def test_the_vae_s_kl_warm_up_raises_the_weight_linearly_and_names_the_run(tmp_path):
    run_example("vae", tmp_path, "--no-progress", "--epochs", "3", "--warmup-epochs", "2")
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    betas = [float(r.split(",")[header.index("beta")]) for r in rows[1:]]
    assert betas == [0.5, 1.0, 1.0]
    from ppl_models.runs.experiment import load_example
    vae = load_example("vae")
    name = vae.run_template(vae.parse_args(["--warmup-epochs", "100", "--prior", "vamp"]))
    assert name.endswith("-vamp500-warmup100")
    name = vae.run_template(vae.parse_args(["--warmup-epochs", "5", "--prior", "vamp", "--vamp-init", "data"]))
    assert name.endswith("-vamp500-init-data-warmup5")


def test_the_cvae_s_network_inputs_default_per_task_and_an_older_run_rebuilds_as_it_was(tmp_path):
    """Quadrant completion defaults to p(y | z) and q(z | y), the label task to p(y | x, z) and
    q(z | x, y); a run saved before the flags existed (its settings lack them) rebuilds with the
    networks it was trained with, and its name says the inputs that are not the task's default."""
    import torch

    from ppl_models.runs import experiment
    cvae = experiment.load_example("cvae")
    args = cvae.parse_args([])
    assert (args.generation_input, args.recognition_input) == ("z", "y")
    args = cvae.parse_args(["--condition", "label"])
    assert (args.generation_input, args.recognition_input) == ("xz", "xy")
    run_example("cvae", tmp_path, "--no-progress", "--quadrants", "1", "--generation-input", "xz",
                "--recognition-input", "xy")
    assert cvae.run_template(cvae.parse_args(["--generation-input", "xz", "--recognition-input", "xy"])) == \
        "q{quadrants}-{targets}-{guide}-z{z_dim}-gen-xz-rec-xy"
    ckpt_path = tmp_path / "best.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert ckpt["settings"].pop("generation_input") == "xz"  # as a checkpoint from before the flags
    assert ckpt["settings"].pop("recognition_input") == "xy"
    torch.save(ckpt, ckpt_path)
    run = experiment.rebuild(tmp_path)
    assert run.model.generation_input == "xz" and run.model.generation_net[0].in_features == 784 + 200
    assert run.guide.inputs == "xy" and run.guide.net[0].in_features == 784 + 784
