"""The lab: what one part of a variational experiment buys (the guide, the objective or the prior),
measured at one equal budget, the other two parts held fixed.

    python examples/guides_lab.py --model vae --epochs 20              # every VAE guide, and the gaps
    python examples/guides_lab.py --model vae --vary objective --values iwae:1 iwae:5 iwae:50 stl:5 dreg:5 dreg:50
    python examples/guides_lab.py --model vae --vary prior --values standard mog:10 vamp:500 flow:2
    python examples/guides_lab.py --model ssvae --epochs 5 --labeled 100   # enumeration against sampling
    python examples/guides_lab.py --model vrnn --epochs 5              # filtering against smoothing
    python examples/guides_lab.py --model draw --guides draw noerror --glimpses 16

Trains every registered guide of the model (or ``--guides``) with the model's own example, at the
same architecture, data, seed and epochs (flags the lab does not know, such as ``--labeled``, go to
the example), scores each with the shared evaluator, and writes one table (``lab.md``, ``lab.csv``)
and a figure (``lab.png``) into the lab folder. Each guide's run is an ordinary run folder inside it,
so an interrupted lab continues where it stopped (finished runs are kept, unfinished ones resumed).

For the VAE family it also decomposes the inference gap (Cremer, Li & Duvenaud 2018) on the first
``--gap-images`` test images: L[q] (the amortised ELBO), L[q*] (the ELBO after refining each image's
variational parameters, ``ppl_models.inference.refine``) and log p(x) (IS with q*, S = ``--gap-samples``):
approximation gap log p(x) - L[q*], amortisation gap L[q*] - L[q]. For the SSVAE it measures what
enumerating the label buys: the variance of the classifier's gradient on one unlabelled minibatch,
under the enumerated ELBO and under the score-function (sampled-label) ELBO, at the same parameters.
For the recurrent models (VRNN, sequence VAE, DRAW) the gaps are not computed: their guides' local
parameters at each step depend on the sampled past, so the per-sequence optimum is not a member of a
family with fixed per-example parameters; the table is.

``--vary objective`` takes ``NAME[:K]`` values (``iwae:50`` is ``--objective iwae --particles 50``) and
adds the signal-to-noise ratio of the gradients at each run's trained parameters (Rainforth et al.
2018): for ``--grad-repeats`` gradients of the run's own estimator on one validation batch, per
parameter |mean| / standard deviation, the median over the guide's parameters (``snr_guide``) and over
the model's (``snr_model``). ``--vary prior`` takes ``NAME[:K]`` (``vamp:500`` is ``--prior vamp
--prior-components 500``).
"""
import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO

from ppl_models.inference import distributed
from ppl_models.inference.refine import inference_gaps
from ppl_models.runs import compare, experiment, plots
from ppl_models.runs.experiment import nonnegative_int, positive_int
from ppl_models.runs.plots import plt

MODELS = ("vae", "ssvae", "cvae", "vrnn", "seqvae", "draw")
COLUMNS = ("test_elbo", "test_log_px", "fid", "precision", "recall", "label_fidelity", "snr_guide", "snr_model", "eval_samples", "ess_mean", "khat_above_0_7", "test_error", "valid_error",
           "nn_log_px", "elbo_amortised", "elbo_refined", "log_px", "approximation_gap", "amortisation_gap", "steps",
           "refine_seconds", "grad_var_enumerated", "grad_var_sampled", "grad_mean_sq_enumerated",
           "grad_mean_sq_sampled", "epochs", "train_seconds", "eval_seconds")
SKIPPED = {"vae": {"delta": "a point mass has no density: nothing to importance-sample (it is the autoencoder)"}}


