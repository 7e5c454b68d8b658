"""The experiment layer every example shares: flags, run folders, settings that travel with the
weights, one results format, and one-line errors. Plain functions; an example reads top to bottom::

    def parse_args(argv=None):
        p = experiment.parser(__doc__, epochs=50, eval_samples=1000, eval_images=10000)
        p.add_argument("--guide", default="diag", choices=sorted(GUIDES))    # the example's own flags
        return p.parse_args(argv)

    def main(args):
        run = experiment.start(args, "vae", "{guide}-z{z_dim}")    # device, threads, seed, run folder
        ...data, model, guide...
        history = experiment.train(run, model, guide, loss, batches, validate=..., best=...)
        eval_epoch = experiment.load_best(run, model, guide)      # this run's own best.pt
        metrics = experiment.score(run, model, guide, x_test)     # the shared importance sampler
        return experiment.finish(run, metrics, history, eval_epoch)

    if __name__ == "__main__":
        experiment.cli(main, parse_args)

Run folders: ``--out`` defaults to ``results/<example>/<name>-seed<k>`` (``-smoke`` added under
``--smoke``), the name formatted from the run's settings, so runs with other settings never share
a folder. Every checkpoint stores the settings (all flags but the ones in ``FREE``, which may change
between a run and its resume); ``--resume`` and ``--eval-only`` refuse a checkpoint written with
other settings, naming the ones that differ, and a fresh run refuses a folder that holds another
run unless ``--overwrite`` is given.

Results: one ``results.json`` per run, the same keys for every model (``RESULTS_SCHEMA``)::

    {"schema": 1, "example": "vae", "run": "diag-z50-seed0", "settings": {...}, "device": "cpu",
     "hardware": "...", "versions": {...}, "epochs": 244, "eval_epoch": 240, "train_seconds": ...,
     "eval_seconds": ..., "eval_only": false, "earlier_test_scores": [...],
     "metrics": {"test_elbo": ..., "test_log_px": ..., "eval_samples": ..., "eval_images": ...,
                 "ess_mean": ..., "khat_above_0_7": ..., "exact": false, <the model's own, e.g. test_error>}}

``test_elbo`` and ``test_log_px`` are per example (image or sequence) in nats, higher is better.
``python -m ppl_models.runs.compare DIR...`` turns any set of them into one table.
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyro
import torch

from ppl_models.data import DataError
from ppl_models.inference import distributed
from ppl_models.inference.evaluate import evaluate
from ppl_models.inference.objectives import JIT_OBJECTIVES, OBJECTIVES
from ppl_models.inference.train import (
    BEST,
    CHECKPOINT,
    CheckpointNotSaved,
    CorruptCheckpoint,
    SettingsMismatch,
    UNSTATED,
    TrainingDiverged,
    check_settings,
    fit,
    load_checkpoint,
    read_checkpoint,
    resolve_device,
    settings_diff,
)
from ppl_models.runs import tracking

RESULTS, RESULTS_SCHEMA = "results.json", 1
# Flags that may differ between a run and its resume or re-evaluation: where the run lives, how it
# is watched, how long it trains, how it is scored, the learning-rate schedule.
FREE = {"out", "resume", "overwrite", "eval_only", "no_progress", "threads", "device", "epochs", "track",
        "eval_samples", "eval_images", "lr", "lr_steps", "lr_decay", "patience", "valid_every", "seeds", "jit"}
SMOKE = {"epochs": 1, "eval_samples": 8, "eval_images": 20}
SMOKE_SIZES = (200, 100, 100)  # the first images of train, valid and test under --smoke
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Refused(ValueError):
    """A command that cannot run as given (bad flag combination, a folder holding another run...)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: argument --batch-size: must be ...``, exit 2).
    Under ``--smoke`` the flags of ``SMOKE`` that the command does not give take the smoke sizes."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch is not --epochs: a prefix is refused, not guessed
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        allowed = getattr(self, "objectives", None)
        if allowed is not None and getattr(ns, "objective", None) not in allowed:
            self.error(f"argument --objective: {ns.objective} does not apply here ({self.objectives_why}); "
                       f"choose from {', '.join(allowed)}")
        if allowed == ("elbo",) and getattr(ns, "particles", 1) != 1:
            self.error(f"argument --particles: one particle only here ({self.objectives_why})")
        if getattr(ns, "jit", False) and getattr(self, "jit_why", None):
            self.error(f"argument --jit: not here ({self.jit_why})")
        if getattr(ns, "jit", False) and getattr(ns, "objective", "elbo") not in JIT_OBJECTIVES:
            self.error(f"argument --jit: Pyro compiles --objective {' and '.join(JIT_OBJECTIVES)} only, "
                       f"not {ns.objective}")
        if getattr(ns, "smoke", False):
            given = {a.split("=")[0] for a in (sys.argv[1:] if args is None else args) if a.startswith("--")}
            for k, v in SMOKE.items():
                if hasattr(ns, k) and "--" + k.replace("_", "-") not in given:
                    setattr(ns, k, v)
        return ns, rest


