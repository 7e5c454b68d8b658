"""The VRNN (Chung et al. 2015), VRNN-I and the latent-free RNN on MNIST rows or on pen strokes.

    python examples/vrnn.py --data rows --prior learned           # VRNN, 28 steps of 28 pixels
    python examples/vrnn.py --data rows --prior standard          # VRNN-I: z_t ~ N(0, I)
    python examples/vrnn.py --data rows --prior none              # the RNN, same emission family
    python examples/vrnn.py --data strokes --guide smoothing      # pen strokes, backward-RNN guide
    python examples/vrnn.py --data strokes --condition label      # per-class samples

Data. ``rows``: each binarised image read top to bottom, one 28-pixel row per step (Bernoulli
emission; each training batch binarised afresh, validation and test once with a seed). ``strokes``:
the pen-stroke sequences of ``ppl_models.data.strokes`` (variable length, masked), rows
(dx, dy, end_of_stroke, end_of_digit); dx, dy are integers, so they are dequantised with uniform
noise in [-0.5, 0.5) (the Gaussian density of dequantised offsets is a lower bound on the
probability of the integer offsets); validation and test with a fixed seed.
Splits: the first 50,000 training images train, the last 10,000 pick the epoch, the test set is
scored once: log p(x) by importance sampling (S = ``--eval-samples``), per sequence, in nats.
"""
import numpy as np
import torch

from guides.vrnn import GUIDES, make_guide
from ppl_models.data import N_TRAIN, TEST_DRAW_SEED, VALID_DRAW_SEED, Batches, load_mnist
from ppl_models.data.strokes import load_strokes, plot_strokes
from ppl_models.data.strokes import stats as stroke_stats
from ppl_models.inference.objectives import make_objective
from ppl_models.judge import fidelity
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import nonnegative_int, positive_int
from ppl_models.runs.plots import plt
from ppl_models.vrnn import PRIORS, VRNN

RUN_NAME = "{data}-{prior}-{guide}-z{z_dim}-h{hidden}-{condition}"
NAMES = {"learned": "VRNN", "standard": "VRNN-I", "none": "RNN"}


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=20, eval_samples=500, eval_images=1000, objectives=("elbo",),
                          why="its recurrent networks take no particle dimension: one particle per sequence")
    p.add_argument("--data", default="rows", choices=["rows", "strokes"])
    p.add_argument("--prior", default="learned", choices=PRIORS)
    p.add_argument("--guide", default="filtering", choices=list(GUIDES))
    p.add_argument("--condition", default="none", choices=["none", "label"])
    p.add_argument("--z-dim", type=positive_int, default=16)
    p.add_argument("--hidden", type=positive_int, default=128, help="units of the LSTM and of every MLP")
    p.add_argument("--anneal-epochs", type=nonnegative_int, default=0,
                   help="KL annealing: beta rises linearly from 1/N to 1 over the first N epochs")
    args = p.parse_args(argv)
    if args.jit and args.data == "strokes":
        p.error("argument --jit: not with --data strokes (each batch is cut to its longest stroke: a new shape, "
                "a new compilation); --data rows")
    return args


def dequantise(x, generator=None):
    """Integer pen offsets (dx, dy) plus uniform noise in [-0.5, 0.5); a ``generator`` draws on the CPU."""
    shape = x.shape[:-1] + (2,)
    noise = (torch.rand(shape, generator=generator) if generator is not None
             else torch.rand(shape, device=x.device)).to(x.device) - 0.5
    return torch.cat([x[..., :2] + noise, x[..., 2:]], -1)


def load_data(args, device):
    """``(train, valid, test)``, each a dict of ``x`` ``[N, T, D]``, ``y`` ``[N]``, ``lengths`` ``[N]`` or None.
    Validation and test noise (binarisation, dequantisation) is drawn once, on the CPU, with fixed seeds."""
    if args.data == "rows":
        splits = load_mnist("mnist", device, "dynamic")  # valid and test binarised once
        return [{"x": s.x.reshape(-1, 28, 28), "y": s.y, "lengths": None} for s in splits]
    train_set, test_set = load_strokes()
    for name, lengths in (("train", train_set.lengths), ("test", test_set.lengths)):
        st = stroke_stats(lengths)
        print(f"pen-stroke lengths, {name}: min {st['min']}, median {st['median']:.0f}, max {st['max']} "
              "(the public stroke set: 13, 40, 117)")
    t_max = int(max(train_set.lengths.max(), test_set.lengths.max()))

    def split(s, rows=slice(None), draw_seed=None):
        x, lengths = s.padded(t_max)
        x = torch.from_numpy(x[rows])
        if draw_seed is not None:
            x = dequantise(x, torch.Generator().manual_seed(draw_seed))
        return {"x": x.to(device), "y": torch.from_numpy(s.labels[rows]).to(device),
                "lengths": torch.from_numpy(lengths[rows]).long().to(device)}

    return (split(train_set, slice(0, N_TRAIN)), split(train_set, slice(N_TRAIN, None), VALID_DRAW_SEED),
            split(test_set, draw_seed=TEST_DRAW_SEED))


