"""DRAW on binarised MNIST: train, report the importance-sampled test NLL, draw the glimpse sequence.

    python examples/draw.py                                     # no attention, 64 glimpses
    python examples/draw.py --attention filterbank              # read 2x2, write 5x5 (the paper's MNIST)
    python examples/draw.py --condition label --glimpses 16     # draws the digit it is asked for
    python examples/draw.py --guide noerror                     # an encoder without the error image

The paper's settings are the defaults (T = 64, 256 LSTM units, z of size 100, Adam); on a CPU one
epoch takes long, so ``--glimpses`` and ``--hidden`` trade fidelity for time, and ``--resume``
continues a run. Figures: the canvas after each glimpse for a grid of samples (with the write
window drawn for the filterbank form), per-class samples with ``--condition label``, the loss curve.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from pyro.infer import Trace_ELBO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guides.draw import GUIDES, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.data import Minibatches, load_mnist  # noqa: E402
from ppl_models.draw import DRAW  # noqa: E402
from ppl_models.evaluate import evaluate  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attention", default="none", choices=["none", "filterbank"])
    p.add_argument("--read-n", type=int, default=2, help="read glimpse N x N (filterbank)")
    p.add_argument("--write-n", type=int, default=5, help="write patch N x N (filterbank)")
    p.add_argument("--glimpses", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256, help="LSTM units of encoder and decoder")
    p.add_argument("--z-dim", type=int, default=100)
    p.add_argument("--condition", default="none", choices=["none", "label"])
    p.add_argument("--guide", default="draw", help=f"one of {list(GUIDES)}")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--valid-every", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000, help="importance samples S for the test NLL")
    p.add_argument("--eval-images", type=int, default=10000)
    p.add_argument("--out", default="results/draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred images, few glimpses, tiny evaluation")
    return p


def main(args):
    if args.guide not in GUIDES:
        raise SystemExit(f"unknown guide {args.guide!r}; choose one of {list(GUIDES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.epochs, args.eval_samples, args.eval_images, args.glimpses, args.hidden = 1, 4, 20, 4, 32
    device = resolve_device(args.device)
    attention = args.attention == "filterbank"
    pyro.set_rng_seed(args.seed)
    out = Path(args.out)
    train, valid, test = load_mnist("mnist", device, "dynamic", seed=args.seed)
    if args.smoke:
        train, valid = train.subset(slice(0, 200)), valid.subset(slice(0, 100))
    n_classes = 10 if args.condition == "label" else 0
    model = DRAW(args.glimpses, args.z_dim, args.hidden, args.write_n if attention else None, n_classes).to(device)
    guide = make_guide(args.guide, model, args.hidden, args.read_n if attention else None).to(device)
    labels = (lambda split: split.y) if n_classes else (lambda split: None)

    class Batches(Minibatches):  # (x, labels) with conditioning, (x,) without
        def __iter__(self):
            for x, y in super().__iter__():
                yield (x, y) if n_classes else (x,)

    def validate():
        r = evaluate(model, guide, valid.x, labels(valid), num_samples=1, batch_size=1000, khat=False, check=False)
        return {"valid_loss": r["neg_elbo"]}

    print(f"DRAW: attention={args.attention} T={args.glimpses} hidden={args.hidden} z={args.z_dim} "
          f"condition={args.condition} guide={args.guide} on {device}")
    history = fit(model, guide, Trace_ELBO(), Batches(train, args.batch_size, "dynamic"), epochs=args.epochs,
                  out=out, lr=args.lr, validate=validate, valid_every=args.valid_every, best=("valid_loss", "min"),
                  resume=args.resume, seed=args.seed, progress=not args.no_progress)
    results = {"args": vars(args), "device": str(device), "epochs_trained": len(history),
               "train_seconds": sum(h["seconds"] for h in history)}
    results["eval_epoch"] = load_checkpoint(out / BEST, model, guide, map_location=device)["epoch"]
    model.eval(), guide.eval()
    t0 = time.time()
    n = min(args.eval_images, len(test.x))
    r = evaluate(model, guide, test.x[:n], test.y[:n] if n_classes else None, num_samples=args.eval_samples,
                 batch_size=max(1, 20_000 // max(args.eval_samples, 1)) if args.eval_samples < 20_000 else 1,
                 progress=not args.no_progress)
    results.update(test_nll=r["nll"], test_neg_elbo=r["neg_elbo"], test_images=n, eval_samples=args.eval_samples,
                   mean_ess=float(r["ess"].mean()), khat_above_0_7=float((r["khat"] > 0.7).mean()),
                   eval_seconds=time.time() - t0)
    print(f"test NLL {r['nll']:.2f} nats (IS, S={args.eval_samples}, {n} test images), -ELBO {r['neg_elbo']:.2f}, "
          f"best validation epoch {results['eval_epoch']} of {len(history)}, "
          f"training {results['train_seconds']:.0f} s, evaluation {results['eval_seconds']:.0f} s")
    figures(model, out, device, args)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def sequence_figure(frames, windows, path, write_n=5, n_show=10, steps=8):
    """Rows: samples; columns: the canvas at ``steps`` evenly spaced glimpses (the last one included)."""
    t_total = frames.shape[0]
    cols = sorted({round(i * (t_total - 1) / (steps - 1)) for i in range(steps)}) if t_total > 1 else [0]
    fig, axes = plt.subplots(n_show, len(cols), figsize=(len(cols) * 0.9, n_show * 0.9), squeeze=False)
    for r in range(n_show):
        for c, t in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(frames[t, r].reshape(28, 28).cpu(), cmap="gray_r", vmin=0, vmax=1)
            if windows is not None:  # the write window of glimpse t: N points spaced by the stride
                gx, gy, delta = windows[t, r].tolist()
                half = (write_n - 1) / 2 * delta + 0.5
                ax.add_patch(Rectangle((gx - 1 - half, gy - 1 - half), 2 * half, 2 * half, fill=False,
                                       edgecolor="red", linewidth=0.8))
            ax.set_xlim(-0.5, 27.5), ax.set_ylim(27.5, -0.5), ax.axis("off")
            if r == 0:
                ax.set_title(f"t={t + 1}", fontsize=7)
    plots.save_figure(fig, path)


def figures(model, out, device, args):
    torch.manual_seed(args.seed)
    if args.condition == "label":
        y = torch.arange(10, device=device).repeat_interleave(10)
        frames, windows = model.generate(100, y, device)
        plots.image_grid(frames[-1].cpu(), out / "samples_per_class.png", rows=10, cols=10,
                         title="DRAW samples, one row per requested digit")
        frames, windows = frames[:, ::10], (windows[:, ::10] if windows is not None else None)
    else:
        frames, windows = model.generate(100, None, device)
        plots.image_grid(frames[-1].cpu(), out / "samples.png", cols=10, title="DRAW samples sigmoid(c_T)")
    sequence_figure(frames, windows, out / "glimpses.png", args.write_n)
    plots.loss_curves(out / "metrics.csv", out / "loss.png")


if __name__ == "__main__":
    main(parser().parse_args())