def ranged(convert, test, allowed):
    """An argparse ``type=``: ``convert(text)`` that must pass ``test``, else ``must be <allowed>``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value
    parse.__name__ = allowed
    return parse


positive_int = ranged(int, lambda v: v > 0, "a positive integer")
nonnegative_int = ranged(int, lambda v: v >= 0, "an integer >= 0")
positive_float = ranged(float, lambda v: v > 0 and np.isfinite(v), "a positive number")
nonnegative_float = ranged(float, lambda v: v >= 0 and np.isfinite(v), "a number >= 0")
finite_float = ranged(float, lambda v: bool(np.isfinite(v)), "a finite number")


def device_name(text):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked by :func:`start`)."""
    ok = text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())
    if not ok:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def parser(doc, *, epochs, batch_size=100, lr=1e-3, eval_samples=None, eval_images=None, objectives=None,
           why=None, jit_why=None):
    """An argument parser with the common flags; an example adds its own.
    ``eval_samples=None`` leaves out the evaluation flags (an example that scores nothing).
    ``objectives``: the ``--objective`` names that apply to the example's model (``None``: no objective
    flags); any other is refused in one line that says ``why``. ``jit_why``: why ``--jit`` (Pyro's
    compiled ELBO) does not work for the example's model, which refuses it with that reason."""
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("common to every example")
    if objectives is not None:
        p.objectives, p.objectives_why = tuple(objectives), why or "the model's latents allow only these"
        p.jit_why = jit_why
        g.add_argument("--objective", default="elbo", choices=sorted(set(OBJECTIVES) | set(objectives)),
                       help="elbo (Trace_ELBO), meanfield (analytic KL), iwae, renyi, stl, dreg "
                            "(ppl_models/inference/objectives.py); those that apply: " + ", ".join(objectives))
        g.add_argument("--particles", type=positive_int, default=1,
                       help="K: particles per example of the objective, vectorised (default 1)")
        g.add_argument("--renyi-alpha", type=finite_float, default=0.5,
                       help="the order alpha of --objective renyi (0: the IWAE bound, 1: the ELBO)")
        g.add_argument("--jit", action="store_true",
                       help="Pyro's JIT-compiled ELBO (elbo, meanfield): the same loss with less Python per step "
                            "(examples/benchmark_fixed_cost.py --jit measures it)")
    g.add_argument("--epochs", type=positive_int, default=epochs, help="epochs to train (default %(default)s)")
    g.add_argument("--batch-size", type=positive_int, default=batch_size)
    g.add_argument("--lr", type=positive_float, default=lr, help="learning rate (Adam)")
    if eval_samples is not None:
        g.add_argument("--eval-samples", type=positive_int, default=eval_samples,
                       help="importance samples S for the test figures (default %(default)s)")
        g.add_argument("--eval-images", type=positive_int, default=eval_images,
                       help="test examples scored, the first N (default %(default)s)")
    g.add_argument("--seed", type=nonnegative_int, default=0)
    g.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    g.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    g.add_argument("--out", default=None, help="run folder (default: results/<example>/<settings>-seed<k>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    g.add_argument("--eval-only", action="store_true", help="score the run's best checkpoint again, no training")
    g.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    g.add_argument("--smoke", action="store_true", help="a few hundred examples, one epoch, tiny evaluation")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--track", nargs="+", default=[], choices=tracking.TRACKERS,
                   help="mirror the run into MLflow and/or TensorBoard (pip install -e '.[track]')")
    return p


def add_lr_steps(p):
    """The ``--lr-steps`` flag of an example that offers a step schedule (read by :func:`step_schedule`)."""
    p.add_argument("--lr-steps", nargs="*", default=[], metavar="EPOCH:LR", type=lr_step,
                   help="step schedule: from EPOCH on use LR, e.g. 50:3e-4 80:1e-4 (default: a constant rate); "
                        "not stored with the run: a resume follows the schedule given to it (or none)")


