"""Semi-supervised MNIST with the M2 model (Kingma et al. 2014), the label enumerated.

    python examples/ssvae.py --labeled 5000              # N/10 labelled images per class
    python examples/ssvae.py --labeled 100 --seeds 3     # three label draws: mean and std
    python examples/ssvae.py --guide sample              # sample y instead of enumerating it

The first 50,000 training images are the pool: ``--labeled N`` of them (N/10 per class, drawn with
the seed) keep their label, the rest are unlabelled; the last 10,000 are the validation set, used to
pick the epoch; the test set is touched once, for the final error of ``argmax q(y|x)``.
Each training step pairs one unlabelled batch (label summed out by ``TraceEnum_ELBO``) with one
labelled batch (ELBO plus ``alpha`` times the classifier's cross-entropy).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guides.ssvae import GUIDES, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.data import N_TRAIN, labeled_indices, load_mnist  # noqa: E402
from ppl_models.ssvae import M2Objective, SSVAE  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labeled", type=int, default=5000, help="labelled images, a multiple of 10 up to 50000")
    p.add_argument("--guide", default="conv", help=f"one of {sorted(GUIDES)}")
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--alpha", type=float, default=50.0, help="weight of the classification term per image")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optim", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--seeds", type=int, default=1, help="run this many label draws (seeds 0..K-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--out", default="results/ssvae")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred images, one epoch")
    return p


class PairedBatches:
    """One epoch: every unlabelled batch once, each followed by a labelled batch (labelled set cycled)."""

    def __init__(self, x_lab, y_lab, x_unlab, batch_size):
        self.x_lab, self.y_lab, self.x_unlab, self.bs = x_lab, y_lab, x_unlab, batch_size

    def __len__(self):
        return 2 * -(-len(self.x_unlab) // self.bs)

    def __iter__(self):
        dev = self.x_unlab.device
        perm_u = torch.randperm(len(self.x_unlab), device=dev)
        n_lab_batches = len(self) // 2
        bs_l = min(self.bs, len(self.x_lab))
        reps = -(-n_lab_batches * bs_l // len(self.x_lab))
        perm_l = torch.cat([torch.randperm(len(self.x_lab), device=dev) for _ in range(reps)])
        for i in range(n_lab_batches):
            iu = perm_u[i * self.bs:(i + 1) * self.bs]
            yield (torch.bernoulli(self.x_unlab[iu]), None)
            il = perm_l[i * bs_l:(i + 1) * bs_l]
            yield (torch.bernoulli(self.x_lab[il]), self.y_lab[il])


def error_rate(guide, x, y, batch_size=2000):
    guide.eval()
    with torch.no_grad():
        pred = torch.cat([guide.classifier(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
    return (pred != y).float().mean().item(), pred


def run_one(args, seed, device, data, out):
    train, valid, test = data
    pool_y = train.y[:N_TRAIN]
    lab, unlab = labeled_indices(pool_y, args.labeled, seed=seed)
    lab, unlab = lab.to(device), unlab.to(device)
    pyro.set_rng_seed(seed)
    model = SSVAE(args.z_dim, (args.hidden,)).to(device)
    guide = make_guide(args.guide, args.z_dim, args.hidden).to(device)
    elbo = TraceGraph_ELBO() if args.guide == "sample" else TraceEnum_ELBO(max_plate_nesting=1)
    objective = M2Objective(guide.classifier, args.alpha, elbo)
    batches = PairedBatches(train.x[lab], train.y[lab], train.x[unlab], args.batch_size)

    def validate():
        return {"valid_error": error_rate(guide, valid.x, valid.y)[0]}

    t0 = time.time()
    fit(model, guide, objective, batches, epochs=args.epochs, out=out, optim=args.optim, lr=args.lr,
        validate=validate, best=("valid_error", "min"), resume=args.resume, seed=seed,
        progress=not args.no_progress)
    seconds = time.time() - t0
    ckpt = load_checkpoint(out / BEST, model, guide, map_location=device)
    test_error, pred = error_rate(guide, test.x, test.y)
    best_epoch = ckpt["epoch"]
    print(f"seed {seed}: test error {100 * test_error:.2f}% at the best validation epoch {best_epoch} "
          f"(valid error {100 * ckpt['best_value']:.2f}%), {seconds:.0f} s")
    figures(model, guide, test, pred, out)
    return {"seed": seed, "test_error": test_error, "best_epoch": best_epoch,
            "valid_error": ckpt["best_value"], "seconds": seconds}


def figures(model, guide, test, pred, out):
    model.eval()
    with torch.no_grad():
        idx = torch.stack([(test.y == d).nonzero()[0, 0] for d in range(10)])
        z = guide.encode(test.x[idx], test.y[idx])  # the style of one test digit per row
        labels = torch.arange(10, device=z.device)
        grid = model.decode(z[:, None, :].expand(10, 10, z.shape[-1]), labels.expand(10, 10))
        imgs = torch.cat([test.x[idx][:, None, :], grid], 1).reshape(-1, 784).cpu()
    plots.image_grid(imgs, out / "style_content.png", rows=10, cols=11,
                     title="test digit (left) | its style z with y = 0..9")
    conf = torch.zeros(10, 10, dtype=torch.long)
    conf.index_put_((test.y.cpu(), pred.cpu()), torch.ones_like(pred.cpu()), accumulate=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(conf.log1p(), cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_xticks(range(10)), ax.set_yticks(range(10))
    ax.set_title("confusion matrix, test set")
    plots.save_figure(fig, out / "confusion.png")


def main(args):
    if args.guide not in GUIDES:
        raise SystemExit(f"unknown guide {args.guide!r}; choose one of {sorted(GUIDES)}")
    if args.labeled <= 0 or args.labeled % 10 or args.labeled > N_TRAIN:
        raise SystemExit(f"--labeled must be a positive multiple of 10 up to {N_TRAIN}, got {args.labeled}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_mnist("mnist", device, "dynamic")
    if args.smoke:
        args.epochs = 1
        train, valid, test = data
        data = (train.subset(slice(0, 400)), valid.subset(slice(0, 200)), test.subset(slice(0, 200)))
        args.labeled = min(args.labeled, 100)
    t0 = time.time()
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        out = Path(args.out) / f"labeled{args.labeled}_{args.guide}_seed{seed}"
        runs.append(run_one(args, seed, device, data, out))
    errors = [100 * r["test_error"] for r in runs]
    mean = statistics.mean(errors)
    std = statistics.stdev(errors) if len(errors) > 1 else 0.0
    wall = time.time() - t0
    print(f"{args.labeled} labels, guide {args.guide}: test error {mean:.2f}% +- {std:.2f} over "
          f"{len(errors)} seed(s), {args.epochs} epochs, {device}, wall time {wall:.0f} s")
    summary = {"args": vars(args), "device": str(device), "runs": runs, "mean_error": mean, "std_error": std,
               "wall_seconds": wall}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"summary_labeled{args.labeled}_{args.guide}.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(parser().parse_args())