def parse_args(argv=None):
    p = experiment.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--vary", default="guide", choices=["guide", "objective", "prior"], help="the part that varies")
    p.add_argument("--values", "--guides", nargs="+", dest="values",
                   help="guides (default: every registered one); objectives or priors as NAME[:K]")
    p.add_argument("--epochs", type=positive_int, default=20, help="the equal budget: epochs per guide")
    p.add_argument("--eval-samples", type=positive_int, default=1000)
    p.add_argument("--eval-images", type=positive_int, default=1000)
    p.add_argument("--gap-images", type=nonnegative_int, default=200, help="test images for the gaps (0: none)")
    p.add_argument("--gap-samples", type=positive_int, default=5000, help="IS samples for log p(x) in the gaps")
    p.add_argument("--refine-steps", type=positive_int, default=2000, help="at most this many refinement steps")
    p.add_argument("--refine-tol", type=experiment.positive_float, default=0.01,
                   help="refinement stops when -ELBO per image improves by less over 100 steps")
    p.add_argument("--grad-repeats", type=experiment.ranged(int, lambda v: v >= 2, "an integer >= 2"), default=50,
                   help="gradients per estimator (SSVAE: the classifier's variance; --vary objective: the SNR)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", type=experiment.device_name, default="auto")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", default=None, help="lab folder (default: results/guides_lab/<model>-<the lab's flags>)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args, extra = p.parse_known_args(argv)
    args.extra = extra
    if args.smoke:
        args.gap_images, args.gap_samples = min(args.gap_images, 5), min(args.gap_samples, 20)
        args.refine_steps, args.grad_repeats = min(args.refine_steps, 20), min(args.grad_repeats, 3)
    return args


def folder_of(value):
    """The run folder of one value inside the lab's: ``iwae:50`` -> ``iwae50``."""
    return value.replace(":", "")


def registry(model, extra=()):
    """The guides of the model the example trains: ``examples/ssvae.py --form adgm`` (or ``sdgm``) trains
    the auxiliary DGM, whose guides are ``guides/adgm.py``'s."""
    if model == "ssvae":
        form = argparse.ArgumentParser(add_help=False)
        form.add_argument("--form", default="m2")
        if form.parse_known_args(list(extra))[0].form in ("adgm", "sdgm"):
            model = "adgm"
    return importlib.import_module(f"guides.{model}").GUIDES


def lab_folder(args):
    """``results/guides_lab/<model>[-<part>]-e<epochs>-S<S>-n<images>-seed<k>[-<the example's flags>]``: a
    lab with other flags never shares a folder (so a finished run found in it is this lab's)."""
    extra = "".join(a.strip("-") if a.startswith("-") else f"{a}-" for a in args.extra).strip("-")
    part = "" if args.vary == "guide" else f"-{args.vary}"
    name = f"{args.model}{part}-e{args.epochs}-S{args.eval_samples}-n{args.eval_images}-seed{args.seed}"
    return Path("results") / "guides_lab" / (name + (f"-{extra}" if extra else "") + ("-smoke" if args.smoke else ""))


def part_flags(vary, value):
    """The example's flags for one value of the varied part: ``--guide diag``, ``--objective iwae
    --particles 50`` (``iwae:50``), ``--prior vamp --prior-components 500`` (``vamp:500``)."""
    name, _, k = value.partition(":")
    if vary == "guide":
        return ["--guide", value]
    flags = ["--objective", name] if vary == "objective" else ["--prior", name]
    if k:
        if not k.isdigit() or int(k) < 1:
            raise experiment.Refused(f"--values {value}: K must be a positive integer (NAME:K, e.g. iwae:50)")
        flags += ["--particles" if vary == "objective" else "--prior-components", k]
    return flags


def train_guide(example, args, value, folder):
    """One run of the example for one value of the varied part in ``folder``: kept if finished in the
    lab's own folder, resumed otherwise (the example refuses a run made with other settings)."""
    guide = value
    done = folder / experiment.RESULTS
    if (done.exists() and json.loads(done.read_text())["epochs"] >= args.epochs and not args.smoke
            and not args.out):
        print(f"--- {guide}: kept ({done})")
        return
    flags = [*part_flags(args.vary, guide), "--out", str(folder), "--epochs", str(args.epochs), "--seed", str(args.seed),
             "--eval-samples", str(args.eval_samples), "--eval-images", str(args.eval_images), "--device", args.device,
             *(["--threads", str(args.threads)] if args.threads else []), *(["--smoke"] if args.smoke else []),
             *(["--no-progress"] if args.no_progress else []), *args.extra]
    if experiment.held_checkpoint(folder) is not None:
        flags.append("--resume")
    print(f"--- {guide}: {' '.join(flags)}")
    example.main(example.parse_args(flags))


def vae_gaps(args, folder, device):
    """The inference gaps of the VAE run in ``folder`` on the first ``--gap-images`` test images, drawn
    as the run's own data (kept in gaps.json, and taken from there for the same run, images and S)."""
    run = experiment.rebuild(folder, device)
    x = run.load_data()[2].x[:args.gap_images]
    path = folder / "gaps.json"
    if path.exists():
        kept = json.loads(path.read_text())
        if (kept.get("images"), kept.get("is_samples"), kept.get("run_mtime")) == \
                (len(x), args.gap_samples, (folder / experiment.RESULTS).stat().st_mtime):
            print(f"    gaps of {folder.name}: kept ({path})")
            return kept
    torch.manual_seed(args.seed)
    gaps = inference_gaps(run.model, run.guide, x, elbo_samples=min(1000, args.gap_samples), is_samples=args.gap_samples,
                          max_steps=args.refine_steps, tol=args.refine_tol)
    gaps["run_mtime"] = (folder / experiment.RESULTS).stat().st_mtime
    path.write_text(json.dumps(gaps, indent=1))
    print(f"    gaps on {len(x)} test images: log p(x) {gaps['log_px']:.2f}, L[q*] {gaps['elbo_refined']:.2f}, "
          f"L[q] {gaps['elbo_amortised']:.2f}: approximation {gaps['approximation_gap']:.2f}, amortisation "
          f"{gaps['amortisation_gap']:.2f} nats ({gaps['steps']} steps, {gaps['refine_seconds']:.0f} s)")
    return gaps


def classifier_gradient_variance(folder, device, x, repeats, seed):
    """Variance of q(y|x)'s gradient on the unlabelled batch ``x``, enumerated against sampled y, at the
    parameters of the SSVAE run in ``folder`` (its guide must be an MLP one: mlp or sample)."""
    run = experiment.rebuild(folder, device)
    model, guide = run.model, run.guide
    params = [p for n, p in guide.named_parameters() if n.startswith(("features_y", "classify_head"))]
    out = {}
    torch.manual_seed(seed)
    for name, elbo, enumerate_y in (("enumerated", TraceEnum_ELBO(max_plate_nesting=1), True),
                                    ("sampled", TraceGraph_ELBO(), False)):
        guide.enumerate_y = enumerate_y
        grads = []
        for _ in range(repeats):
            for p in [*model.parameters(), *guide.parameters()]:
                p.grad = None
            elbo.loss_and_grads(model.model, guide.guide, x)  # the estimator training uses
            grads.append(torch.cat([p.grad.reshape(-1) for p in params]))
        g = torch.stack(grads)
        out[f"grad_var_{name}"] = float(g.var(0).sum())
        out[f"grad_mean_sq_{name}"] = float(g.mean(0).pow(2).sum())
    return out


def gradient_snr(folder, device, x, repeats, seed):
    """The signal-to-noise ratio of the gradients of the run in ``folder`` under its own objective and
    K, at its trained parameters, on the batch ``x``: per parameter |mean| / std over ``repeats``
    gradients, the median over the guide's parameters and over the model's (robust to entries whose
    gradient is nearly constant)."""
    from ppl_models.inference.objectives import make_objective

    run = experiment.rebuild(folder, device)
    s = run.settings
    loss = make_objective(s.get("objective", "elbo"), s.get("particles", 1), s.get("renyi_alpha", 0.5))
    model, guide = run.model, run.guide
    guide_ids = {id(p) for p in guide.parameters()}
    parts = {"guide": [p for p in guide.parameters() if p.requires_grad],
             "model": [p for p in model.parameters() if p.requires_grad and id(p) not in guide_ids]}
    grads = {k: [] for k in parts}
    torch.manual_seed(seed)
    for _ in range(repeats):
        for p in [*model.parameters(), *guide.parameters()]:
            p.grad = None
        loss.loss_and_grads(model.model, guide.guide, x)
        for k, ps in parts.items():
            grads[k].append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                       for p in ps]))
    out = {}
    for k, g in grads.items():
        g = torch.stack(g)
        std, mean = g.std(0), g.mean(0).abs()
        ok = std > 0
        out[f"snr_{k}"] = float((mean[ok] / std[ok]).median()) if ok.any() else float("nan")
    return out