def lr_step(text):
    """One ``EPOCH:LR`` step of ``--lr-steps`` (kept as written), checked when the flags are read."""
    try:
        step_schedule(1.0, [text])
    except Refused:
        raise argparse.ArgumentTypeError(f"must be EPOCH:LR with EPOCH >= 1 and LR > 0, such as 50:3e-4, got {text!r}") from None
    return text


def step_schedule(lr, steps):
    """``lr`` until the first ``EPOCH:LR`` step, then that step's rate, and so on."""
    try:
        table = sorted((int(e), float(v)) for e, v in (s.split(":") for s in steps))
    except ValueError:
        raise Refused(f"--lr-steps takes EPOCH:LR pairs such as 100:3e-4, got {steps}") from None
    if any(e < 1 or not math.isfinite(v) or v <= 0 for e, v in table):
        raise Refused(f"--lr-steps takes EPOCH:LR pairs with EPOCH >= 1 and LR > 0, got {steps}")
    if len({e for e, _ in table}) < len(table):
        raise Refused(f"--lr-steps takes one rate per epoch, got {steps}")
    return lambda epoch: next((v for e, v in reversed(table) if epoch >= e), lr)


def settings_of(args, free=()):
    """The settings a checkpoint must match: every flag except the ``FREE`` ones (and ``free``), as
    JSON values."""
    return json.loads(json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in FREE | set(free)}))


def held_checkpoint(out):
    """The checkpoint of a run held in ``out`` (its own, or a sub-run's), or ``None``."""
    found = sorted(Path(out).glob(CHECKPOINT)) + sorted(Path(out).glob(f"*/{CHECKPOINT}"))
    return found[0] if found else None


def objective_tag(args):
    """The objective's part of a run folder's name: nothing for the ELBO with one particle, else e.g.
    ``-iwae5``, ``-dreg50``, ``-renyi0.5k5``, ``-meanfield``, ``-elbo-k5``."""
    name, k = getattr(args, "objective", "elbo"), getattr(args, "particles", 1)
    if name == "elbo":
        return "" if k == 1 else f"-elbo-k{k}"
    if name == "renyi":
        return f"-renyi{args.renyi_alpha:g}k{k}"
    if name in ("meanfield", "hybrid"):
        return f"-{name}" + (f"-k{k}" if k > 1 else "")
    return f"-{name}{k}"


def run_name(args, template):
    return (template.format(**vars(args)) + objective_tag(args) + f"-seed{args.seed}"
            + ("-smoke" if args.smoke else ""))