def build(args, device):
    """The VRNN (or VRNN-I, RNN) and its guide from the run's settings (also what rebuilds a run)."""
    emission = "bernoulli" if args.data == "rows" else "strokes"
    model = VRNN(emission, args.prior, args.z_dim, args.hidden, 10 if args.condition == "label" else 0).to(device)
    return model, make_guide(args.guide, model).to(device)


def main(args):
    if args.smoke:
        args.hidden = 16
    run = experiment.start(args, "vrnn", RUN_NAME)
    train, valid, test = load_data(args, run.device)
    train, valid = experiment.smoke_subsets(args, train, valid)
    conditional = args.condition == "label"
    model, guide = build(args, run.device)
    label = (lambda split: split["y"]) if conditional else (lambda split: None)
    validate = experiment.validation(model, guide, valid["x"], label(valid), lengths=valid["lengths"])

    def anneal(epoch):
        return {"beta": min(1.0, epoch / args.anneal_epochs) if args.anneal_epochs else 1.0}

    def make(x, y, lengths):  # a fresh binarisation of the rows, or fresh dequantisation noise
        if args.data == "rows":  # no None among the arguments, which Pyro's --jit cannot trace
            return (torch.bernoulli(x), y) if conditional else (torch.bernoulli(x),)
        return dequantise(x), (y if conditional else None), lengths

    batches = Batches(train["x"], train["y"], train["lengths"], batch_size=args.batch_size, make=make,
                      lengths=2 if args.data == "strokes" else None)
    print(f"{NAMES[args.prior]} on {args.data}: z={args.z_dim} hidden={args.hidden} guide={args.guide} "
          f"condition={args.condition}, {len(train['x'])} training sequences")
    history = experiment.train(run, model, guide, make_objective("elbo", jit=args.jit), batches, validate=validate,
                               best=("valid_loss", "min"), step_kwargs=anneal)
    eval_epoch = experiment.load_best(run, model, guide)
    metrics = experiment.score(run, model, guide, test["x"], label(test), lengths=test["lengths"])
    figures(model, test, run.out, args, conditional)
    def generate(y):  # len(y) samples as images; of the digits y when conditional
        return as_images(model, len(y), y if conditional else None, test, args)

    reference = None
    if args.data == "strokes":  # the test digits' own strokes, drawn the same way
        n = metrics["eval_images"]
        reference = fidelity.strokes_to_images(integer_offsets(test["x"][:n])).to(run.device), test["y"][:n]
    judged, details = fidelity.judge(run, generate, conditional=conditional, reference=reference)
    return experiment.finish(run, {**metrics, **judged}, history, eval_epoch, model=NAMES[args.prior],
                             samples_judged=details)


def as_images(model, n, y, test, args):
    """``n`` samples (of the digits ``y`` when conditional) as ``[n, 784]`` images: the rows' pixel
    probabilities, or the strokes drawn onto the canvas (up to the end-of-digit flag) with
    ``ppl_models.data.strokes.render``, their offsets rounded to whole pixels as the data's are (the model's
    density is over dequantised offsets, x + u with u in [-0.5, 0.5); rounding undoes that)."""
    device = test["x"].device
    if args.data == "rows":
        return model.generate(n, 28, y, device).reshape(n, 784)
    strokes = model.generate(n, int(test["lengths"].max()), y, device)
    return fidelity.strokes_to_images(integer_offsets(strokes)).to(device)


def integer_offsets(strokes):
    return torch.cat([strokes[..., :2].round(), strokes[..., 2:]], -1)


def figures(model, test, out, args, conditional):
    device = test["x"].device
    torch.manual_seed(args.seed)
    y = torch.arange(10, device=device).repeat_interleave(10) if conditional else None
    title = "samples, one row per requested digit" if conditional else "samples from the model"
    if args.data == "rows":
        samples = model.generate(100, 28, y, device)                     # [100, 28, 28] probabilities
        plots.image_grid(samples.reshape(100, 784).cpu(), out / "samples.png", rows=10, cols=10, title=title)
    else:
        t_max = int(test["lengths"].max())
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
    experiment.cli(main, parse_args)