def figure(rows, model, path, vary="guide"):
    """The lab's figure: the inference gaps by guide (the VAE's guides lab), or each run's test log p(x)
    and ELBO, and beside them, when the objective varies, the SNR of the guide's and the model's gradients."""
    labels = [Path(r["run"]).name for r in rows]
    if model == "vae" and all("approximation_gap" in r for r in rows):
        fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.8))
        approx = [r["approximation_gap"] for r in rows]
        amort = [r["amortisation_gap"] for r in rows]
        ax.bar(labels, approx, label="approximation gap  log p(x) - L[q*]")
        ax.bar(labels, amort, bottom=approx, label="amortisation gap  L[q*] - L[q]")
        ax.set_ylabel("nats per image"), ax.legend(fontsize=8)
        ax.set_title("inference gap log p(x) - L[q], by guide")
        axes = [ax]
    else:
        snr = all("snr_guide" in r for r in rows)
        fig, axes = plt.subplots(1, 1 + snr, figsize=((1.2 + 0.6 * snr) * len(rows) + 2, 3.5), squeeze=False)
        axes = list(axes[0])
        ax, at = axes[0], range(len(rows))
        for key, label, mark in (("test_log_px", "test log p(x) (IS)", "o"), ("test_elbo", "test ELBO", "s")):
            ax.plot(at, [r.get(key, float("nan")) for r in rows], mark, label=label)
        ax.set_xticks(list(at), labels)
        ax.set_ylabel("nats per example"), ax.legend(fontsize=8), ax.set_title(f"{model}: {vary}s at one budget")
        if snr:
            for key, label, mark in (("snr_guide", "guide", "o"), ("snr_model", "model", "s")):
                axes[1].plot(at, [r[key] for r in rows], mark, label=label)
            axes[1].set_yscale("log"), axes[1].set_xticks(list(at), labels), axes[1].legend(fontsize=8)
            axes[1].set_title("gradient SNR at the trained parameters")
    for a in axes:
        a.grid(alpha=0.3)
        plt.setp(a.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, path)


