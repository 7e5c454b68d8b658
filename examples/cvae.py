"""Structured output prediction with the conditional VAE (Sohn et al. 2015): quadrant completion.

    python examples/cvae.py                          # 1, 2 and 3 observed quadrants, Pyro's protocol
    python examples/cvae.py --quadrants 2 --guide gsnn
    python examples/cvae.py --condition label        # y = image, x = digit label: samples per class

For each number of observed quadrants: trains the baseline NN (784-500-500-784, masked BCE, which is
the log-likelihood of a latent-free model trained by the same loop), then the CVAE on top of the
frozen baseline, then reports on the test set the negative conditional log-likelihood -log p(y | x)
in nats: the NN's (exact), the CVAE's by importance sampling with q(z | x, y) as proposal, and the
CVAE's 10-particle -ELBO (the figure Pyro's CVAE tutorial reports).

Protocol (``--targets grey``, Pyro's): grey pixel values as Bernoulli targets (the "likelihood" is
then minus the binary cross-entropy), inputs grey, missing pixels -1. ``--targets binary``: each
training batch binarised afresh, validation and test binarised once with a seed. Training uses the
first 50,000 training images, picks the epoch on the last 10,000 (early stopping with
``--patience``), and touches the test set once at the end.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer import Trace_ELBO  # noqa: E402
from torch.nn.functional import one_hot  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guides.cvae import GUIDES, GSNNGuide, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.cvae import CVAE, Baseline, Hybrid, missing_mask, observe  # noqa: E402
from ppl_models.data import load_mnist  # noqa: E402
from ppl_models.evaluate import log_importance_weights, summarize  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--condition", default="quadrants", choices=["quadrants", "label"])
    p.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3], help="observed quadrants: 1, 2, 3")
    p.add_argument("--targets", default="grey", choices=["grey", "binary"])
    p.add_argument("--guide", default="recognition", help=f"one of {list(GUIDES)}")
    p.add_argument("--hybrid", type=float, default=0.5, help="weight of the CVAE term with --guide hybrid")
    p.add_argument("--z-dim", type=int, default=200)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--epochs", type=int, default=50, help="CVAE epochs at most (early stopping)")
    p.add_argument("--baseline-epochs", type=int, default=50, help="baseline epochs at most (early stopping)")
    p.add_argument("--patience", type=int, default=3, help="stop after this many epochs without improvement")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-samples", type=int, nargs="+", default=[100, 1000], help="S of the IS estimates")
    p.add_argument("--eval-images", type=int, default=10000, help="test images scored (the first N)")
    p.add_argument("--elbo-particles", type=int, default=10)
    p.add_argument("--out", default="results/cvae")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred images, one epoch, small S")
    return p


class Batches:
    """Shuffled ``(x, y, missing)`` minibatches; a fresh binarisation of each batch with ``binary``."""

    def __init__(self, images, labels, missing, batch_size, binary, condition):
        self.images, self.labels, self.missing, self.bs = images, labels, missing, batch_size
        self.binary, self.condition = binary, condition

    def __len__(self):
        return -(-len(self.images) // self.bs)

    def __iter__(self):
        perm = torch.randperm(len(self.images), device=self.images.device)
        for i in range(0, len(perm), self.bs):
            idx = perm[i:i + self.bs]
            y = self.images[idx]
            y = torch.bernoulli(y) if self.binary else y
            yield make_inputs(y, self.labels[idx], self.missing, self.condition)


def make_inputs(y, labels, missing, condition):
    """The model's arguments ``(x, y, missing)`` for target images ``y``."""
    if condition == "label":
        return one_hot(labels, 10).to(y.dtype), y, None
    miss = missing.expand(len(y), 784)
    return observe(y, miss), y, miss


def batched(fn, args, batch_size=500):
    """Concatenate ``fn(*chunk)`` over chunks of the first dimension of ``args``."""
    n = len(args[0])
    return torch.cat([fn(*[a[i:i + batch_size] if a is not None else None for a in args])
                      for i in range(0, n, batch_size)])


