"""A sequence VAE on pen-stroke digits (T = 60 absolute pen positions, z of size 64).

    python examples/seqvae.py                       # LSTM encoder and decoder of 512 units
    python examples/seqvae.py --hidden 256          # four times cheaper on a CPU
    python examples/seqvae.py --guide bilstm        # a bidirectional encoder

Data: the pen strokes of ``ppl_models.strokes``, resampled to 60 points; the first 50,000 training
digits train, the last 10,000 pick the epoch, the test set is scored once (log-density of the 60
positions, in nats per sequence, by importance sampling; the positions are in pixel units).
Figures: digits beside their reconstructions, samples around an encoded "two", and the straight
line in z between an encoded "four" and "six", all drawn as strokes.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer import Trace_ELBO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guides.seqvae import GUIDES, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.data import N_TRAIN  # noqa: E402
from ppl_models.evaluate import log_importance_weights, summarize  # noqa: E402
from ppl_models.seqvae import SeqVAE  # noqa: E402
from ppl_models.strokes import load_strokes, plot_strokes  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guide", default="lstm", help=f"one of {list(GUIDES)}")
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--steps", type=int, default=60, help="resampled sequence length T")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--eval-images", type=int, default=1000, help="test sequences scored (the first N)")
    p.add_argument("--out", default="results/seqvae")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred sequences, one epoch, small networks")
    return p


class Batches:
    def __init__(self, x, batch_size):
        self.x, self.bs = x, batch_size

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __iter__(self):
        perm = torch.randperm(len(self.x), device=self.x.device)
        for i in range(0, len(perm), self.bs):
            yield (self.x[perm[i:i + self.bs]],)


def score(model, guide, x, num_samples, batch_size=100):
    out = {"log_px": [], "elbo": [], "ess": []}
    for i in range(0, len(x), batch_size):
        lw = log_importance_weights(model, guide, x[i:i + batch_size], num_samples=num_samples, particles="plate")
        for k, v in summarize(lw).items():
            out[k].append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def main(args):
    if args.guide not in GUIDES:
        raise SystemExit(f"unknown guide {args.guide!r}; choose one of {list(GUIDES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.epochs, args.eval_samples, args.eval_images, args.hidden = 1, 5, 20, 16
    device = resolve_device(args.device)
    pyro.set_rng_seed(args.seed)
    out = Path(args.out)
    train_set, test_set = load_strokes()
    if args.smoke:
        train_set = train_set.subset(list(range(300)) + list(range(N_TRAIN, N_TRAIN + 100)))
        test_set = test_set.subset(slice(0, 200))
    n_train = 300 if args.smoke else N_TRAIN
    full = torch.from_numpy(train_set.resampled(args.steps)).to(device)
    test = torch.from_numpy(test_set.resampled(args.steps)).to(device)
    train_x, valid_x = full[:n_train, :, :2], full[n_train:, :, :2]
    model = SeqVAE(args.z_dim, args.hidden, args.steps).to(device)
    guide = make_guide(args.guide, args.z_dim, args.hidden).to(device)

    def validate():
        return {"valid_loss": -score(model, guide, valid_x, 1, batch_size=1000)["elbo"].mean().item()}

    print(f"sequence VAE: T={args.steps} z={args.z_dim} hidden={args.hidden} guide={args.guide} on {device}, "
          f"{len(train_x)} training digits")
    history = fit(model, guide, Trace_ELBO(), Batches(train_x, args.batch_size), epochs=args.epochs, out=out,
                  lr=args.lr, validate=validate, best=("valid_loss", "min"), resume=args.resume, seed=args.seed,
                  progress=not args.no_progress)
    results = {"args": vars(args), "device": str(device), "epochs_trained": len(history),
               "train_seconds": sum(h["seconds"] for h in history)}
    results["eval_epoch"] = load_checkpoint(out / BEST, model, guide, map_location=device)["epoch"]
    model.eval(), guide.eval()
    t0 = time.time()
    n = min(args.eval_images, len(test))
    with torch.no_grad():
        r = score(model, guide, test[:n, :, :2], args.eval_samples)
        rmse = (model.decode(guide.encode(test[:n, :, :2])) - test[:n, :, :2]).pow(2).mean().sqrt().item()
    results.update(test_log_px=r["log_px"].mean().item(), test_elbo=r["elbo"].mean().item(), test_sequences=n,
                   eval_samples=args.eval_samples, mean_ess=r["ess"].mean().item(), recon_rmse_pixels=rmse,
                   sigma=model.log_sigma.exp().tolist(), eval_seconds=time.time() - t0)
    print(f"test log p(X) >= {results['test_log_px']:.2f} nats per sequence (IS, S={args.eval_samples}, {n} test "
          f"digits), ELBO {results['test_elbo']:.2f}, reconstruction RMSE {rmse:.2f} pixels, best epoch "
          f"{results['eval_epoch']} of {len(history)}, training {results['train_seconds']:.0f} s")
    figures(model, guide, test, torch.from_numpy(test_set.labels).to(device), out, args)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def draw_row(axes, seqs, flags=None):
    for i, (ax, s) in enumerate(zip(axes, seqs)):
        rows = np.zeros((len(s), 4))
        rows[:, :2] = s
        if flags is not None:
            rows[:, 2:] = flags[i]
        plot_strokes(ax, rows, absolute_coords=True)


def figures(model, guide, test, labels, out, args):
    torch.manual_seed(args.seed)
    first = lambda d: int((labels == d).nonzero()[0, 0])  # noqa: E731
    with torch.no_grad():
        # reconstructions: 10 digits (top) and their reconstructions (bottom)
        idx = [first(d) for d in range(10)]
        x = test[idx]
        rec = model.decode(guide.encode(x[:, :, :2])).cpu().numpy()
        fig, axes = plt.subplots(2, 10, figsize=(10, 2.2))
        draw_row(axes[0], x[:, :, :2].cpu().numpy(), x[:, :, 2:].cpu().numpy())
        draw_row(axes[1], rec, x[:, :, 2:].cpu().numpy())
        fig.suptitle("test digits (top), reconstructions (bottom; pen lifts copied from the input)")
        plots.save_figure(fig, out / "reconstructions.png")
        # the neighbourhood of an encoded "two"
        z2 = guide.encode(test[first(2)][None, :, :2])
        near = model.decode(z2 + 0.5 * torch.randn(20, args.z_dim, device=z2.device)).cpu().numpy()
        fig, axes = plt.subplots(2, 10, figsize=(10, 2.2))
        draw_row(axes.flat, near)
        fig.suptitle("decoded z ~ N(z_two, 0.5^2 I), pen always down")
        plots.save_figure(fig, out / "near_two.png")
        # interpolation from an encoded "four" to an encoded "six"
        za = guide.encode(test[first(4)][None, :, :2])[0]
        zb = guide.encode(test[first(6)][None, :, :2])[0]
        w = torch.linspace(0, 1, 10, device=za.device)[:, None]
        path = model.decode((1 - w) * za + w * zb).cpu().numpy()
        fig, axes = plt.subplots(1, 10, figsize=(10, 1.2))
        draw_row(axes, path)
        fig.suptitle("straight line in z from a four to a six")
        plots.save_figure(fig, out / "interpolation.png")
    plots.loss_curves(out / "metrics.csv", out / "loss.png", title="negative ELBO per sequence (nats)")


if __name__ == "__main__":
    main(parser().parse_args())