def main(args):
    if distributed.launched():
        raise experiment.Refused("the guides lab does not train data-parallel under torchrun: it trains one model "
                                 "per guide and refines codes image by image; run it as one process (or sweep "
                                 "the guides with examples/sweep.py)")
    if args.vary == "guide":
        names = args.values or [g for g in registry(args.model, args.extra) if g not in SKIPPED.get(args.model, {})]
        unknown = [g for g in names if g not in registry(args.model, args.extra)]
        if unknown:
            raise experiment.Refused(f"--guides: unknown {unknown}; {args.model} {' '.join(args.extra)} has "
                                     f"{sorted(registry(args.model, args.extra))}")
    else:
        if not args.values:
            raise experiment.Refused(f"--vary {args.vary} needs --values, e.g. "
                                     + ("iwae:1 iwae:5 dreg:5" if args.vary == "objective" else "standard vamp:500"))
        names = args.values
        for value in names:
            part_flags(args.vary, value)  # a malformed NAME:K is refused before anything trains
    root = Path(args.out) if args.out else lab_folder(args)
    device = experiment.device_of(args)
    example = experiment.load_example(args.model)
    failed = {}
    for guide in names:
        try:
            train_guide(example, args, guide, root / folder_of(guide))
        except (SystemExit, Exception) as e:  # a guide that fails is reported; the others go on
            failed[guide] = f"{type(e).__name__}: {e}"
            print(f"--- {guide}: failed ({failed[guide]})", file=sys.stderr)
    for guide, why in (SKIPPED.get(args.model, {}) if args.vary == "guide" else {}).items():
        if guide not in names:
            print(f"--- {guide}: not in the lab ({why})")
    rows = [r for g in names if g not in failed and (root / folder_of(g)).is_dir()
            for r in compare.load_rows(compare.find_results([root / folder_of(g)]))]
    if not rows:
        raise experiment.Refused(f"no guide of {args.model} finished; nothing to tabulate")
    if args.model == "vae" and args.gap_images:
        for row in rows:
            if "test_log_px" in row:  # a guide with a density (not the point mass)
                row.update(vae_gaps(args, Path(row["run"]), device))
    if args.model == "ssvae":
        x = None
        for row in rows:
            if row["settings.guide"] in ("mlp", "sample") and row.get("settings.form", "m2") == "m2":
                if x is None:  # one unlabelled validation batch, the same for every guide
                    x = experiment.rebuild(Path(row["run"]), device).load_data()[1].x[:100]
                t0 = time.time()
                row.update(classifier_gradient_variance(Path(row["run"]), device, x, args.grad_repeats, args.seed))
                print(f"    {row['settings.guide']}: classifier gradient variance, enumerated "
                      f"{row['grad_var_enumerated']:.4g}, sampled {row['grad_var_sampled']:.4g} "
                      f"({args.grad_repeats} gradients each, {time.time() - t0:.0f} s)")
    if args.vary == "objective":
        x = experiment.rebuild(Path(rows[0]["run"]), device).load_data()[1].x[:100]  # one validation batch
        for row in rows:
            t0 = time.time()
            row.update(gradient_snr(Path(row["run"]), device, x,
                                    args.grad_repeats, args.seed))
            print(f"    {Path(row['run']).name}: gradient SNR, guide {row['snr_guide']:.3g}, model "
                  f"{row['snr_model']:.3g} ({args.grad_repeats} gradients, {time.time() - t0:.0f} s)")
    cols = [c for c in compare.columns(rows, always=(args.vary,)) if c.startswith("settings.")]
    cols += [c for c in COLUMNS if any(c in r for r in rows)]
    table = compare.markdown(rows, cols)
    (root / "lab.md").write_text(table + "\n")
    compare.write_csv(rows, cols, root / "lab.csv")
    figure(rows, args.model, root / "lab.png", args.vary)
    print(f"\n{table}\n\nlab table, CSV and figure in {root}/")
    for guide, why in failed.items():
        print(f"not in the table: {guide} ({why})")
    return rows


if __name__ == "__main__":
    experiment.cli(main, parse_args)
