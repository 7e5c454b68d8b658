"""A sequence VAE on pen-stroke digits (T = 60 absolute pen positions, z of size 64).

    python examples/seqvae.py                       # LSTM encoder and decoder of 512 units
    python examples/seqvae.py --hidden 256          # four times cheaper on a CPU
    python examples/seqvae.py --guide bilstm        # a bidirectional encoder

Data: the pen strokes of ``ppl_models.data.strokes``, resampled to 60 points; the first 50,000 training
digits train, the last 10,000 pick the epoch, the test set is scored once (log-density of the 60
positions, in nats per sequence, by importance sampling; the positions are in pixel units).
Figures: digits beside their reconstructions, samples around an encoded "two", and the straight
line in z between an encoded "four" and "six", all drawn as strokes.
"""
import numpy as np
import torch

from guides.seqvae import GUIDES, make_guide
from ppl_models.data import N_TRAIN, Batches
from ppl_models.data.strokes import load_strokes, plot_strokes
from ppl_models.inference.objectives import OBJECTIVES, make_objective
from ppl_models.judge import fidelity
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import positive_int
from ppl_models.runs.plots import plt
from ppl_models.seqvae import SeqVAE

RUN_NAME = "{guide}-z{z_dim}-h{hidden}-T{steps}"


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=20, eval_samples=500, eval_images=1000, objectives=OBJECTIVES)
    p.add_argument("--guide", default="lstm", choices=list(GUIDES))
    p.add_argument("--z-dim", type=positive_int, default=64)
    p.add_argument("--hidden", type=positive_int, default=512)
    p.add_argument("--steps", type=positive_int, default=60, help="resampled sequence length T")
    return p.parse_args(argv)


def load_data(args, device):
    """The pen strokes resampled to ``--steps`` points: ``train_x, valid_x`` ``[N, T, 2]`` on ``device``, the
    test strokes ``[N, T, 4]`` and their labels."""
    train_set, test_set = load_strokes()
    if args.smoke:  # strokes are resampled one by one: only the few that the smoke run uses
        n_train, n_valid, n_test = experiment.SMOKE_SIZES
        train_set = train_set.subset(list(range(n_train)) + list(range(N_TRAIN, N_TRAIN + n_valid)))
        test_set = test_set.subset(slice(0, n_test))
    n_train = experiment.SMOKE_SIZES[0] if args.smoke else N_TRAIN  # the rest of train_set is validation
    full = torch.from_numpy(train_set.resampled(args.steps)).to(device)
    test = torch.from_numpy(test_set.resampled(args.steps)).to(device)
    return full[:n_train, :, :2], full[n_train:, :, :2], test, torch.from_numpy(test_set.labels).to(device)


def build(args, device):
    """The sequence VAE and its guide from the run's settings (also what rebuilds a run)."""
    model = SeqVAE(args.z_dim, args.hidden, args.steps).to(device)
    return model, make_guide(args.guide, model).to(device)


def main(args):
    if args.smoke:
        args.hidden = 16
    run = experiment.start(args, "seqvae", RUN_NAME)
    train_x, valid_x, test, test_labels = load_data(args, run.device)
    model, guide = build(args, run.device)
    validate = experiment.validation(model, guide, valid_x, particles="plate")

    print(f"sequence VAE: T={args.steps} z={args.z_dim} hidden={args.hidden} guide={args.guide}, "
          f"{len(train_x)} training digits")
    objective = make_objective(args.objective, args.particles, args.renyi_alpha, jit=args.jit)
    history = experiment.train(run, model, guide, objective, Batches(train_x, batch_size=args.batch_size),
                               validate=validate, best=("valid_loss", "min"))
    eval_epoch = experiment.load_best(run, model, guide)
    metrics = experiment.score(run, model, guide, test[:, :, :2], particles="plate")
    with torch.no_grad():
        n = metrics["eval_images"]
        rmse = (model.decode(guide.encode(test[:n, :, :2])) - test[:n, :, :2]).pow(2).mean().sqrt().item()
    metrics.update(recon_rmse_pixels=rmse, sigma=model.log_sigma.exp().tolist())
    print(f"reconstruction RMSE {rmse:.2f} pixels")
    figures(model, guide, test, test_labels, run.out, args)
    # samples from the prior, drawn onto the canvas, against the test digits' own positions drawn alike
    n = metrics["eval_images"]
    reference = as_images(test[:n, :, :2]).to(run.device), test_labels[:n]
    judged, details = fidelity.judge(
        run, lambda y: as_images(model.decode(model.prior(test).sample((len(y),)))).to(run.device),
        conditional=False, reference=reference)
    metrics.update(judged)
    return experiment.finish(run, metrics, history, eval_epoch, samples_judged=details)


def as_images(positions):
    """``[n, T, 2]`` absolute pen positions drawn onto the 28x28 canvas as one stroke (the model has no
    pen lifts): ``[n, 784]``."""
    with torch.no_grad():
        return fidelity.strokes_to_images(torch.cat([positions, torch.zeros_like(positions)], -1), absolute_coords=True)


def draw_row(axes, seqs, flags=None):
    for i, (ax, s) in enumerate(zip(axes, seqs)):
        rows = np.zeros((len(s), 4))
        rows[:, :2] = s
        if flags is not None:
            rows[:, 2:] = flags[i]
        plot_strokes(ax, rows, absolute_coords=True)


def figures(model, guide, test, labels, out, args):
    torch.manual_seed(args.seed)
    first = lambda d: int((labels == d).nonzero()[0, 0])
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
    experiment.cli(main, parse_args)
