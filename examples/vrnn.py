"""The VRNN (Chung et al. 2015), VRNN-I and the latent-free RNN on MNIST rows or on pen strokes.

    python examples/vrnn.py --data rows --prior learned           # VRNN, 28 steps of 28 pixels
    python examples/vrnn.py --data rows --prior standard          # VRNN-I: z_t ~ N(0, I)
    python examples/vrnn.py --data rows --prior none              # the RNN, same emission family
    python examples/vrnn.py --data strokes --guide smoothing      # pen strokes, backward-RNN guide
    python examples/vrnn.py --data strokes --condition label      # per-class samples

Data. ``rows``: each binarised image read top to bottom, one 28-pixel row per step (Bernoulli
emission; each training batch binarised afresh, validation and test once with a seed). ``strokes``:
the pen-stroke sequences of ``ppl_models.strokes`` (variable length, masked), rows
(dx, dy, end_of_stroke, end_of_digit); dx, dy are integers, so they are dequantised with uniform
noise in [-0.5, 0.5) (the Gaussian density of dequantised offsets is a lower bound on the
probability of the integer offsets); validation and test with a fixed seed.
Splits: the first 50,000 training images train, the last 10,000 pick the epoch, the test set is
scored once: log p(x) by importance sampling (S = ``--eval-samples``), per sequence, in nats.
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
from guides.vrnn import GUIDES, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.data import N_TRAIN, load_mnist  # noqa: E402
from ppl_models.evaluate import log_importance_weights, psis_khat, summarize  # noqa: E402
from ppl_models.strokes import load_strokes, plot_strokes, stats as stroke_stats  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402
from ppl_models.vrnn import PRIORS, VRNN  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="rows", choices=["rows", "strokes"])
    p.add_argument("--prior", default="learned", choices=PRIORS)
    p.add_argument("--guide", default="filtering", help=f"one of {list(GUIDES)}")
    p.add_argument("--condition", default="none", choices=["none", "label"])
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128, help="units of the LSTM and of every MLP")
    p.add_argument("--anneal-epochs", type=int, default=0,
                   help="KL annealing: beta rises linearly from 1/N to 1 over the first N epochs")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--eval-images", type=int, default=1000, help="test sequences scored (the first N)")
    p.add_argument("--out", default="results/vrnn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred sequences, one epoch, small S")
    return p


class SeqData:
    """Sequences ``x`` ``[N, T, D]`` on the device, labels ``[N]``, lengths ``[N]`` (or None)."""

    def __init__(self, x, y, lengths, binarize=False, dequantize=False):
        self.x, self.y, self.lengths, self.binarize, self.dequantize = x, y, lengths, binarize, dequantize

    def __len__(self):
        return len(self.x)

    def subset(self, sl):
        return SeqData(self.x[sl], self.y[sl], None if self.lengths is None else self.lengths[sl],
                       self.binarize, self.dequantize)

    def draw(self, idx, generator=None):
        """The batch ``idx`` with fresh noise: binarised pixels, or dequantised offsets."""
        x = self.x[idx]
        if self.binarize:
            x = torch.bernoulli(x, generator=generator)
        if self.dequantize:
            noise = torch.rand(x.shape[:-1] + (2,), device=x.device, generator=generator) - 0.5
            x = torch.cat([x[..., :2] + noise, x[..., 2:]], -1)
        lengths = None if self.lengths is None else self.lengths[idx]
        if lengths is not None:  # cut the padding to the longest sequence of the batch
            x = x[:, :int(lengths.max())]
        return x, lengths

    def fixed(self, seed):
        """A copy with the noise drawn once (validation and test)."""
        g = torch.Generator(device=self.x.device).manual_seed(seed)
        x, _ = self.draw(torch.arange(len(self), device=self.x.device), g)
        return SeqData(x, self.y, self.lengths)


class Batches:
    def __init__(self, data, batch_size, conditional):
        self.data, self.bs, self.conditional = data, batch_size, conditional

    def __len__(self):
        return -(-len(self.data) // self.bs)

    def __iter__(self):
        perm = torch.randperm(len(self.data), device=self.data.x.device)
        for i in range(0, len(perm), self.bs):
            idx = perm[i:i + self.bs]
            x, lengths = self.data.draw(idx)
            yield x, (self.data.y[idx] if self.conditional else None), lengths


def load_data(kind, device, seed):
    if kind == "rows":
        train, valid, test = load_mnist("mnist", device, "dynamic", seed=seed)
        rows = lambda s, **kw: SeqData(s.x.reshape(-1, 28, 28), s.y, None, **kw)  # noqa: E731
        return rows(train, binarize=True), rows(valid), rows(test)
    train_set, test_set = load_strokes()
    for name, lengths in (("train", train_set.lengths), ("test", test_set.lengths)):
        st = stroke_stats(lengths)
        print(f"pen-stroke lengths, {name}: min {st['min']}, median {st['median']:.0f}, max {st['max']} "
              "(the public stroke set: 13, 40, 117)")
    t_max = int(max(train_set.lengths.max(), test_set.lengths.max()))

    def to_data(s):
        x, lengths = s.padded(t_max)
        return SeqData(torch.from_numpy(x).to(device), torch.from_numpy(s.labels).to(device),
                       torch.from_numpy(lengths).long().to(device), dequantize=True)

    full = to_data(train_set)
    return (full.subset(slice(0, N_TRAIN)), full.subset(slice(N_TRAIN, None)).fixed(seed),
            to_data(test_set).fixed(seed + 1))


def score(model, guide, data, conditional, num_samples, batch_size=100, khat=False):
    """Per-sequence IS log p(x), ELBO, ESS (and PSIS k-hat)."""
    out = {"log_px": [], "elbo": [], "ess": [], "khat": []}
    for i in range(0, len(data), batch_size):
        sl = slice(i, i + batch_size)
        lengths = None if data.lengths is None else data.lengths[sl]
        x = data.x[sl] if lengths is None else data.x[sl, :int(lengths.max())]
        lw = log_importance_weights(model, guide, x, data.y[sl] if conditional else None, lengths,
                                    num_samples=num_samples, particles="repeat")
        for k, v in summarize(lw).items():
            out[k].append(v.cpu().numpy())
        if khat:
            out["khat"].append(psis_khat(lw))
    return {k: np.concatenate(v) for k, v in out.items() if v}


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
    train, valid, test = load_data(args.data, device, args.seed)
    if args.smoke:
        train, valid = train.subset(slice(0, 200)), valid.subset(slice(0, 50))
    conditional = args.condition == "label"
    emission = "bernoulli" if args.data == "rows" else "strokes"
    model = VRNN(emission, args.prior, args.z_dim, args.hidden, 10 if conditional else 0).to(device)
    guide = make_guide(args.guide, model, args.hidden).to(device)

    def validate():
        return {"valid_loss": -float(score(model, guide, valid, conditional, 1, batch_size=1000)["elbo"].mean())}

    def anneal(epoch):
        return {"beta": min(1.0, epoch / args.anneal_epochs) if args.anneal_epochs else 1.0}

    name = {"learned": "VRNN", "standard": "VRNN-I", "none": "RNN"}[args.prior]
    print(f"{name} on {args.data}: z={args.z_dim} hidden={args.hidden} guide={args.guide} "
          f"condition={args.condition} on {device}, {len(train)} training sequences")
    history = fit(model, guide, Trace_ELBO(), Batches(train, args.batch_size, conditional), epochs=args.epochs,
                  out=out, lr=args.lr, validate=validate, best=("valid_loss", "min"), resume=args.resume,
                  seed=args.seed, progress=not args.no_progress, step_kwargs=anneal)
    results = {"args": vars(args), "model": name, "device": str(device), "epochs_trained": len(history),
               "train_seconds": sum(h["seconds"] for h in history)}
    results["eval_epoch"] = load_checkpoint(out / BEST, model, guide, map_location=device)["epoch"]
    model.eval(), guide.eval()
    t0 = time.time()
    n = min(args.eval_images, len(test))
    r = score(model, guide, test.subset(slice(0, n)), conditional, args.eval_samples, khat=model.has_z)
    results.update(test_log_px=float(r["log_px"].mean()), test_elbo=float(r["elbo"].mean()), test_sequences=n,
                   eval_samples=args.eval_samples, mean_ess=float(r["ess"].mean()), eval_seconds=time.time() - t0)
    if "khat" in r:
        results["khat_above_0_7"] = float((r["khat"] > 0.7).mean())
    how = f"{args.guide} guide" if model.has_z else "no latent: exact"
    print(f"{name} ({how}): test log p(x) >= {results['test_log_px']:.2f} nats per sequence "
          f"(IS, S={args.eval_samples}, {n} test sequences), ELBO {results['test_elbo']:.2f}, "
          f"best epoch {results['eval_epoch']} of {len(history)}, training {results['train_seconds']:.0f} s")
    figures(model, test, out, args, conditional)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def figures(model, test, out, args, conditional):
    device = test.x.device
    torch.manual_seed(args.seed)
    y = torch.arange(10, device=device).repeat_interleave(10) if conditional else None
    title = "samples, one row per requested digit" if conditional else "samples from the model"
    if args.data == "rows":
        samples = model.generate(100, 28, y, device)                     # [100, 28, 28] probabilities
        plots.image_grid(samples.reshape(100, 784).cpu(), out / "samples.png", rows=10, cols=10, title=title)
    else:
        t_max = int(test.lengths.max())
        samples = model.generate(100, t_max, y, device).cpu().numpy()
        fig, axes = plt.subplots(10, 10, figsize=(8, 8))
        for ax, seq in zip(axes.flat, samples):
            end = np.nonzero(seq[:, 3] > 0.5)[0]
            seq = seq[:end[0] + 1] if len(end) else seq                 # stop at the end-of-digit flag
            plot_strokes(ax, seq)
        fig.suptitle(title)
        plots.save_figure(fig, out / "samples.png")
    plots.loss_curves(out / "metrics.csv", out / "loss.png", title="training loss per sequence (nats, KL annealed)")


if __name__ == "__main__":
    main(parser().parse_args())
