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
import torch
from matplotlib.patches import Rectangle

from guides.draw import GUIDES, make_guide
from ppl_models.data import Batches, Minibatches, fresh_binarization, load_mnist
from ppl_models.draw import DRAW
from ppl_models.inference.objectives import make_objective
from ppl_models.judge import fidelity
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import positive_int
from ppl_models.runs.plots import plt

RUN_NAME = "{attention}-T{glimpses}-h{hidden}-z{z_dim}-{condition}-{guide}"


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=20, eval_samples=1000, eval_images=10000, objectives=("elbo",),
                          why="its recurrent networks take no particle dimension: one particle per image")
    p.add_argument("--attention", default="none", choices=["none", "filterbank"])
    p.add_argument("--read-n", type=positive_int, default=2, help="read glimpse N x N (filterbank)")
    p.add_argument("--write-n", type=positive_int, default=5, help="write patch N x N (filterbank)")
    p.add_argument("--glimpses", type=positive_int, default=64)
    p.add_argument("--hidden", type=positive_int, default=256, help="LSTM units of encoder and decoder")
    p.add_argument("--z-dim", type=positive_int, default=100)
    p.add_argument("--condition", default="none", choices=["none", "label"])
    p.add_argument("--guide", default="draw", choices=list(GUIDES))
    p.add_argument("--valid-every", type=positive_int, default=1)
    return p.parse_args(argv)


def load_data(args, device):
    """MNIST's ``train, valid, test`` Splits on ``device`` (binarised per batch; valid and test once)."""
    return load_mnist("mnist", device, "dynamic", seed=args.seed)


def build(args, device):
    """DRAW and its guide from the run's settings (also what rebuilds a run from its folder)."""
    attention = args.attention == "filterbank"
    model = DRAW(args.glimpses, args.z_dim, args.hidden, args.write_n if attention else None,
                 10 if args.condition == "label" else 0).to(device)
    return model, make_guide(args.guide, model, read_n=args.read_n if attention else None).to(device)


def main(args):
    if args.smoke:
        args.glimpses, args.hidden = 4, 32
    run = experiment.start(args, "draw", RUN_NAME)
    train, valid, test = load_data(args, run.device)
    train, valid = experiment.smoke_subsets(args, train, valid)
    n_classes = 10 if args.condition == "label" else 0
    model, guide = build(args, run.device)
    labels = (lambda split: split.y) if n_classes else (lambda split: None)
    validate = experiment.validation(model, guide, valid.x, labels(valid))

    batches = (Minibatches(train, args.batch_size, "dynamic") if n_classes  # (x, y), or (x,) alone
               else Batches(train.x, batch_size=args.batch_size, make=fresh_binarization))
    history = experiment.train(run, model, guide, make_objective("elbo", jit=args.jit), batches, validate=validate,
                               valid_every=args.valid_every, best=("valid_loss", "min"))
    eval_epoch = experiment.load_best(run, model, guide)
    metrics = experiment.score(run, model, guide, test.x, labels(test))
    figures(model, run.out, run.device, args)

    def generate(y):  # the final canvas sigmoid(c_T)
        return model.generate(len(y), y if n_classes else None, run.device)[0][-1]

    judged, details = fidelity.judge(run, generate, conditional=bool(n_classes))
    return experiment.finish(run, {**metrics, **judged}, history, eval_epoch, samples_judged=details)


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
    experiment.cli(main, parse_args)