def nll_baseline(baseline, x, y, missing):
    """Exact -log p(y | x) per example: the masked binary cross-entropy."""
    def f(xb, yb, mb):
        tr = pyro.poutine.trace(baseline.model).get_trace(xb, yb, mb)
        return -tr.nodes["y"]["fn"].log_prob(yb)
    with torch.no_grad():
        return batched(f, (x, y, missing))


def neg_elbo(model, guide, x, y, missing, particles):
    """Per-example -ELBO with ``particles`` samples (vectorised)."""
    def f(xb, yb, mb):
        lw = log_importance_weights(model, guide, xb, yb, mb, num_samples=particles, particles="plate")
        return -lw.mean(0)
    return batched(f, (x, y, missing))


def is_nll(model, guide, x, y, missing, num_samples):
    """Per-example importance-sampled -log p(y | x) with S = num_samples, and the ESS."""
    nll, ess = [], []
    for i in range(0, len(x), 100):
        sl = slice(i, i + 100)
        lw = log_importance_weights(model, guide, x[sl], y[sl], None if missing is None else missing[sl],
                                    num_samples=num_samples, particles="plate")
        s = summarize(lw)
        nll.append(-s["log_px"]), ess.append(s["ess"])
    return torch.cat(nll), torch.cat(ess)


def train_baseline(args, data, missing, out, device):
    train, valid, _ = data
    baseline = Baseline(784, (args.hidden, args.hidden)).to(device)
    batches = Batches(train.x, train.y, missing, args.batch_size, args.targets == "binary", "quadrants")
    vx, vy, vm = make_inputs(valid.x, valid.y, missing, "quadrants")

    def validate():
        return {"valid_nll": nll_baseline(baseline, vx, vy, vm).mean().item()}

    fit(baseline, baseline, Trace_ELBO(), batches, epochs=args.baseline_epochs, out=out, lr=args.lr,
        validate=validate, best=("valid_nll", "min"), patience=args.patience, resume=args.resume,
        seed=args.seed, progress=not args.no_progress)
    load_checkpoint(out / BEST, baseline, baseline, map_location=device)
    return baseline.eval()


def train_cvae(args, data, missing, baseline, out, device):
    train, valid, _ = data
    x_dim = 10 if args.condition == "label" else 784
    pyro.set_rng_seed(args.seed)
    cvae = CVAE(x_dim, args.z_dim, (args.hidden, args.hidden), baseline).to(device)
    guide = make_guide(args.guide, cvae, (args.hidden, args.hidden)).to(device)
    loss = Hybrid(args.hybrid, GSNNGuide(cvae).guide) if args.guide == "hybrid" else Trace_ELBO()
    batches = Batches(train.x, train.y, missing, args.batch_size, args.targets == "binary", args.condition)
    vx, vy, vm = make_inputs(valid.x, valid.y, missing, args.condition)

    def validate():  # one-particle -ELBO of the guide being trained (for gsnn: of the prior)
        return {"valid_neg_elbo": neg_elbo(cvae, guide, vx, vy, vm, 1).mean().item()}

    fit(cvae, guide, loss, batches, epochs=args.epochs, out=out, lr=args.lr, validate=validate,
        best=("valid_neg_elbo", "min"), patience=args.patience, resume=args.resume, seed=args.seed,
        progress=not args.no_progress)
    load_checkpoint(out / BEST, cvae, guide, map_location=device)
    return cvae.eval(), guide.eval()


def completion_figure(test, missing, baseline, cvae, path, n_digits=8, n_samples=5):
    x, y, miss = make_inputs(test.x[:n_digits], test.y[:n_digits], missing, "quadrants")
    with torch.no_grad():
        nn_pred = torch.where(miss, baseline.predict(x), x)
        samples = torch.where(miss, cvae.predict(x, miss, n_samples), x)  # [S, n, 784]
    shown = torch.where(miss, torch.full_like(x, 0.35), x)  # missing pixels grey
    rows = torch.stack([shown, y, nn_pred, *samples], 1).reshape(-1, 784)  # one row per digit
    plots.image_grid(rows.cpu(), path, rows=n_digits, cols=3 + n_samples,
                     title=f"input | truth | NN | {n_samples} CVAE completions (z ~ p(z|x))")