def device_of(args):
    """The device ``--device`` names (``auto``: CUDA when present), after setting ``--threads`` and
    flushing denormal floats to zero; an unavailable device is refused.

    A trained network's saturated outputs (M2's classifier on its labelled images) give gradients and
    Adam moments below 1e-38 (denormals), which x86 CPUs compute many times slower than normal
    floats; as zeros they change nothing measurable (``examples/benchmark_ssvae.py --denormals``
    times a trained M2 step both ways)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # False (and no effect) where the CPU cannot
    try:
        device = resolve_device(args.device)
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise RuntimeError(f"--device {args.device}: PyTorch sees {torch.cuda.device_count()} CUDA device(s)")
    except (RuntimeError, ValueError) as e:
        raise Refused(str(e)) from None
    return device


def start(args, example, template, out=None, free=(), serial_only=None):
    """Set up one run: threads, device, seed, its folder. Returns ``run`` (``run.out``, ``run.device``,
    ``run.settings``, ``run.args``, ``run.example``). ``template`` names the default folder from the
    settings, e.g. ``"{guide}-z{z_dim}"``; ``out`` overrides ``--out`` (a sub-run of one command);
    ``free`` names the example's own flags that may change on a resume (e.g. a training length).
    Under ``torchrun`` with several processes the run trains data-parallel (``ppl_models.inference.distributed``),
    unless the example gives a reason it cannot (``serial_only``), which refuses the command."""
    if args.resume and args.eval_only:
        raise Refused("--resume and --eval-only exclude each other: --resume trains on, --eval-only only scores")
    try:
        tracking.check_available(getattr(args, "track", None))
    except tracking.TrackerMissing as e:
        raise Refused(str(e)) from None
    device = device_of(args)
    if distributed.launched():
        if serial_only:
            raise Refused(f"{example} does not train data-parallel under torchrun: {serial_only}; "
                          "run it as one process")
        try:
            device = distributed.init(device)
        except RuntimeError as e:
            raise Refused(str(e)) from None
    name = run_name(args, template)
    out = Path(out or args.out or Path("results") / example / name)
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file, not a folder")
    settings = settings_of(args, free)
    ckpt = held_checkpoint(out)
    if ckpt is not None and distributed.restarted() and not args.eval_only and not args.resume:
        args.resume = True  # torchrun started the workers again after one died: continue, do not refuse
        print(f"{example}: torchrun restart {distributed.restarted()}: continuing the run in {out} "
              "from its last complete checkpoint")
    if args.eval_only and ckpt is None:
        raise Refused(f"--eval-only: no run in {out} (no {CHECKPOINT}); train it first")
    if ckpt is not None and not (args.resume or args.eval_only or args.overwrite):
        saved = read_checkpoint(ckpt)
        same = not settings_diff(saved.get("settings") or {}, settings)
        raise Refused(f"{out} already holds a run ({'same' if same else 'other'} settings, epoch {saved['epoch']}): "
                      "--resume continues it, --eval-only scores it, --overwrite starts it again, "
                      "or choose another --out")
    pyro.set_rng_seed(args.seed)  # network initialisation; fit() seeds again for training
    print(f"{example}: run folder {out} on {device}")
    return SimpleNamespace(out=out, device=device, settings=settings, args=args, example=example, name=out.name,
                           started=time.time(), trackers=[])


def train(run, model, guide, loss, batches, *, out=None, **kwargs):
    """``fit`` with the run's folder, seed, settings, epochs, learning rate and flags; under ``--eval-only``
    the history stored in the run's checkpoint instead (after checking its settings)."""
    out = Path(out or run.out)
    a = run.args
    tracked = out == Path(run.out) and getattr(a, "track", None) and distributed.is_main()  # the run, not a part
    if a.eval_only:
        ckpt = read_checkpoint(out / CHECKPOINT)
        check_settings(ckpt, run.settings, out / CHECKPOINT)
        if tracked:  # re-scored: the figures go to the run's tracked run
            run.trackers = tracking.open_trackers(a.track, out, run.example, run.settings, True, ckpt["epoch"] + 1)
        distributed.end()
        return ckpt["history"]
    kwargs.setdefault("lr", a.lr)
    kwargs.setdefault("epochs", a.epochs)
    if tracked:
        resuming = a.resume and (out / CHECKPOINT).exists()
        start = read_checkpoint(out / CHECKPOINT)["epoch"] + 1 if resuming else 1
        run.trackers = tracking.open_trackers(a.track, out, run.example, run.settings, resuming, start)
    on_epoch = (lambda row: [t.epoch(row) for t in run.trackers]) if run.trackers else None
    history = fit(model, guide, loss, batches, out=out, resume=a.resume, seed=a.seed,
                  progress=not a.no_progress, settings=run.settings, example=run.example, on_epoch=on_epoch, **kwargs)
    distributed.end()  # data-parallel: the other ranks end here, rank 0 scores and writes alone
    return history


def load_best(run, model, guide, out=None):
    """Load this run's best checkpoint (its last one where it keeps no best) into model and guide;
    return its epoch. The checkpoint's settings must be the run's."""
    out = Path(out or run.out)
    epoch = load_checkpoint(saved_checkpoint(out), model, guide, settings=run.settings)["epoch"]
    model.eval(), guide.eval()
    return epoch