def label_figure(cvae, path, n_samples=10):
    device = next(cvae.parameters()).device
    x = one_hot(torch.arange(10, device=device), 10).float()
    with torch.no_grad():
        imgs = cvae.predict(x, None, n_samples).transpose(0, 1).reshape(-1, 784)  # row = class
    plots.image_grid(imgs.cpu(), path, rows=10, cols=n_samples, title="p(y | label): samples per class")


def evaluate_setting(args, data, missing, baseline, cvae, guide):
    _, _, test = data
    n = min(args.eval_images, len(test.x))
    x, y, miss = make_inputs(test.x[:n], test.y[:n], missing, args.condition)
    row = {"test_images": n}
    if baseline is not None:
        row["nn"] = nll_baseline(baseline, x, y, miss).mean().item()
    t0 = time.time()
    row[f"cvae_neg_elbo_{args.elbo_particles}"] = neg_elbo(cvae, guide, x, y, miss, args.elbo_particles).mean().item()
    for s in args.eval_samples:
        nll, ess = is_nll(cvae, guide, x, y, miss, s)
        row[f"cvae_is_{s}"] = nll.mean().item()
        row[f"ess_{s}"] = ess.mean().item()
    row["eval_seconds"] = time.time() - t0
    return row


def main(args):
    if args.guide not in GUIDES:
        raise SystemExit(f"unknown guide {args.guide!r}; choose one of {list(GUIDES)}")
    if args.guide == "hybrid" and not 0.0 < args.hybrid < 1.0:
        raise SystemExit(f"--hybrid must lie strictly between 0 and 1 (got {args.hybrid}); "
                         "for 1 use --guide recognition, for 0 --guide gsnn")
    if any(q not in (1, 2, 3) for q in args.quadrants):
        raise SystemExit(f"--quadrants takes 1, 2 or 3, got {args.quadrants}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_mnist("mnist", device, "dynamic" if args.targets == "binary" else "grey", seed=args.seed)
    if args.smoke:
        train, valid, test = data
        data = (train.subset(slice(0, 300)), valid.subset(slice(0, 100)), test.subset(slice(0, 100)))
        args.epochs = args.baseline_epochs = 1
        args.eval_samples, args.elbo_particles, args.eval_images = [4, 8], 2, 100
    out = Path(args.out)
    results = {"args": vars(args), "device": str(device), "settings": {}}
    settings = args.quadrants if args.condition == "quadrants" else ["label"]
    for q in settings:
        t0 = time.time()
        name = f"q{q}" if q != "label" else "label"
        sub = out / f"{name}_{args.targets}"
        missing = missing_mask(q).to(device) if q != "label" else None
        baseline = train_baseline(args, data, missing, sub / "baseline", device) if q != "label" else None
        cvae, guide = train_cvae(args, data, missing, baseline, sub / f"cvae_{args.guide}", device)
        train_seconds = time.time() - t0
        row = evaluate_setting(args, data, missing, baseline, cvae, guide)
        row["train_seconds"] = train_seconds
        if q == "label":
            label_figure(cvae, sub / "samples_per_class.png")
        else:
            completion_figure(data[2], missing, baseline, cvae, sub / "completions.png")
        results["settings"][name] = row
        print(f"{name}: " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in row.items()), flush=True)
    print_table(results["settings"], args)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{args.condition}_{args.targets}_{args.guide}.json").write_text(json.dumps(results, indent=1))
    return results


def print_table(settings, args):
    cols = ["nn", *[f"cvae_is_{s}" for s in args.eval_samples], f"cvae_neg_elbo_{args.elbo_particles}"]
    print(f"\ntest -log p(y | x), nats per image ({args.targets} targets, guide {args.guide}):")
    print("setting  " + "  ".join(f"{c:>18}" for c in cols))
    for name, row in settings.items():
        print(f"{name:8} " + "  ".join(f"{row[c]:18.2f}" if c in row else f"{'-':>18}" for c in cols))


if __name__ == "__main__":
    main(parser().parse_args())