def score(run, model, guide, *data, batch_size=None, **kwargs):
    """The test figures of the shared evaluator on the first ``--eval-images`` examples with
    S = ``--eval-samples``: the ``metrics`` of ``results.json`` (``test_elbo``, ``test_log_px``, ...)."""
    a = run.args
    n = min(a.eval_images, len(data[0]))
    data = [d[:n] if torch.is_tensor(d) else d for d in data]
    kwargs = {k: (v[:n] if torch.is_tensor(v) and v.dim() and len(v) >= n else v) for k, v in kwargs.items()}
    t0 = time.time()
    bs = batch_size or max(1, min(100, 20_000 // a.eval_samples))
    r = evaluate(model, guide, *data, num_samples=a.eval_samples, batch_size=bs, progress=not a.no_progress,
                 **kwargs)
    metrics = {"test_elbo": r["elbo_mean"], "test_log_px": r["log_px_mean"], "eval_samples": a.eval_samples,
               "eval_images": n, "exact": r["exact"], "eval_seconds": time.time() - t0}
    if not r["exact"]:
        metrics["ess_mean"] = float(r["ess"].mean())
        if "khat" in r:
            metrics["khat_above_0_7"] = float((r["khat"] > 0.7).mean())
    how = "exact" if r["exact"] else f"IS, S={a.eval_samples}"
    tail = "" if r["exact"] else f", mean ESS {metrics['ess_mean']:.1f}" + (
        f", k-hat > 0.7 for {100 * metrics['khat_above_0_7']:.1f}%" if "khat_above_0_7" in metrics else "")
    print(f"test log p(x) {metrics['test_log_px']:.2f} nats ({how}, {n} test examples), "
          f"ELBO {metrics['test_elbo']:.2f}{tail}")
    return metrics


def smoke_subsets(args, *splits, sizes=SMOKE_SIZES):
    """Under ``--smoke`` the first ``sizes`` examples of each split (train, valid, test: a ``Split``, a
    tensor, or a dict of tensors), else the splits as they are. One size for every example: smoke runs
    check wiring, not figures."""
    if not args.smoke:
        return splits

    def first(s, n):
        if hasattr(s, "subset"):
            return s.subset(slice(0, n))
        if isinstance(s, dict):
            return {k: (v[:n] if v is not None else None) for k, v in s.items()}
        return s[:n]
    return tuple(first(s, n) for s, n in zip(splits, sizes))


def validation(model, guide, *data, key="valid_loss", batch_size=1000, **kwargs):
    """The closure ``fit`` calls to validate: ``{key: -ELBO}`` per example on ``data`` (one particle, the
    shared evaluator; ``kwargs`` go to it, e.g. ``particles="plate"`` or ``lengths=``)."""
    def validate():
        r = evaluate(model, guide, *data, num_samples=1, batch_size=batch_size, khat=False, **kwargs)
        return {key: r["neg_elbo"]}
    return validate


def each(args, flag, values, run_one, folder):
    """One command, several runs (seeds, observed quadrants, ...): ``run_one(args)`` once per value of
    ``flag``; with ``--out`` and several values each run gets the subfolder ``folder.format(value)``.
    Returns the runs' results."""
    runs = []
    for value in values:
        one = copy.copy(args)
        setattr(one, flag, value)
        if args.out and len(values) > 1:
            one.out = str(Path(args.out) / folder.format(value))
        runs.append(run_one(one))
    return runs


def load_example(name, folder=None):
    """``examples/<name>.py`` (or ``<folder>/<name>.py``) as a module: its ``parse_args``, ``main`` and,
    for a model's example, ``build`` and ``load_data``."""
    folder = Path(folder or EXAMPLES)
    path = folder / f"{name}.py"
    if not path.exists():
        raise Refused(f"no example {name!r} in {folder}")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def saved_checkpoint(folder):
    """The checkpoint a run folder is scored from: ``best.pt`` (the best validation epoch), else the
    last epoch's ``checkpoint.pt``; a folder with neither is refused."""
    folder = Path(folder)
    for name in (BEST, CHECKPOINT):
        if (folder / name).exists():
            return folder / name
    raise Refused(f"{folder}: no {CHECKPOINT} there; it holds no trained run")


def example_of(folder, ckpt):
    """The example that wrote a run folder: recorded in its checkpoint, else in its ``results.json``."""
    if ckpt.get("example"):
        return ckpt["example"]
    results = Path(folder) / RESULTS
    if results.exists():
        return json.loads(results.read_text()).get("example")
    return None


def rebuild(folder, device="cpu", example=None):
    """A run folder back to what trained it: ``run.model`` and ``run.guide`` with the weights of its
    best checkpoint (:func:`saved_checkpoint`), in evaluation mode on ``device``; ``run.args`` (the
    example's flags with the saved settings), ``run.epoch``, ``run.example`` (the example's module)
    and ``run.load_data()``, the run's own data (for the VAE: its dataset, image shape and
    binarization) as the example loads it. The one way every tool (eval-only, the lab, attribute
    vectors, the sweep's tables, the lessons) turns a folder into a model."""
    folder = Path(folder)
    path = saved_checkpoint(folder)
    ckpt = read_checkpoint(path)
    name = example or example_of(folder, ckpt)
    if name is None:
        raise Refused(f"{path} does not say which example wrote it (no results.json beside it)")
    module = load_example(name)
    if not hasattr(module, "build"):
        raise Refused(f"examples/{name}.py builds no single model from its settings; it cannot be rebuilt")
    settings = ckpt.get("settings") or {}
    args = module.parse_args(["--out", str(folder)])
    unknown = sorted(set(settings) - set(vars(args)))
    if unknown:
        raise Refused(f"{path}: settings {unknown} are not flags of examples/{name}.py; "
                      "it was written by another example")
    # a flag added after the run was saved: the behaviour the run had (UNSTATED), not today's default
    vars(args).update({k: v for k, v in UNSTATED.items() if k in vars(args) and k not in settings}, **settings)
    device = torch.device(device)
    model, guide = module.build(args, device)
    model.load_state_dict(ckpt["model"])
    guide.load_state_dict(ckpt["guide"])
    model.eval(), guide.eval()
    return SimpleNamespace(model=model, guide=guide, args=args, settings=settings, epoch=ckpt["epoch"],
                           example=module, name=name, folder=folder, checkpoint=path,
                           load_data=lambda: module.load_data(args, device))


def hardware(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} thread(s) of {os.cpu_count()} cores"


def finish(run, metrics, history=None, eval_epoch=None, out=None, **extra):
    """Write ``results.json`` (the schema above) into the run folder and return it as a dict.
    Figures this run had before (scored at another training length, or with another S or number of
    examples) are kept under ``earlier_test_scores``."""
    out = Path(out or run.out)
    out.mkdir(parents=True, exist_ok=True)
    history = history or []
    metrics = dict(metrics)
    eval_seconds = metrics.pop("eval_seconds", None)
    earlier = []
    continued = run.args.resume or run.args.eval_only  # the same run again (a fresh one replaces it)
    if continued and (out / RESULTS).exists():
        try:
            old = json.loads((out / RESULTS).read_text())
        except (OSError, ValueError):
            old = {}
        if not settings_diff(old.get("settings") or {}, run.settings):
            earlier = old.get("earlier_test_scores", [])
            if old.get("metrics") != metrics or old.get("epochs") != len(history):
                earlier.append({"epochs": old.get("epochs"), "eval_epoch": old.get("eval_epoch"),
                                "eval_only": old.get("eval_only"), "metrics": old.get("metrics")})
    results = {"schema": RESULTS_SCHEMA, "example": run.example, "run": out.name, "settings": run.settings,
               "device": str(run.device), "hardware": hardware(run.device),
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "pyro": pyro.__version__},
               "epochs": len(history), "eval_epoch": eval_epoch,
               "train_seconds": sum(h.get("seconds", 0.0) for h in history), "eval_seconds": eval_seconds,
               "eval_only": bool(run.args.eval_only), "earlier_test_scores": earlier, "metrics": metrics, **extra}
    tmp = out / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / RESULTS)
    if out == Path(run.out):
        for tracker in getattr(run, "trackers", []):
            tracker.finish(results)
    print(f"results in {out / RESULTS} ({time.time() - run.started:.0f} s)")
    return results


def cli(main, parse_args, argv=None):
    """Run ``main(parse_args(argv))``; a refused command or bad data is one line on stderr and a
    non-zero exit (2 for the command, 1 for the data or a diverged run), never a traceback.
    ``PPL_MODELS_TRACEBACK=1`` shows the traceback instead."""
    args = parse_args(argv)
    try:
        return main(args)
    except (Refused, SettingsMismatch, DataError, TrainingDiverged, CorruptCheckpoint, CheckpointNotSaved, OSError,
            ValueError) as e:
        if os.environ.get("PPL_MODELS_TRACEBACK"):
            raise
        code = 2 if isinstance(e, (Refused, SettingsMismatch)) else 1
        explained = (Refused, SettingsMismatch, DataError, TrainingDiverged, CorruptCheckpoint, CheckpointNotSaved)
        hint = "" if isinstance(e, explained) else " (PPL_MODELS_TRACEBACK=1 shows where)"
        print(f"{Path(sys.argv[0]).name}: error: {' '.join(str(e).split())}{hint}", file=sys.stderr)
        sys.exit(code)
    except KeyboardInterrupt:
        print("\ninterrupted; --resume continues from the last saved epoch", file=sys.stderr)
        sys.exit(130)
